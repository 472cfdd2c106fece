// The controller's configuration, validated once at start. Nothing else reads process.env.
import { z } from "zod";

const schema = z.object({
  FERRY_DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgresql:// URL" }),
  FERRY_REDIS_URL: z.url({ protocol: /^rediss?$/, error: "must be a redis:// URL" }),
  FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: "must be letters, digits, - or _" }).default("ferry"),
  FERRY_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  FERRY_RECONCILE_INTERVAL_MS: z.coerce.number().int().min(100).default(2000),
  FERRY_WORKER_TIMEOUT_MS: z.coerce.number().int().min(1000).default(10_000),
  FERRY_MIGRATION_DOWNTIME_MS: z.coerce.number().int().min(1).default(50),
  FERRY_MIGRATION_TIMEOUT_MS: z.coerce.number().int().min(1000).default(60_000),
  FERRY_MIGRATION_MAX_BANDWIDTH: z.coerce.number().int().positive().optional(),
  FERRY_CLUSTER_SECRET: z.string().min(32, { error: "must be at least 32 characters (the same value on every Ferry process)" }),
  FERRY_WEBHOOK_ATTEMPTS: z.coerce.number().int().min(1).max(50).default(8),
  FERRY_WEBHOOK_BACKOFF_MS: z.coerce.number().int().min(1).default(10_000),
  FERRY_WEBHOOK_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(5_000),
  FERRY_WEBHOOK_PRIVATE_ADDRESSES: z.enum(["refuse", "allow"]).default("refuse"),
});

export type ControllerEnv = z.infer<typeof schema>;

/** Parse the controller's variables; one error lists every bad one. */
export function parseEnv(source: Record<string, string | undefined>): ControllerEnv {
  const result = schema.safeParse(source);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0]);
    const value = source[name];
    const shown = name.includes("SECRET") ? "set (hidden)" : `'${value}'`;
    return `  ${name}: ${value === undefined ? "is required" : `${issue.message} (got ${shown})`}`;
  });
  throw new Error(`The controller's environment is invalid:\n${problems.join("\n")}\nSet these variables and start the controller again.`);
}

/** This process's validated configuration. */
export const env = parseEnv(process.env);
