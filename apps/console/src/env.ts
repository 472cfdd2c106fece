// The console gateway's configuration, validated once; nothing else reads process.env.
import { z } from "zod";

const logLevels = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;

function splitOrigins(list: string): string[] {
  return list
    .split(",")
    .map((origin) => origin.trim())
    .filter(Boolean);
}

const schema = z
  .object({
    FERRY_DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgresql:// URL" }),
    FERRY_REDIS_URL: z.url({ protocol: /^rediss?$/, error: "must be a redis:// URL" }),
    FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, "must be letters, digits, - or _").default("ferry"),
    FERRY_CLUSTER_SECRET: z.string().min(32, "must be at least 32 characters (the same value on every Ferry process)"),
    FERRY_LOG_LEVEL: z.enum(logLevels).default("info"),
    FERRY_CONSOLE_HOST: z.string().min(1).default("127.0.0.1"),
    FERRY_CONSOLE_PORT: z.coerce.number().int().min(0).max(65535).default(3001),
    FERRY_ALLOWED_ORIGINS: z
      .string()
      .refine((list) => splitOrigins(list).every((origin) => URL.canParse(origin)), {
        error: (issue) => `"${String(issue.input)}" must be a comma list of origins like https://ferry.example.com`,
      })
      .optional(),
    // Read only to default FERRY_ALLOWED_ORIGINS to the portal's own origin.
    FERRY_PUBLIC_URL: z.url().optional(),
    FERRY_PORT: z.coerce.number().int().min(1).max(65535).default(3000),
  })
  .transform((raw) => {
    const listed = raw.FERRY_ALLOWED_ORIGINS ?? raw.FERRY_PUBLIC_URL ?? `http://localhost:${raw.FERRY_PORT}`;
    const allowedOrigins = splitOrigins(listed).map((origin) => new URL(origin).origin);
    return {
      databaseUrl: raw.FERRY_DATABASE_URL,
      redisUrl: raw.FERRY_REDIS_URL,
      prefix: raw.FERRY_QUEUE_PREFIX,
      clusterSecret: raw.FERRY_CLUSTER_SECRET,
      logLevel: raw.FERRY_LOG_LEVEL,
      host: raw.FERRY_CONSOLE_HOST,
      port: raw.FERRY_CONSOLE_PORT,
      allowedOrigins,
    };
  });

export type ConsoleEnv = z.output<typeof schema>;

/** Parse the gateway's variables from `source`; throws one error naming every bad variable. */
export function parseEnv(source: Record<string, string | undefined>): ConsoleEnv {
  const result = schema.safeParse(source);
  if (result.success) return result.data;
  const lines = result.error.issues.map((issue) => `  ${issue.path.join(".") || "(env)"}: ${issue.message}`);
  throw new Error(`The console gateway's environment is invalid:\n${lines.join("\n")}\nSet these variables and start it again.`);
}
