// The behaviour every ObjectStore driver must show, run against each driver by its own
// test file (the folder driver as a unit test, S3 against a real S3-protocol server).
import { Readable } from "node:stream";
import { expect, it } from "vitest";
import type { ObjectStore } from "./object-store.ts";
import { failingStream, randomStream, readAll, sha256, storageError } from "./test-support.ts";

const mebibyte = 1024 * 1024;

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const object of store.list(prefix)) found.push(object.key);
  return found.sort();
}

function text(value: string): Readable {
  return Readable.from([Buffer.from(value)]);
}

/** Registers the contract's tests; `open` gives each test a new, empty store. */
export function objectStoreContract(open: () => Promise<ObjectStore>): void {
  it("streams a 12 MiB object in and out unchanged (several S3 parts)", async () => {
    const store = await open();
    const source = randomStream(12 * mebibyte);
    expect(await store.put("big/object", source.stream)).toEqual({ bytes: 12 * mebibyte });
    expect(sha256(await readAll(await store.get("big/object")))).toBe(source.sha256());
    expect(await store.head("big/object")).toEqual({ bytes: 12 * mebibyte });
  });

  it("stores an empty object", async () => {
    const store = await open();
    expect(await store.put("empty", Readable.from([]))).toEqual({ bytes: 0 });
    expect(await store.head("empty")).toEqual({ bytes: 0 });
    expect((await readAll(await store.get("empty"))).length).toBe(0);
  });

  it("replaces an object on put", async () => {
    const store = await open();
    await store.put("a/b", text("first"));
    await store.put("a/b", text("second"));
    expect((await readAll(await store.get("a/b"))).toString()).toBe("second");
  });

  it("says not_found for a missing object, and head says null", async () => {
    const store = await open();
    const error = await storageError(store.get("no/such/object"), "not_found");
    expect(error.message).toContain("no/such/object");
    expect(await store.head("no/such/object")).toBeNull();
  });

  it("keeps nothing when the body fails midway, and passes the body's error on", async () => {
    const store = await open();
    const failure = new Error("the guest went away");
    await expect(store.put("broken/object", failingStream(7 * mebibyte, failure))).rejects.toBe(failure);
    expect(await store.head("broken/object")).toBeNull();
    expect(await keys(store, "")).toEqual([]);
  });

  it("refuses a body shorter than its announced length and keeps nothing", async () => {
    const store = await open();
    const error = await storageError(store.put("short", text("12345"), { contentLength: 6 }), "incomplete");
    expect(error.message).toContain("5 bytes but 6");
    expect(await store.head("short")).toBeNull();
  });

  it("stores a body given with its sha256, and refuses one shorter than announced", async () => {
    const store = await open();
    const body = Buffer.from("12345");
    expect(await store.put("hashed", Readable.from([body]), { contentLength: 5, sha256: sha256(body) })).toEqual({ bytes: 5 });
    expect((await readAll(await store.get("hashed"))).toString()).toBe("12345");
    const error = await storageError(store.put("short", Readable.from([body]), { contentLength: 6, sha256: sha256(body) }), "incomplete");
    expect(error.message).toContain("5 bytes but 6");
    expect(await store.head("short")).toBeNull();
  });

  it("lists by prefix with sizes and times, not by folder", async () => {
    const store = await open();
    const before = Date.now() - 2_000;
    for (const key of ["vm/a/1", "vm/a/2", "vm/ab/1", "vm/b", "other/1"]) await store.put(key, text(key));
    expect(await keys(store, "vm/a/")).toEqual(["vm/a/1", "vm/a/2"]);
    expect(await keys(store, "vm/a")).toEqual(["vm/a/1", "vm/a/2", "vm/ab/1"]);
    expect(await keys(store, "")).toEqual(["other/1", "vm/a/1", "vm/a/2", "vm/ab/1", "vm/b"]);
    expect(await keys(store, "nothing/")).toEqual([]);
    for await (const object of store.list("vm/b")) {
      expect(object).toMatchObject({ key: "vm/b", bytes: 4 });
      expect(object.lastModified.getTime()).toBeGreaterThan(before);
    }
  });

  it("lists more objects than one page holds", async () => {
    const store = await open();
    const written = Array.from({ length: 25 }, (_, i) => `many/${String(i).padStart(2, "0")}`);
    await Promise.all(written.map((key) => store.put(key, text(key))));
    expect(await keys(store, "many/")).toEqual(written);
  });

  it("deletes one object, an absent one quietly, and a whole prefix", async () => {
    const store = await open();
    for (const key of ["s/1/a", "s/1/b", "s/2/a", "t"]) await store.put(key, text(key));
    await store.delete("t");
    await store.delete("t");
    expect(await store.head("t")).toBeNull();
    expect(await store.deletePrefix("s/1/")).toBe(2);
    expect(await keys(store, "")).toEqual(["s/2/a"]);
    await store.put("s/1/c", text("after"));
    expect(await keys(store, "s/1/")).toEqual(["s/1/c"]);
  });

  it.each([
    ["empty", ""],
    ["absolute", "/etc/passwd"],
    ["dot-dot", "a/../../etc"],
    ["dot", "a/./b"],
    ["double slash", "a//b"],
    ["trailing slash", "a/b/"],
    ["control character", "a\u0000b"],
    ["newline", "a\nb"],
    ["backslash", "a\\b"],
  ])("refuses a %s key on every operation", async (_name, key) => {
    const store = await open();
    for (const action of [
      () => store.put(key, text("x")),
      () => store.get(key),
      () => store.head(key),
      () => store.delete(key),
    ]) {
      expect((await storageError(action, "invalid_key")).message).toContain(JSON.stringify(key));
    }
  });

  it("refuses a prefix that climbs out", async () => {
    const store = await open();
    await storageError(() => store.deletePrefix("../"), "invalid_key");
    await storageError(async () => {
      for await (const _ of store.list("a/../../")) break;
    }, "invalid_key");
  });
}
