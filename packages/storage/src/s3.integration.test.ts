// The S3 driver against a real S3-protocol server (s3rver, started here).
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Readable } from "node:stream";
import { guestStateStoreContract } from "./guest-state-store.contract.ts";
import { objectStoreContract } from "./object-store.contract.ts";
import { S3Store } from "./s3.ts";
import { startS3TestServer, type S3TestServer } from "./s3-test-server.ts";
import { randomStream, readAll, sha256, storageError } from "./test-support.ts";

let server: S3TestServer;

beforeAll(async () => {
  server = await startS3TestServer();
});

afterAll(async () => {
  await server?.close();
});

describe("S3Store on s3rver", () => {
  // 5 MiB parts (S3's minimum) so the 12 MiB contract object is a 3-part multipart upload;
  // 10 keys per list page so listing 25 objects takes three pages.
  objectStoreContract(() => server.openStore({ partSizeBytes: 5 * 1024 * 1024, listPageSize: 10 }));

  it("uploads a multipart object the server reassembles byte for byte", async () => {
    const store = await server.openStore({ partSizeBytes: 5 * 1024 * 1024 });
    const source = randomStream(11 * 1024 * 1024 + 17);
    await store.put("multi", source.stream);
    const back = await readAll(await store.get("multi"));
    expect(back.length).toBe(11 * 1024 * 1024 + 17);
    expect(sha256(back)).toBe(source.sha256());
  });

  it("says no_bucket, naming the bucket, when it does not exist", async () => {
    const store = new S3Store({
      endpoint: server.endpoint,
      region: "us-east-1",
      bucket: "ferry-missing-bucket",
      forcePathStyle: true,
      accessKeyId: "S3RVER",
      secretAccessKey: "S3RVER",
    });
    try {
      const error = await storageError(store.put("a", Readable.from([Buffer.from("x")])), "no_bucket");
      expect(error.message).toContain("ferry-missing-bucket");
      expect(error.message).toContain("FERRY_S3_BUCKET");
    } finally {
      store.close();
    }
  });
});

describe("S3Store with nothing listening", () => {
  it("says unreachable within seconds, naming the endpoint and FERRY_S3_ENDPOINT", async () => {
    // A port that was just free: bind, note, close.
    const { createServer } = await import("node:net");
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise((resolve) => probe.close(resolve));
    const endpoint = `http://127.0.0.1:${port}`;
    const store = new S3Store({ endpoint, region: "us-east-1", bucket: "ferry", forcePathStyle: true, accessKeyId: "k", secretAccessKey: "s" });
    try {
      for (const action of [
        () => store.put("a", Readable.from([Buffer.from("x")])),
        () => store.get("a"),
        () => store.head("a"),
        async () => {
          for await (const _ of store.list("")) break;
        },
      ]) {
        const started = Date.now();
        const error = await storageError(action, "unreachable");
        expect(Date.now() - started).toBeLessThan(5_000);
        expect(error.message).toContain(endpoint);
        expect(error.message).toContain("ECONNREFUSED");
        expect(error.message).toContain("FERRY_S3_ENDPOINT");
      }
    } finally {
      store.close();
    }
  });
});

describe("GuestStateStore on s3rver", () => {
  guestStateStoreContract(() => server.openStore());
});
