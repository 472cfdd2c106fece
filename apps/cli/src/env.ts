// The CLI's environment, validated once. Nothing else reads process.env.
import { homedir } from "node:os";
import { join } from "node:path";
import { z } from "zod";

const schema = z.object({
  FERRY_URL: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL, e.g. http://localhost:3000" }).optional(),
  FERRY_TOKEN: z.string().min(1).optional(),
  XDG_CONFIG_HOME: z.string().min(1).optional(),
  HOME: z.string().min(1).optional(),
});

export interface CliEnv {
  /** Overrides the portal URL saved by `ferry login`. */
  url?: string;
  /** Overrides the API token saved by `ferry login`. */
  token?: string;
  /** Where `ferry login` saves { url, token }. */
  configFile: string;
}

/** Parse the CLI's variables; one error lists every bad one. */
export function parseEnv(source: Record<string, string | undefined>): CliEnv {
  const result = schema.safeParse(source);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `  ${String(issue.path[0])}: ${issue.message} (got '${source[String(issue.path[0])]}')`);
    throw new Error(`ferry: the environment is invalid:\n${problems.join("\n")}\nFix or unset these variables and run the command again.`);
  }
  const e = result.data;
  const configHome = e.XDG_CONFIG_HOME ?? join(e.HOME ?? homedir(), ".config");
  return { url: e.FERRY_URL, token: e.FERRY_TOKEN, configFile: join(configHome, "ferry", "config.json") };
}
