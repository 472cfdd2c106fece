import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { LocalFolderStore } from "./local-folder.ts";
import { openObjectStore, type StoreConfig } from "./store-config.ts";
import { storageError } from "./test-support.ts";

const packageDir = dirname(dirname(fileURLToPath(import.meta.url)));

describe("openObjectStore", () => {
  it("opens the folder driver", async () => {
    const store = await openObjectStore({ driver: "folder", path: "/var/lib/ferry/objects" });
    expect(store).toBeInstanceOf(LocalFolderStore);
    expect(store.location).toBe("folder /var/lib/ferry/objects");
  });

  it("opens the S3 driver with AWS defaults or a custom endpoint", async () => {
    const aws = await openObjectStore({ driver: "s3", bucket: "ferry-states", accessKeyId: "a", secretAccessKey: "b" });
    expect(aws.location).toBe("s3://ferry-states at AWS S3 (us-east-1)");
    const minio = await openObjectStore({
      driver: "s3",
      endpoint: "http://127.0.0.1:9000",
      region: "eu-west-1",
      bucket: "ferry",
      accessKeyId: "a",
      secretAccessKey: "b",
      forcePathStyle: true,
    });
    expect(minio.location).toBe("s3://ferry at http://127.0.0.1:9000");
  });

  it.each<[string, StoreConfig, string]>([
    ["a relative folder", { driver: "folder", path: "objects" }, "path must be an absolute path"],
    ["an unknown driver", { driver: "gcs" } as unknown as StoreConfig, "driver"],
    ["a bucket name with capitals", { driver: "s3", bucket: "Ferry", accessKeyId: "a", secretAccessKey: "b" }, "bucket must be a bucket name"],
    ["a missing secret key", { driver: "s3", bucket: "ferry", accessKeyId: "a", secretAccessKey: "" }, "secretAccessKey is required"],
    ["an endpoint that is not http", { driver: "s3", endpoint: "ftp://x", bucket: "ferry", accessKeyId: "a", secretAccessKey: "b" }, "endpoint must be an http"],
    ["parts under 5 MiB", { driver: "s3", bucket: "ferry", accessKeyId: "a", secretAccessKey: "b", partSizeBytes: 1024 }, "partSizeBytes must be at least 5 MiB"],
  ])("refuses %s, saying which field and which variables to fix", async (_name, config, problem) => {
    const error = await storageError(openObjectStore(config), "invalid_config");
    expect(error.message).toContain(problem);
    expect(error.message).toContain("FERRY_STORAGE_DRIVER");
  });

  it("loads the AWS SDK only when the S3 driver is opened", async () => {
    const folder = await mkdtemp(join(tmpdir(), "ferry-storage-imports-"));
    try {
      const hook = join(folder, "hook.mjs");
      await writeFile(
        hook,
        `export async function resolve(specifier, context, next) {
          if (specifier.startsWith("@aws-sdk/")) process.stdout.write("sdk:" + specifier + "\\n");
          return next(specifier, context);
        }\n`,
      );
      const script = `
        import { register } from "node:module";
        register(${JSON.stringify(pathToFileURL(hook).href)});
        const storage = await import("@ferry/storage");
        process.stdout.write("index loaded\\n");
        await storage.openObjectStore({ driver: "folder", path: "/tmp/x" });
        process.stdout.write("folder opened\\n");
        await storage.openObjectStore({ driver: "s3", bucket: "ferry", accessKeyId: "a", secretAccessKey: "b" });
        process.stdout.write("s3 opened\\n");
      `;
      const { stdout } = await promisify(execFile)(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], {
        cwd: packageDir,
      });
      const lines = stdout.trim().split("\n");
      expect(lines.slice(0, 2)).toEqual(["index loaded", "folder opened"]);
      expect(lines).toContain("sdk:@aws-sdk/client-s3");
      expect(lines.at(-1)).toBe("s3 opened");
    } finally {
      await rm(folder, { recursive: true, force: true });
    }
  });
});
