// Lab golden points: a template version's copy of the guest state it was published from, and
// where a vm.resume continues from (the vm's own guest state, or a clone's golden point).
//
// A golden point is stored under the version's own name (guest-states/lab-<versionId>/…),
// never under a vm's: a vm's keep-last-N pruning and its deletion only touch
// guest-states/<vmId>/, so the golden point outlives both. The copy is read through the
// verifying reader (signature, every part's sha256) and signed afresh, so a damaged state is
// never published; its streams keep their bytes, so the engine manifest inside still holds.
//
// Each worker keeps the golden points its clones started from (GoldenPointCache): fetched and
// verified once, then every further clone copies its streams from local files. The engine
// still checks the memory stream against the signed manifest before QEMU reads it.
//
// Clones on a worker share the golden point's RAM: the worker splits it once (the cache's
// `shared`) into a memory file, written by this worker's QEMU from the verified memory stream
// and never changed afterwards, and the devices alone (<1 MB, checked against their manifest
// at every restore). Each clone's QEMU maps the file copy-on-write, so the pages a clone
// never writes are one copy in the page cache for all of them, and loading skips the RAM.
import { createReadStream, createWriteStream } from "node:fs";
import { copyFile, mkdir, readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";

import type { Db } from "@ferry/db";
import { type Engine, type GuestStateManifest, type RestoreOptions, type VmSpec, guestStateFileSink } from "@ferry/engine";
import type { PublishRequest } from "@ferry/jobs";
import { type GuestStateReader, type GuestStateRef, type GuestStateStore, isStorageError } from "@ferry/storage";

import type { WorkerContext } from "./context.ts";
import { type GuestStateMetadata, guestStateMetadata } from "./guest-state-store.ts";

/** The name a template version's golden point is stored under in place of a vm id. */
export function goldenPointOwner(versionId: string): string {
  return `lab-${versionId}`;
}

/** A golden point in storage: its state id, its size and what it was saved under. */
export interface GoldenPoint {
  stateId: string;
  storedBytes: number;
  metadata: GuestStateMetadata;
}

/**
 * Copy the vm's guest state `request.stateId` as the golden point of `request.versionId`. A
 * golden point already committed (a redelivered job) is returned as it is.
 */
export async function copyGoldenPoint(store: GuestStateStore, vmId: string, request: PublishRequest): Promise<GoldenPoint> {
  const ref: GuestStateRef = { vmId: goldenPointOwner(request.versionId), stateId: request.stateId };
  try {
    const existing = await store.open(ref);
    return goldenPoint(ref, existing.metadata, existing.streams.reduce((sum, stream) => sum + stream.storedBytes, 0));
  } catch (error) {
    if (!isStorageError(error, "not_found") && !isStorageError(error, "incomplete")) throw error;
  }
  const source = await store.open({ vmId, stateId: request.stateId });
  const metadata = goldenPoint({ vmId, stateId: request.stateId }, source.metadata, 0).metadata;
  const writer = store.beginWrite(ref);
  try {
    for (const stream of source.streams) {
      await writer.addStream(stream.name, source.stream(stream.name), { compress: stream.compressed, totalBytes: stream.bytes });
    }
    const summary = await writer.commit(metadata);
    return { stateId: summary.stateId, storedBytes: summary.storedBytes, metadata };
  } catch (error) {
    await writer.abort().catch(() => undefined);
    throw error;
  }
}

function goldenPoint(ref: GuestStateRef, metadata: unknown, storedBytes: number): GoldenPoint {
  const parsed = guestStateMetadata.safeParse(metadata);
  if (!parsed.success) {
    throw new Error(`guest state ${ref.vmId}/${ref.stateId} was not written by a Ferry worker (its metadata has no engine manifest and disk list); suspend the vm again and republish`);
  }
  return { stateId: ref.stateId, storedBytes, metadata: parsed.data };
}

/** Where a resume continues from, and how the engine is to check it. */
export interface ResumeSource {
  ref: GuestStateRef;
  /** a template version's golden point (read through the worker's GoldenPointCache) */
  golden: boolean;
  restore: RestoreOptions;
}

/**
 * The guest state vm.resume loads: the vm's recorded one; else, for a lab clone, its template
 * version's golden point (a clone's first start, or after a reset), restored as a clone of
 * the vm it was published from; else the newest one in storage.
 */
export async function resumeSource(db: Db, store: GuestStateStore, vmId: string): Promise<ResumeSource | undefined> {
  const row = await db.vm.findUnique({
    where: { id: vmId },
    select: { guestStateId: true, sourceTemplateVersion: { select: { id: true, goldenStateId: true, sourceVmId: true } } },
  });
  if (row?.guestStateId) return { ref: { vmId, stateId: row.guestStateId }, golden: false, restore: {} };
  const version = row?.sourceTemplateVersion;
  if (version?.goldenStateId) {
    return { ref: { vmId: goldenPointOwner(version.id), stateId: version.goldenStateId }, golden: true, restore: { cloneOf: version.sourceVmId } };
  }
  const latest = await store.latest(vmId);
  return latest ? { ref: { vmId, stateId: latest.stateId }, golden: false, restore: {} } : undefined;
}

/** What a resume reads a guest state through: the store's verifying reader, or a cached golden point. */
export type GuestStateSourceReader = Pick<GuestStateReader, "metadata" | "streams" | "stream">;

/** A golden point split for this worker's clones: restore `devices` with `{ sharedMemory: memoryFile }`. */
export interface SharedGoldenPoint {
  memoryFile: string;
  devices: { file: string };
  manifest: GuestStateManifest;
}

/**
 * The golden points this worker has fetched, as verified local files (one folder per state,
 * renamed into place only once every stream passed its checks), so that 30 clones of a lab on
 * one worker read storage once. The newest `keep` stay; a fetch that fails is not kept.
 */
export class GoldenPointCache {
  readonly #fetches = new Map<string, Promise<GuestStateSourceReader>>();
  readonly #shares = new Map<string, Promise<SharedGoldenPoint>>();
  // What a previous run of the worker cached is not known to this one: start empty.
  readonly #emptied: Promise<void>;

  constructor(
    private readonly dir: string,
    private readonly store: GuestStateStore,
    private readonly engine: Engine,
    private readonly keep = 4,
  ) {
    this.#emptied = rm(dir, { recursive: true, force: true });
  }

  /** The golden point's streams and metadata, fetched and verified on first use. */
  open(ref: GuestStateRef): Promise<GuestStateSourceReader> {
    const key = `${ref.vmId}-${ref.stateId}`;
    let fetch = this.#fetches.get(key);
    if (!fetch) {
      fetch = this.#fetch(ref, join(this.dir, key));
      fetch.catch(() => this.#fetches.delete(key));
      this.#fetches.set(key, fetch);
    } else {
      // Most recently used last: the first key is the one to evict.
      this.#fetches.delete(key);
      this.#fetches.set(key, fetch);
    }
    void this.#evict();
    return fetch;
  }

  /**
   * The golden point as a memory file and its devices alone, made once on first use: loaded,
   * never run, into a QEMU as the vm it was published from (`spec`, the clone's, with that vm's
   * id and its paths in the cache).
   */
  shared(ref: GuestStateRef, metadata: GuestStateMetadata, spec: VmSpec, publishedFrom: string): Promise<SharedGoldenPoint> {
    const key = `${ref.vmId}-${ref.stateId}`;
    let share = this.#shares.get(key);
    if (!share) {
      share = this.open(ref).then(() => this.#share(join(this.dir, key), metadata, spec, publishedFrom));
      share.catch(() => this.#shares.delete(key));
      this.#shares.set(key, share);
    }
    return share;
  }

  async #share(folder: string, metadata: GuestStateMetadata, spec: VmSpec, publishedFrom: string): Promise<SharedGoldenPoint> {
    const done = join(folder, "shared");
    const partial = `${done}.partial`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    try {
      const sharer: VmSpec = {
        ...spec,
        id: publishedFrom,
        // QEMU opens the disks: copies, so the cached overlays stay as fetched.
        disks: spec.disks.map((disk) => ({ ...disk, overlay: join(partial, `${disk.id}.qcow2`) })),
        display: null,
        serial: { logFile: join(partial, "serial.log") },
        parallel: { logFile: join(partial, "parallel.log") },
      };
      for (const disk of sharer.disks) {
        const stream = metadata.disks[disk.id];
        if (stream === undefined) throw new Error(`the golden point has no overlay for disk ${disk.id}`);
        await copyFile(join(folder, stream), disk.overlay);
      }
      const manifest = await this.engine.shareMemory(sharer, { file: join(folder, "memory") }, metadata.engine, {
        memoryFile: join(partial, "memory.ram"),
        devices: guestStateFileSink(join(partial, "devices")),
      });
      await Promise.all(sharer.disks.map((disk) => rm(disk.overlay)));
      await writeFile(join(partial, "devices.json"), JSON.stringify(manifest));
      await rm(done, { recursive: true, force: true });
      await rename(partial, done);
      return { memoryFile: join(done, "memory.ram"), devices: { file: join(done, "devices") }, manifest };
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      throw error;
    }
  }

  async #fetch(ref: GuestStateRef, folder: string): Promise<GuestStateSourceReader> {
    await this.#emptied;
    const reader = await this.store.open(ref);
    const partial = `${folder}.partial`;
    await rm(partial, { recursive: true, force: true });
    await mkdir(partial, { recursive: true });
    try {
      // Settled, not raced: the folder is removed on failure only after every copy stopped.
      const copies = await Promise.allSettled(reader.streams.map((stream) => pipeline(reader.stream(stream.name), createWriteStream(join(partial, stream.name)))));
      const failed = copies.find((copy) => copy.status === "rejected");
      if (failed) throw failed.reason;
      await writeFile(join(partial, "reader.json"), JSON.stringify({ metadata: reader.metadata, streams: reader.streams }));
      await rm(folder, { recursive: true, force: true });
      await rename(partial, folder);
    } catch (error) {
      await rm(partial, { recursive: true, force: true });
      throw error;
    }
    const saved = JSON.parse(await readFile(join(folder, "reader.json"), "utf8")) as Pick<GuestStateReader, "metadata" | "streams">;
    return { ...saved, stream: (name: string): Readable => createReadStream(join(folder, name)) };
  }

  // Removing a folder a restore still reads is safe: open files outlive their names, and so
  // does a memory file running clones map.
  async #evict(): Promise<void> {
    await this.#emptied;
    while (this.#fetches.size > this.keep) {
      const [oldest] = this.#fetches.keys();
      if (oldest === undefined) return;
      this.#fetches.delete(oldest);
      this.#shares.delete(oldest);
      await rm(join(this.dir, oldest), { recursive: true, force: true });
    }
  }
}

const caches = new WeakMap<WorkerContext, GoldenPointCache>();

/** The worker's golden point cache, in its state folder. */
export function goldenPoints(ctx: WorkerContext): GoldenPointCache {
  let cache = caches.get(ctx);
  if (!cache) {
    cache = new GoldenPointCache(join(ctx.options.stateDir, "golden-points"), ctx.options.guestStates.store, ctx.options.engine);
    caches.set(ctx, cache);
  }
  return cache;
}
