import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import { LocalFolderStore } from "./local-folder.ts";
import { objectStoreContract } from "./object-store.contract.ts";
import { failingStream, storageError } from "./test-support.ts";

const folders: string[] = [];

async function openStore(): Promise<LocalFolderStore> {
  const folder = await mkdtemp(join(tmpdir(), "ferry-folder-store-"));
  folders.push(folder);
  return new LocalFolderStore(join(folder, "objects"));
}

afterEach(async () => {
  for (const folder of folders.splice(0)) await rm(folder, { recursive: true, force: true });
});

describe("LocalFolderStore", () => {
  objectStoreContract(openStore);

  it("leaves no temporary file behind after a failed put", async () => {
    const store = await openStore();
    await expect(store.put("a/b", failingStream(100_000, new Error("gone")))).rejects.toThrow("gone");
    expect(await readdir(join(store.rootDir, ".ferry-partial"))).toEqual([]);
  });

  it("reserves its temporary folder's name", async () => {
    const store = await openStore();
    await storageError(store.put(".ferry-partial/x", Readable.from([Buffer.from("x")])), "invalid_key");
  });

  it("removes folders that deletes leave empty", async () => {
    const store = await openStore();
    await store.put("guest-states/vm-1/s1/memory/0", Readable.from([Buffer.from("x")]));
    await store.deletePrefix("guest-states/vm-1/");
    expect((await readdir(store.rootDir)).sort()).toEqual([".ferry-partial"]);
  });

  it("refuses a relative root", () => {
    expect(() => new LocalFolderStore("objects")).toThrow(/not an absolute path.*FERRY_STORAGE_PATH/);
  });

  it("explains a key that would need an object to be a folder too", async () => {
    const store = await openStore();
    await store.put("a", Readable.from([Buffer.from("x")]));
    const error = await storageError(store.put("a/b", Readable.from([Buffer.from("y")])), "invalid_key");
    expect(error.message).toContain("writing object a/b");
    expect(error.message).toContain('cannot hold both "a" and "a/b"');
  });
});
