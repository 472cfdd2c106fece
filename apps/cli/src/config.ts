// Where the CLI finds the portal: `ferry login` saves { url, token } in the config file (mode
// 0600, it holds a secret); FERRY_URL and FERRY_TOKEN override either.
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { z } from "zod";
import type { CliEnv } from "./env.ts";
import { UsageError } from "./errors.ts";

const savedLogin = z.object({ url: z.string(), token: z.string() });

export interface Login {
  url: string;
  token: string;
}

/** The portal and token commands talk to; a usage error when there is none. */
export function currentLogin(env: CliEnv): Login {
  const saved = readSavedLogin(env.configFile);
  const url = env.url ?? saved?.url;
  const token = env.token ?? saved?.token;
  if (url === undefined || token === undefined) {
    throw new UsageError(
      `not logged in: no ${url === undefined ? "portal URL" : "API token"} in ${env.configFile} or ${url === undefined ? "FERRY_URL" : "FERRY_TOKEN"}. ` +
        "Run 'ferry login --url <portal url> --token <API token>' first.",
    );
  }
  return { url: normalizeUrl(url), token };
}

/** Save a login for later commands, readable by this user only. */
export function saveLogin(env: CliEnv, login: Login): void {
  mkdirSync(dirname(env.configFile), { recursive: true, mode: 0o700 });
  writeFileSync(env.configFile, `${JSON.stringify(login, null, 2)}\n`, { mode: 0o600 });
  // writeFileSync keeps the mode of a file that already exists.
  chmodSync(env.configFile, 0o600);
}

/** The portal's base URL without a trailing slash or a pasted /api/v1. */
export function normalizeUrl(url: string): string {
  return url.replace(/\/+$/, "").replace(/\/api\/v1$/, "");
}

function readSavedLogin(file: string): Login | undefined {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw new UsageError(`cannot read ${file}: ${(error as Error).message}. Fix its permissions or run 'ferry login' again.`);
  }
  const parsed = savedLogin.safeParse(safeJson(text));
  if (!parsed.success) throw new UsageError(`${file} is not a saved login ({ "url", "token" }). Delete it and run 'ferry login' again.`);
  return parsed.data;
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
