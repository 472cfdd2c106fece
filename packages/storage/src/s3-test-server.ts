// A real S3-protocol server for the tests: s3rver in a child process on 127.0.0.1 with an
// ephemeral port and a temporary folder. Each test gets its own bucket.
//
// It runs as a child because s3rver 3.7.1 encrypts ListObjectsV2 continuation tokens with
// DES, which Node 20's OpenSSL 3 refuses unless started with --openssl-legacy-provider:
// in-process, every list longer than one page failed with HTTP 500.
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { S3Store, type S3StoreOptions } from "./s3.ts";

// s3rver accepts any request signed with these (its documented defaults).
const credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface S3TestServer {
  endpoint: string;
  /** The s3rver process, for tests that pause (SIGSTOP) or stop the server. */
  pid: number;
  /** The keys s3rver accepts. */
  credentials: { accessKeyId: string; secretAccessKey: string };
  /** A new, empty bucket; its name. */
  createBucket(): Promise<string>;
  /** A new, empty bucket and a store on it. */
  openStore(options?: Partial<S3StoreOptions>): Promise<S3Store>;
  close(): Promise<void>;
}

export async function startS3TestServer(): Promise<S3TestServer> {
  const directory = await mkdtemp(join(tmpdir(), "ferry-s3rver-"));
  const bin = join(dirname(createRequire(import.meta.url).resolve("s3rver/package.json")), "bin", "s3rver.js");
  const child = spawn(process.execPath, ["--openssl-legacy-provider", bin, "-d", directory, "-a", "127.0.0.1", "-p", "0", "--silent"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  const exited = once(child, "exit");
  let output = "";
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`s3rver did not start within 10 s; it printed: ${output}`)), 10_000);
    const onOutput = (data: Buffer) => {
      output += data.toString();
      const match = /S3rver listening on [\d.]+:(\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve(Number(match[1]));
      }
    };
    child.stdout.on("data", onOutput);
    child.stderr.on("data", onOutput);
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`s3rver exited with ${code} before listening; it printed: ${output}`));
    });
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const admin = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
  const stores: S3Store[] = [];
  let buckets = 0;
  const createBucket = async () => {
    const bucket = `ferry-test-${++buckets}`;
    await admin.send(new CreateBucketCommand({ Bucket: bucket }));
    return bucket;
  };
  return {
    endpoint,
    pid: child.pid!,
    credentials,
    createBucket,
    async openStore(options = {}) {
      const bucket = await createBucket();
      const store = new S3Store({ endpoint, region: "us-east-1", bucket, forcePathStyle: true, ...credentials, ...options });
      stores.push(store);
      return store;
    },
    async close() {
      for (const store of stores) store.close();
      admin.destroy();
      if (child.exitCode === null) {
        child.kill("SIGTERM");
        await exited;
      }
      await rm(directory, { recursive: true, force: true });
    },
  };
}
