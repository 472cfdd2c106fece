// What GuestStateStore must do on any driver: run by the folder unit test and the S3
// integration test. Each test uses its own vm id in a store of its own.
import { randomBytes, randomUUID } from "node:crypto";
import { Readable } from "node:stream";
import { expect, it } from "vitest";
import { GuestStateStore } from "./guest-state-store.ts";
import type { ObjectStore } from "./object-store.ts";
import { drainUntilError, failingStream, randomStream, readAll, sha256, storageError, streamDigest } from "./test-support.ts";

const mebibyte = 1024 * 1024;
const secret = "guest-state-test-secret-0123456789abcdef";
const engineManifest = {
  format: "ferry-guest-state/1",
  qemuVersion: "7.2.22",
  machineType: "pc-q35-7.2",
  cpuModel: "qemu64",
  memoryMiB: 256,
  vcpus: 1,
  disks: [{ id: "data", base: "data.qcow2@image:abc" }],
};

function guestStates(store: ObjectStore, options: { partSizeBytes?: number; clusterId?: string; secret?: string } = {}) {
  return new GuestStateStore({
    store,
    secret: options.secret ?? secret,
    clusterId: options.clusterId ?? "cluster-a",
    partSizeBytes: options.partSizeBytes ?? mebibyte,
  });
}

async function keys(store: ObjectStore, prefix: string): Promise<string[]> {
  const found: string[] = [];
  for await (const object of store.list(prefix)) found.push(object.key);
  return found.sort();
}

async function rewrite(store: ObjectStore, key: string, edit: (data: Buffer) => Buffer): Promise<void> {
  const data = await readAll(await store.get(key));
  await store.put(key, Readable.from([edit(data)]));
}

/** A compressible disk-like stream: runs of zeros, text and random blocks. */
function diskImage(bytes: number): Buffer {
  const image = Buffer.alloc(bytes);
  for (let offset = 0; offset < bytes; offset += 256 * 1024) {
    if ((offset / (256 * 1024)) % 4 === 1) randomBytes(Math.min(64 * 1024, bytes - offset)).copy(image, offset);
    else image.write(`ferry-tick ${offset} uptime=${offset / 1000}\n`.repeat(100), offset);
  }
  return image;
}

async function writeState(states: GuestStateStore, vmId: string, stateId: string, data = Buffer.from(`state ${stateId}`)) {
  const writer = states.beginWrite({ vmId, stateId });
  await writer.addStream("memory", Readable.from([data]), { compress: false });
  return writer.commit({ engine: engineManifest, stateId });
}

