// A real S3-protocol server for the tests: s3rver in this process, on 127.0.0.1 with an
// ephemeral port and a temporary folder. Each test gets its own bucket.
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { mkdtemp, rm } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import S3rver from "s3rver";
import { S3Store, type S3StoreOptions } from "./s3.ts";

// s3rver accepts any request signed with these (its documented defaults).
const credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export interface S3TestServer {
  endpoint: string;
  /** A new, empty bucket and a store on it. */
  openStore(options?: Partial<S3StoreOptions>): Promise<S3Store>;
  close(): Promise<void>;
}

export async function startS3TestServer(): Promise<S3TestServer> {
  const directory = await mkdtemp(join(tmpdir(), "ferry-s3rver-"));
  const server = new S3rver({ address: "127.0.0.1", port: 0, silent: true, directory });
  const address = (await server.run()) as AddressInfo;
  const endpoint = `http://127.0.0.1:${address.port}`;
  const admin = new S3Client({ endpoint, region: "us-east-1", forcePathStyle: true, credentials });
  const stores: S3Store[] = [];
  let buckets = 0;
  return {
    endpoint,
    async openStore(options = {}) {
      const bucket = `ferry-test-${process.pid}-${++buckets}`;
      await admin.send(new CreateBucketCommand({ Bucket: bucket }));
      const store = new S3Store({ endpoint, region: "us-east-1", bucket, forcePathStyle: true, ...credentials, ...options });
      stores.push(store);
      return store;
    },
    async close() {
      for (const store of stores) store.close();
      admin.destroy();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
