// The worker's configuration, validated once at start. Nothing else reads process.env.
import { type StoreConfig, storeConfigSchema } from "@ferry/storage";
import { z } from "zod";

const port = z.coerce.number().int().min(0).max(65535);

const schema = z.object({
  FERRY_DATABASE_URL: z.url({ protocol: /^postgres(ql)?$/, error: "must be a postgresql:// URL" }),
  FERRY_REDIS_URL: z.url({ protocol: /^rediss?$/, error: "must be a redis:// URL" }),
  FERRY_QUEUE_PREFIX: z.string().regex(/^[A-Za-z0-9_-]+$/, { error: "must be letters, digits, - or _" }).default("ferry"),
  FERRY_CLUSTER_SECRET: z.string().min(32, { error: "must be at least 32 characters (the cluster's HMAC key)" }),
  FERRY_LOG_LEVEL: z.enum(["trace", "debug", "info", "warn", "error", "fatal"]).default("info"),
  /** The controller's: after this long without a heartbeat it places the worker's vms elsewhere, so the worker pauses its guests. */
  FERRY_WORKER_TIMEOUT_MS: z.coerce.number().int().min(1000).default(10_000),
  FERRY_WORKER_ID: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: "must be lowercase letters, digits and dashes, e.g. w1" }),
  FERRY_WORKER_STATE_DIR: z.string().startsWith("/", { error: "must be an absolute path" }),
  FERRY_WORKER_VCPUS: z.coerce.number().int().positive(),
  FERRY_WORKER_MEMORY_MIB: z.coerce.number().int().min(128),
  FERRY_WORKER_CONSOLE_HOST: z.string().min(1).default("127.0.0.1"),
  FERRY_WORKER_CONSOLE_PORT: port.default(0),
  FERRY_IMAGES_DIR: z.string().startsWith("/", { error: "must be an absolute path" }).default("/var/lib/ferry/images"),
  FERRY_QEMU_BINARY: z.string().min(1).default("qemu-system-x86_64"),
  FERRY_ACCELERATOR: z.enum(["auto", "kvm", "tcg"]).default("auto"),
  /** MiB of TCG translation cache per guest (QEMU's tb-size); unset: QEMU's default. Bounds each guest's memory on hosts of many small guests. */
  FERRY_TCG_TB_SIZE_MIB: z.coerce.number().int().min(1).optional(),
  /** A folder every worker that may live-migrate with this one mounts at the same path: vm disks live there. */
  FERRY_WORKER_SHARED_STORAGE: z.string().startsWith("/", { error: "must be an absolute path" }).optional(),
  /** Where this worker's QEMUs listen for incoming live migrations; defaults to FERRY_WORKER_CONSOLE_HOST. */
  FERRY_WORKER_MIGRATION_HOST: z.string().min(1).optional(),
  // Guest states (suspend/resume) live in object storage shared by every worker of the cluster.
  FERRY_STATE_DIR: z.string().startsWith("/", { error: "must be an absolute path" }).default("/var/lib/ferry"),
  FERRY_STORAGE_DRIVER: z.enum(["folder", "s3"], { error: "must be folder or s3" }).default("folder"),
  FERRY_STORAGE_PATH: z.string().startsWith("/", { error: "must be an absolute path" }).optional(),
  FERRY_S3_ENDPOINT: z.string().optional(),
  FERRY_S3_REGION: z.string().optional(),
  FERRY_S3_BUCKET: z.string().optional(),
  FERRY_S3_ACCESS_KEY_ID: z.string().optional(),
  FERRY_S3_SECRET_ACCESS_KEY: z.string().optional(),
  FERRY_S3_FORCE_PATH_STYLE: z.enum(["true", "false"], { error: "must be true or false" }).default("false"),
  FERRY_CLUSTER_ID: z.string().min(1).default("ferry"),
  FERRY_GUEST_STATES_KEEP: z.coerce.number().int().min(1, { error: "must be at least 1 (the state a resume needs)" }).default(3),
  FERRY_GUEST_STATE_SWEEP_MS: z.coerce.number().int().positive().default(600_000),
  FERRY_GUEST_STATE_ORPHAN_AGE_MS: z.coerce.number().int().positive().default(3_600_000),
});

export type WorkerEnv = z.infer<typeof schema>;

/** The object store for guest states, from FERRY_STORAGE_* and FERRY_S3_* (packages/storage/README.md). */
export function storageConfigOf(env: WorkerEnv): StoreConfig {
  if (env.FERRY_STORAGE_DRIVER === "folder") {
    return { driver: "folder", path: env.FERRY_STORAGE_PATH ?? `${env.FERRY_STATE_DIR}/guest-states` };
  }
  return {
    driver: "s3",
    ...(env.FERRY_S3_ENDPOINT ? { endpoint: env.FERRY_S3_ENDPOINT } : {}),
    ...(env.FERRY_S3_REGION ? { region: env.FERRY_S3_REGION } : {}),
    bucket: env.FERRY_S3_BUCKET ?? "",
    accessKeyId: env.FERRY_S3_ACCESS_KEY_ID ?? "",
    secretAccessKey: env.FERRY_S3_SECRET_ACCESS_KEY ?? "",
    forcePathStyle: env.FERRY_S3_FORCE_PATH_STYLE === "true",
  };
}

const s3Variables: Record<string, string> = {
  endpoint: "FERRY_S3_ENDPOINT",
  region: "FERRY_S3_REGION",
  bucket: "FERRY_S3_BUCKET",
  accessKeyId: "FERRY_S3_ACCESS_KEY_ID",
  secretAccessKey: "FERRY_S3_SECRET_ACCESS_KEY",
  path: "FERRY_STORAGE_PATH",
};

/** Parse the worker's variables; one error lists every bad one. */
export function parseEnv(source: Record<string, string | undefined>): WorkerEnv {
  const result = schema.safeParse(source);
  const describe = (name: string, message: string) => {
    const value = source[name];
    return `  ${name}: ${value === undefined ? "is required" : `${message} (got '${value}')`}`;
  };
  let problems: string[];
  if (result.success) {
    const storage = storeConfigSchema.safeParse(storageConfigOf(result.data));
    if (storage.success) return result.data;
    problems = storage.error.issues.map((issue) => describe(s3Variables[String(issue.path[0])] ?? "FERRY_STORAGE_DRIVER", issue.message));
  } else {
    problems = result.error.issues.map((issue) => describe(String(issue.path[0]), issue.message));
  }
  throw new Error(`The worker's environment is invalid:\n${problems.join("\n")}\nSet these variables and start the worker again.`);
}

/** This process's validated configuration. */
export const env = parseEnv(process.env);
