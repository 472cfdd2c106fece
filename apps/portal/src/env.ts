// The portal's configuration, read from the environment once. Every other module imports
// `env` from here; a bad variable stops the process with one error listing all of them.
import { z } from "zod";

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

const portalEnvSchema = z
  .object({
    FERRY_DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgresql:// URL" }),
    FERRY_REDIS_URL: z.url({ protocol: /^rediss?$/, error: "must be a redis:// URL" }),
    FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: "must be letters, digits, _ or -" }).default("ferry"),
    FERRY_CLUSTER_SECRET: z.string().min(32, { error: "must be at least 32 characters" }),
    FERRY_LOG_LEVEL: z.enum(logLevels).default("info"),
    FERRY_PORT: z.coerce.number().int().min(1).max(65535).default(3000),
    FERRY_PUBLIC_URL: z.url().optional(),
    FERRY_ADMIN_EMAIL: z.email().default("admin@ferry.local"),
    FERRY_ADMIN_PASSWORD: z.string().min(8, { error: "must be at least 8 characters" }).default("ferry-admin-password"),
    FERRY_ADMIN_TOKEN: z.string().min(16, { error: "must be at least 16 characters" }).optional(),
    FERRY_CONSOLE_PUBLIC_URL: z.url({ protocol: /^wss?$/, error: "must be a ws:// or wss:// URL" }).default("ws://localhost:3001"),
    FERRY_PROJECT_QUOTA_VCPUS: z.coerce.number().int().min(0).max(1_000_000).default(64),
    FERRY_PROJECT_QUOTA_MEMORY_MIB: z.coerce.number().int().min(0).max(1_073_741_824).default(65_536),
    FERRY_PROJECT_QUOTA_VMS: z.coerce.number().int().min(0).max(1_000_000).default(100),
    FERRY_PROJECT_QUOTA_STATE_GIB: z.coerce.number().int().min(0).max(1_048_576).default(100),
    FERRY_API_RATE_LIMIT: z.coerce.number().int().min(1).max(10_000_000).default(1200),
    /** production: serve `next build`'s output; anything else: Next's dev server */
    NODE_ENV: z.string().default("development"),
    FERRY_CPU_MODEL: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, { error: "must be a QEMU -cpu model name" }).default("qemu64"),
  })
  .transform((raw) => ({
    ...raw,
    FERRY_PUBLIC_URL: (raw.FERRY_PUBLIC_URL ?? `http://localhost:${raw.FERRY_PORT}`).replace(/\/$/, ""),
    FERRY_CONSOLE_PUBLIC_URL: raw.FERRY_CONSOLE_PUBLIC_URL.replace(/\/$/, ""),
  }));

export type PortalEnv = z.infer<typeof portalEnvSchema>;

/** Parse portal configuration from a variables object; throws one error naming every bad variable. */
export function parsePortalEnv(source: Record<string, string | undefined>): PortalEnv {
  const result = portalEnvSchema.safeParse(source);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0] ?? "environment");
    const value = source[name];
    const shown = value === undefined ? "unset" : name.includes("SECRET") || name.includes("PASSWORD") || name.includes("TOKEN") ? "set (hidden)" : `"${value}"`;
    return `${name} ${issue.message} (is ${shown})`;
  });
  throw new Error(`Ferry portal configuration is invalid: ${problems.join("; ")}. Fix these environment variables and start the portal again.`);
}

let cached: PortalEnv | undefined;

/** The portal's validated configuration; parsed on first use so `next build` needs no variables. */
export function env(): PortalEnv {
  cached ??= parsePortalEnv(process.env);
  return cached;
}
