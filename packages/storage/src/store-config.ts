// Which object store a process uses, as one validated value. The worker builds it from
// FERRY_STORAGE_* / FERRY_S3_* (see README.md); this package reads no environment.
import { z } from "zod";
import { StorageError } from "./errors.ts";
import { LocalFolderStore } from "./local-folder.ts";
import type { ObjectStore } from "./object-store.ts";

const mebibyte = 1024 * 1024;

/** `{ driver: "folder", path }` or `{ driver: "s3", bucket, … }`. */
export const storeConfigSchema = z.discriminatedUnion("driver", [
  z.object({
    driver: z.literal("folder"),
    path: z.string().startsWith("/", { error: "must be an absolute path" }),
  }),
  z.object({
    driver: z.literal("s3"),
    endpoint: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).optional(),
    region: z.string().min(1).default("us-east-1"),
    bucket: z
      .string()
      .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/, { error: "must be a bucket name: 3-63 lowercase letters, digits, . or -" }),
    accessKeyId: z.string().min(1, { error: "is required" }),
    secretAccessKey: z.string().min(1, { error: "is required" }),
    forcePathStyle: z.boolean().default(false),
    partSizeBytes: z
      .number()
      .int()
      .min(5 * mebibyte, { error: "must be at least 5 MiB (S3's smallest multipart part)" })
      .optional(),
  }),
]);

/** A store configuration before defaults are applied. */
export type StoreConfig = z.input<typeof storeConfigSchema>;

/** Validates `config` and opens its driver; the S3 SDK is loaded only for `driver: "s3"`. */
export async function openObjectStore(config: StoreConfig): Promise<ObjectStore> {
  const result = storeConfigSchema.safeParse(config);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join(".") || "driver"} ${issue.message}`);
    throw new StorageError(
      "invalid_config",
      `The object storage configuration is invalid: ${problems.join("; ")}. Fix FERRY_STORAGE_DRIVER and the FERRY_STORAGE_PATH or FERRY_S3_* variables.`,
    );
  }
  const parsed = result.data;
  if (parsed.driver === "folder") return new LocalFolderStore(parsed.path);
  const { S3Store } = await import("./s3.ts");
  return new S3Store(parsed);
}
