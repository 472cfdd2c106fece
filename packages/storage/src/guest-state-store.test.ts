import { execFileSync } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { GuestStateStore } from "./guest-state-store.ts";
import { guestStateStoreContract } from "./guest-state-store.contract.ts";
import { LocalFolderStore } from "./local-folder.ts";
import { failingStream, storageError } from "./test-support.ts";

const folders: string[] = [];

async function openStore(): Promise<LocalFolderStore> {
  const folder = await mkdtemp(join(tmpdir(), "ferry-guest-states-"));
  folders.push(folder);
  return new LocalFolderStore(folder);
}

afterEach(async () => {
  for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
});

describe("GuestStateStore on the folder driver", () => {
  guestStateStoreContract(openStore);

  it("fetches a stream's first three parts as it is opened, and the next ones as it is read", async () => {
    const partBytes = 64 * 1024;
    const fetched: string[] = [];
    const store = new (class extends LocalFolderStore {
      override get(key: string) {
        fetched.push(key.slice(key.lastIndexOf("/memory/") + 1));
        return super.get(key);
      }
    })((await openStore()).rootDir);
    const states = new GuestStateStore({ store, secret: "x".repeat(32), clusterId: "c", partSizeBytes: partBytes });
    const memory = Buffer.alloc(5 * partBytes, 7);
    const writer = states.beginWrite({ vmId: "vm-1", stateId: "s1" });
    await writer.addStream("memory", Readable.from([memory]), { compress: false });
    await writer.commit({});
    const reader = await states.open({ vmId: "vm-1", stateId: "s1" });
    fetched.length = 0;
    const stream = reader.stream("memory", { wholeChecksum: false });
    expect(fetched).toEqual(["memory/0", "memory/1", "memory/2"]);
    const chunks: Buffer[] = [];
    for await (const chunk of stream) chunks.push(chunk as Buffer);
    expect(fetched).toEqual(["memory/0", "memory/1", "memory/2", "memory/3", "memory/4"]);
    expect(Buffer.concat(chunks).equals(memory)).toBe(true);
  });

  it("refuses a cluster secret shorter than 32 characters", async () => {
    const store = await openStore();
    expect(() => new GuestStateStore({ store, secret: "short", clusterId: "c" })).toThrow(/at least 32.*FERRY_CLUSTER_SECRET/);
  });

  it("says how to install zstd when it is missing", async () => {
    const states = new GuestStateStore({
      store: await openStore(),
      secret: "x".repeat(32),
      clusterId: "c",
      zstdBinary: "/nonexistent/zstd",
    });
    const writer = states.beginWrite({ vmId: "vm-1", stateId: "s1" });
    const error = await storageError(writer.addStream("disk-data", Readable.from([Buffer.from("data")]), { compress: true }), "compression_failed");
    expect(error.message).toContain("zstd was not found at /nonexistent/zstd");
    await writer.abort();
  });

  it("passes a failing disk stream's own error on through zstd, and leaves no zstd running", async () => {
    const states = new GuestStateStore({ store: await openStore(), secret: "x".repeat(32), clusterId: "c", partSizeBytes: 64 * 1024 });
    const writer = states.beginWrite({ vmId: "vm-1", stateId: "s1" });
    const failure = new Error("overlay read failed");
    await expect(writer.addStream("disk-data", failingStream(2 * 1024 * 1024, failure), { compress: true })).rejects.toBe(failure);
    await writer.abort();
    const children = execFileSync("ps", ["-e", "-o", "ppid=,comm="], { encoding: "utf8" })
      .split("\n")
      .filter((line) => line.trim().split(/\s+/)[0] === String(process.pid));
    expect(children.join("\n")).not.toContain("zstd");
  });
});