/** Registers the contract's tests; `open` gives each test a new, empty object store. */
export function guestStateStoreContract(open: () => Promise<ObjectStore>): void {
  it("streams 50 MiB through 4 MiB parts and back, reading no further ahead than a few parts", async () => {
    const store = await open();
    const partSize = 4 * mebibyte;
    const states = guestStates(store, { partSizeBytes: partSize });
    const vmId = randomUUID();
    const total = 50 * mebibyte;
    const source = randomStream(total);
    // How far the writer has read the source beyond what is already stored: that is
    // what it holds in memory, and it must not grow with the stream.
    let produced = 0;
    let storedParts = 0;
    let furthestAhead = 0;
    source.stream.on("data", (chunk: Buffer) => {
      produced += chunk.length;
      furthestAhead = Math.max(furthestAhead, produced - storedParts * partSize);
    });
    source.stream.pause();
    const progress: number[] = [];
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    const stream = await writer.addStream("memory", source.stream, {
      compress: false,
      totalBytes: total,
      onProgress: ({ doneBytes, totalBytes }) => {
        expect(totalBytes).toBe(total);
        storedParts++;
        progress.push(doneBytes);
      },
    });
    expect(stream).toMatchObject({ name: "memory", bytes: total, storedBytes: total, parts: 13, sha256: source.sha256() });
    expect(progress).toHaveLength(13);
    expect(progress).toEqual([...progress].sort((a, b) => a - b));
    expect(progress.at(-1)).toBe(total);
    expect(furthestAhead).toBeGreaterThan(partSize);
    // Three parts uploading side by side, one filling, and the chunk in hand.
    expect(furthestAhead).toBeLessThanOrEqual(5 * partSize);
    await writer.commit({ engine: engineManifest });
    expect((await keys(store, `guest-states/${vmId}/s1/memory/`)).length).toBe(13);

    const reader = await states.open({ vmId, stateId: "s1" });
    expect(await streamDigest(reader.stream("memory"))).toEqual({ bytes: total, sha256: source.sha256() });
  });

  it("takes a stream's digest from its producer, refusing one whose length differs from what flowed", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    const data = randomBytes(3 * mebibyte + 5);
    // A digest that is not the data's: what the store records is the producer's, not its own.
    const claimed = { bytes: data.length, sha256: sha256(Buffer.from("not the data")) };
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    const stream = await writer.addStream("memory", Readable.from([data]), { compress: false, digest: Promise.resolve(claimed) });
    expect(stream).toMatchObject({ bytes: data.length, sha256: claimed.sha256, parts: 4 });
    await writer.commit({ engine: engineManifest });
    const reader = await states.open({ vmId, stateId: "s1" });
    // A consumer that checks the whole stream itself gets the verified parts as they are...
    expect(sha256(await readAll(reader.stream("memory", { wholeChecksum: false })))).toBe(sha256(data));
    // ...and by default the store checks the whole stream against the manifest at its end.
    const { emitted, error } = await drainUntilError(reader.stream("memory"));
    expect(sha256(emitted)).toBe(sha256(data));
    expect((error as Error).message).toContain("failed its whole-stream checksum");

    const short = states.beginWrite({ vmId, stateId: "s2" });
    const refused = await storageError(
      short.addStream("memory", Readable.from([data]), { compress: false, digest: Promise.resolve({ ...claimed, bytes: data.length + 1 }) }),
      "incomplete",
    );
    expect(refused.message).toContain(`counted ${data.length + 1} bytes but ${data.length} were stored`);
    await short.abort();
    // A producer that failed while the store refused the stream is not left unhandled (vitest fails on one).
    await storageError(short.addStream("memory", Readable.from([data]), { compress: false, digest: Promise.reject(new Error("save failed")) }), "closed");
  });

  it("compresses a disk stream with zstd and gives back the original bytes", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    const disk = diskImage(6 * mebibyte);
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    const stream = await writer.addStream("disk-data", Readable.from([disk.subarray(0, 100_000), disk.subarray(100_000)]), {
      compress: true,
    });
    expect(stream).toMatchObject({ compressed: true, bytes: disk.length, sha256: sha256(disk) });
    expect(stream.storedBytes).toBeLessThan(disk.length / 2);
    const firstPart = await readAll(await store.get(`guest-states/${vmId}/s1/disk-data/0`));
    expect(firstPart.subarray(0, 4)).toEqual(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])); // zstd frame magic
    await writer.commit(null);
    const back = await readAll((await states.open({ vmId, stateId: "s1" })).stream("disk-data"));
    expect(back.equals(disk)).toBe(true);
  });

  it("keeps several streams and the metadata in one guest state", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    const memory = randomBytes(3 * mebibyte + 5);
    const disk = diskImage(2 * mebibyte);
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    await writer.addStream("memory", Readable.from([memory]), { compress: false });
    await writer.addStream("disk-data", Readable.from([disk]), { compress: true });
    const summary = await writer.commit({ engine: engineManifest, createdAt: new Date("2030-01-01T00:00:00Z") });
    const reader = await states.open({ vmId, stateId: "s1" });
    expect(reader.metadata).toEqual({ engine: engineManifest, createdAt: "2030-01-01T00:00:00.000Z" });
    expect(reader.streams.map((s) => [s.name, s.parts])).toEqual([
      ["memory", 4],
      ["disk-data", 1],
    ]);
    expect((await readAll(reader.stream("memory"))).equals(memory)).toBe(true);
    expect((await readAll(reader.stream("disk-data"))).equals(disk)).toBe(true);
    expect(summary.storedBytes).toBe(reader.streams.reduce((sum, s) => sum + s.storedBytes, 0));
    expect(() => reader.stream("disk-root")).toThrow(/no stream "disk-root"; it has memory, disk-data/);
  });

  it("does not exist until the manifest is written: an interrupted write is invisible, then collected", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    const died = new Error("worker killed mid-suspend");
    await expect(writer.addStream("memory", failingStream(3 * mebibyte + 100, died), { compress: false })).rejects.toBe(died);
    expect(await keys(store, `guest-states/${vmId}/`)).toHaveLength(3);
    expect(await states.list(vmId)).toEqual([]);
    expect(await states.latest(vmId)).toBeNull();
    const error = await storageError(states.open({ vmId, stateId: "s1" }), "incomplete");
    expect(error.message).toContain(`${vmId}/s1`);
    // Too young: the upload may still be going on.
    expect(await states.collectOrphans({ olderThanMs: 60 * 60_000 })).toEqual([]);
    await writeState(states, vmId, "s2");
    const later = new Date(Date.now() + 2 * 60 * 60_000);
    expect(await states.collectOrphans({ olderThanMs: 60 * 60_000, now: later })).toEqual([{ vmId, stateId: "s1", objects: 3 }]);
    expect(await keys(store, `guest-states/${vmId}/s1/`)).toEqual([]);
    await storageError(states.open({ vmId, stateId: "s1" }), "not_found");
    expect((await states.list(vmId)).map((s) => s.stateId)).toEqual(["s2"]);
  });

  it("abort deletes the parts written so far, and the writer is closed after", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    await writer.addStream("memory", Readable.from([randomBytes(2 * mebibyte)]), { compress: false });
    await writer.abort();
    expect(await keys(store, `guest-states/${vmId}/`)).toEqual([]);
    await storageError(writer.commit({}), "closed");
  });

  it("refuses to write over a committed guest state", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    await writeState(states, vmId, "s1", Buffer.from("original"));
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    await storageError(writer.addStream("memory", Readable.from([Buffer.from("other")]), { compress: false }), "exists");
    await writer.abort();
    expect((await readAll((await states.open({ vmId, stateId: "s1" })).stream("memory"))).toString()).toBe("original");
  });

  it("errors with corrupt, naming the part, on a flipped byte, and emits none of that part", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    const memory = randomBytes(4 * mebibyte);
    await writeState(states, vmId, "s1", memory);
    await rewrite(store, `guest-states/${vmId}/s1/memory/2`, (data) => {
      data[1234] = data[1234]! ^ 0x01;
      return data;
    });
    const reader = await states.open({ vmId, stateId: "s1" });
    const { emitted, error } = await drainUntilError(reader.stream("memory"));
    expect(error).toMatchObject({ name: "StorageError", code: "corrupt" });
    expect((error as Error).message).toContain(`Guest state ${vmId}/s1 part memory/2 failed its checksum`);
    expect(emitted.length).toBe(2 * mebibyte);
    expect(emitted.equals(memory.subarray(0, 2 * mebibyte))).toBe(true);
  });

  it("errors with corrupt on a damaged compressed part", async () => {
    const store = await open();
    const states = guestStates(store, { partSizeBytes: 64 * 1024 });
    const vmId = randomUUID();
    const writer = states.beginWrite({ vmId, stateId: "s1" });
    await writer.addStream("disk-data", Readable.from([diskImage(4 * mebibyte)]), { compress: true });
    await writer.commit(null);
    await rewrite(store, `guest-states/${vmId}/s1/disk-data/1`, (data) => Buffer.concat([data, Buffer.from("x")]));
    const { error } = await drainUntilError((await states.open({ vmId, stateId: "s1" })).stream("disk-data"));
    expect(error).toMatchObject({ code: "corrupt" });
    expect((error as Error).message).toContain("part disk-data/1");
  });

  it("errors with incomplete, naming the part, when a part is missing", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    await writeState(states, vmId, "s1", randomBytes(3 * mebibyte));
    await store.delete(`guest-states/${vmId}/s1/memory/1`);
    const { emitted, error } = await drainUntilError((await states.open({ vmId, stateId: "s1" })).stream("memory"));
    expect(error).toMatchObject({ code: "incomplete" });
    expect((error as Error).message).toContain("missing part memory/1");
    expect(emitted.length).toBe(mebibyte);
  });

  it("refuses a tampered manifest with bad_signature, and does not list it", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    await writeState(states, vmId, "s1");
    await writeState(states, vmId, "s2");
    await rewrite(store, `guest-states/${vmId}/s1/manifest.json`, (data) => {
      const manifest = JSON.parse(data.toString());
      manifest.metadata.engine.cpuModel = "Skylake-Client";
      return Buffer.from(JSON.stringify(manifest));
    });
    const error = await storageError(states.open({ vmId, stateId: "s1" }), "bad_signature");
    expect(error.message).toContain(`guest state ${vmId}/s1 does not match its signature`);
    expect((await states.list(vmId)).map((s) => s.stateId)).toEqual(["s2"]);
  });

  it("refuses a manifest signed with another secret, and one copied from another vm", async () => {
    const store = await open();
    const vmId = randomUUID();
    await writeState(guestStates(store, { secret: "another-secret-of-the-same-cluster-0000" }), vmId, "s1");
    await storageError(guestStates(store).open({ vmId, stateId: "s1" }), "bad_signature");

    const states = guestStates(store);
    const otherVm = randomUUID();
    await writeState(states, otherVm, "s1");
    const manifest = await readAll(await store.get(`guest-states/${otherVm}/s1/manifest.json`));
    await store.put(`guest-states/${vmId}/s2/manifest.json`, Readable.from([manifest]));
    const error = await storageError(states.open({ vmId, stateId: "s2" }), "bad_signature");
    expect(error.message).toContain(`signed for ${otherVm}/s1`);
  });

  it("refuses another cluster's guest state with foreign", async () => {
    const store = await open();
    const vmId = randomUUID();
    await writeState(guestStates(store, { clusterId: "cluster-b", secret: "cluster-b-secret-0123456789abcdef0123" }), vmId, "s1");
    const error = await storageError(guestStates(store).open({ vmId, stateId: "s1" }), "foreign");
    expect(error.message).toContain('cluster "cluster-b", not this one ("cluster-a")');
  });

  it("lists newest first, prunes to the newest N, and deletes all", async () => {
    const store = await open();
    const states = guestStates(store);
    const vmId = randomUUID();
    for (const stateId of ["s1", "s2", "s3", "s4"]) {
      await writeState(states, vmId, stateId, randomBytes(mebibyte + 1));
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
    await writeState(states, randomUUID(), "s1");
    const listed = await states.list(vmId);
    expect(listed.map((s) => s.stateId)).toEqual(["s4", "s3", "s2", "s1"]);
    expect(listed[0]).toMatchObject({ vmId, storedBytes: mebibyte + 1, metadata: { engine: engineManifest, stateId: "s4" } });
    expect(listed[0]!.createdAt.getTime()).toBeGreaterThan(listed[1]!.createdAt.getTime());
    expect((await states.latest(vmId))?.stateId).toBe("s4");

    expect(await states.prune(vmId, 2)).toEqual(["s2", "s1"]);
    expect((await states.list(vmId)).map((s) => s.stateId)).toEqual(["s4", "s3"]);
    expect(await keys(store, `guest-states/${vmId}/s1/`)).toEqual([]);
    expect(await keys(store, `guest-states/${vmId}/s2/`)).toEqual([]);

    await states.deleteAll(vmId);
    expect(await keys(store, `guest-states/${vmId}/`)).toEqual([]);
    expect(await states.list(vmId)).toEqual([]);
    expect(await keys(store, "guest-states/")).toHaveLength(2); // the other vm's state is untouched
  });

  it("refuses ids that would escape the vm's prefix", async () => {
    const states = guestStates(await open());
    expect(() => states.beginWrite({ vmId: "../etc", stateId: "s1" })).toThrow(/vmId "\.\.\/etc" is not a valid/);
    await storageError(states.open({ vmId: "vm-1", stateId: "a/b" }), "invalid_key");
    await storageError(states.list("vm/1"), "invalid_key");
  });
}
