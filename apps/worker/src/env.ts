// The worker's configuration, validated once at start. Nothing else reads process.env.
import { z } from "zod";

const port = z.coerce.number().int().min(0).max(65535);

const schema = z.object({
  FERRY_DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgresql:// URL" }),
  FERRY_REDIS_URL: z.url({ protocol: /^rediss?$/, error: "must be a redis:// URL" }),
  FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: "must be letters, digits, - or _" }).default("ferry"),
  FERRY_CLUSTER_SECRET: z.string().min(32, { error: "must be at least 32 characters (the cluster's HMAC key)" }),
  FERRY_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  FERRY_WORKER_ID: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: "must be lowercase letters, digits and dashes, e.g. w1" }),
  FERRY_WORKER_STATE_DIR: z.string().startsWith("/", { error: "must be an absolute path" }),
  FERRY_WORKER_VCPUS: z.coerce.number().int().positive(),
  FERRY_WORKER_MEMORY_MIB: z.coerce.number().int().min(128),
  FERRY_WORKER_CONSOLE_HOST: z.string().min(1).default("127.0.0.1"),
  FERRY_WORKER_CONSOLE_PORT: port.default(0),
  FERRY_IMAGES_DIR: z.string().startsWith("/", { error: "must be an absolute path" }).default("/var/lib/ferry/images"),
  FERRY_QEMU_BINARY: z.string().min(1).default("qemu-system-x86_64"),
  FERRY_ACCELERATOR: z.enum(["auto", "kvm", "tcg"]).default("auto"),
  /** A folder every worker that may live-migrate with this one mounts at the same path: vm disks live there. */
  FERRY_WORKER_SHARED_STORAGE: z.string().startsWith("/", { error: "must be an absolute path" }).optional(),
  /** Where this worker's QEMUs listen for incoming live migrations; defaults to FERRY_WORKER_CONSOLE_HOST. */
  FERRY_WORKER_MIGRATION_HOST: z.string().min(1).optional(),
});

export type WorkerEnv = z.infer<typeof schema>;

/** Parse the worker's variables; one error lists every bad one. */
export function parseEnv(source: Record<string, string | undefined>): WorkerEnv {
  const result = schema.safeParse(source);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = String(issue.path[0]);
    const value = source[name];
    return `  ${name}: ${value === undefined ? "is required" : `${issue.message} (got '${value}')`}`;
  });
  throw new Error(`The worker's environment is invalid:\n${problems.join("\n")}\nSet these variables and start the worker again.`);
}

/** This process's validated configuration. */
export const env = parseEnv(process.env);
