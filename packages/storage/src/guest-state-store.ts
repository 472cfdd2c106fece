// Guest states in object storage: a suspended vm's memory stream and disk overlays, stored
// so that any worker of the cluster can resume the vm.
//
// 1. Layout. guest-states/<vmId>/<stateId>/<stream>/<index> holds the parts of each stream,
//    guest-states/<vmId>/<stateId>/manifest.json the signed manifest, written LAST. A guest
//    state without a manifest does not exist: it is an interrupted upload, and
//    collectOrphans removes it once it is old enough.
// 2. Writing. A stream is cut into parts of partSizeBytes as it flows (one part filling, one
//    uploading), each with its sha256; disk streams go through `zstd -1 -T2` first.
// 3. Reading. The manifest's HMAC (cluster secret) is checked before anything else is
//    trusted; each part is fetched whole and its sha256 checked BEFORE any of its bytes are
//    passed on, because the consumer is QEMU's loader.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { Readable } from "node:stream";
import { z } from "zod";
import { isStorageError, StorageError } from "./errors.ts";
import type { ObjectStore } from "./object-store.ts";
import { compressArgs, decompressArgs, zstd } from "./zstd.ts";

// ── 1. Layout and manifest ──────────────────────────────────────────────────────────────

const root = "guest-states";
const manifestName = "manifest.json";
const formatVersion = "ferry-guest-state-bundle/1";
const signatureLabel = "ferry.guest-state-manifest.v1.";
const minSecretLength = 32;
const maxManifestBytes = 16 * 1024 * 1024;
const mebibyte = 1024 * 1024;
const idPattern = /^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$/;
const streamNamePattern = /^[a-z0-9][a-z0-9-]{0,62}$/;
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/);
const prefetchParts = 3;
const uploadParts = 3;

const partSchema = z.object({
  index: z.number().int().nonnegative(),
  bytes: z.number().int().nonnegative(),
  sha256: sha256Hex,
});

const streamSchema = z.object({
  name: z.string().regex(streamNamePattern),
  /** Stored zstd-compressed by this store; `stream()` gives back the original bytes. */
  compressed: z.boolean(),
  /** Length and sha256 of the stream as given to addStream (and as `stream()` returns it). */
  bytes: z.number().int().nonnegative(),
  sha256: sha256Hex,
  /** What the parts hold in storage. */
  storedBytes: z.number().int().nonnegative(),
  parts: z.array(partSchema),
});

const manifestSchema = z.object({
  format: z.literal(formatVersion),
  vmId: z.string().regex(idPattern),
  stateId: z.string().regex(idPattern),
  clusterId: z.string().min(1),
  createdAt: z.iso.datetime(),
  metadata: z.json(),
  streams: z.array(streamSchema).min(1),
  signature: sha256Hex,
});

type Manifest = z.infer<typeof manifestSchema>;
type StreamEntry = z.infer<typeof streamSchema>;

/** One stream of a guest state, as the manifest records it. */
export type GuestStateStream = Readonly<Omit<StreamEntry, "parts">> & { readonly parts: number };

/** A complete guest state: what `list`, `latest` and `commit` report. */
export interface GuestStateSummary {
  vmId: string;
  stateId: string;
  createdAt: Date;
  /** Bytes held in storage by all its streams. */
  storedBytes: number;
  streams: GuestStateStream[];
  metadata: unknown;
}

/** Progress of one addStream: input bytes consumed so far, of `totalBytes` if known. */
export interface GuestStateProgress {
  doneBytes: number;
  totalBytes?: number;
}

/** How addStream stores a stream. */
export interface AddStreamOptions {
  /** true for disk overlays (zstd here); false for memory streams the engine already compressed. */
  compress: boolean;
  /** The stream's length, when known, passed back in progress reports. */
  totalBytes?: number;
  /** Called after each part is stored. */
  onProgress?: (progress: GuestStateProgress) => void;
  /**
   * The stream's length and sha256 as its producer computed them (the engine does, for its
   * own manifest), for a stream stored as given: the store then does not hash it a second
   * time. Each part is still hashed, and a length that differs from what flowed is refused.
   */
  digest?: Promise<{ bytes: number; sha256: string }>;
}

/** Where a guest state lives. */
export interface GuestStateRef {
  vmId: string;
  stateId: string;
}

function statePrefix({ vmId, stateId }: GuestStateRef): string {
  return `${root}/${vmId}/${stateId}/`;
}

function label({ vmId, stateId }: GuestStateRef): string {
  return `${vmId}/${stateId}`;
}

function checkRef(ref: GuestStateRef): void {
  for (const [name, value] of [
    ["vmId", ref.vmId],
    ["stateId", ref.stateId],
  ] as const) {
    if (typeof value !== "string" || !idPattern.test(value)) {
      throw new StorageError(
        "invalid_key",
        `${name} ${JSON.stringify(value)} is not a valid guest state name part: use 1-128 letters, digits, "-" or "_", starting with a letter or digit (a UUID fits).`,
      );
    }
  }
}

function checkVmId(vmId: string): void {
  checkRef({ vmId, stateId: "x" });
}

// Sorted keys at every level: the same manifest always signs to the same bytes.
function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(",")}]`;
  if (value !== null && typeof value === "object") {
    const record = value as Record<string, unknown>;
    const fields = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${fields.join(",")}}`;
  }
  return JSON.stringify(value);
}

function summarize(manifest: Manifest): GuestStateSummary {
  return {
    vmId: manifest.vmId,
    stateId: manifest.stateId,
    createdAt: new Date(manifest.createdAt),
    storedBytes: manifest.streams.reduce((sum, stream) => sum + stream.storedBytes, 0),
    streams: manifest.streams.map(({ parts, ...stream }) => ({ ...stream, parts: parts.length })),
    metadata: manifest.metadata,
  };
}

// A promise we may never await (a prefetch, an upload the caller abandoned) must not crash
// the process with an unhandled rejection.
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** Guest states of one cluster in one object store. Open one per worker. */
export class GuestStateStore {
  readonly store: ObjectStore;
  readonly clusterId: string;
  readonly partSizeBytes: number;
  private readonly secret: string;
  private readonly zstdBinary: string;

  constructor(options: {
    store: ObjectStore;
    /** The cluster's HMAC secret (FERRY_CLUSTER_SECRET), at least 32 characters. */
    secret: string;
    clusterId: string;
    partSizeBytes?: number;
    zstdBinary?: string;
  }) {
    if (options.secret.length < minSecretLength) {
      throw new StorageError(
        "invalid_config",
        `The cluster secret is ${options.secret.length} characters long; guest state manifests need at least ${minSecretLength}. Set FERRY_CLUSTER_SECRET to a longer random value.`,
      );
    }
    if (options.clusterId.length === 0) {
      throw new StorageError("invalid_config", "The cluster id is empty. Pass the cluster's id (e.g. FERRY_CLUSTER_ID).");
    }
    const partSizeBytes = options.partSizeBytes ?? 16 * mebibyte;
    if (!Number.isInteger(partSizeBytes) || partSizeBytes < 1) {
      throw new StorageError("invalid_config", `partSizeBytes is ${partSizeBytes}; pass a whole number of bytes, e.g. 16 MiB.`);
    }
    this.store = options.store;
    this.secret = options.secret;
    this.clusterId = options.clusterId;
    this.partSizeBytes = partSizeBytes;
    this.zstdBinary = options.zstdBinary ?? "zstd";
  }

  /** Starts writing a new guest state; nothing exists until `commit`. */
  beginWrite(ref: GuestStateRef): GuestStateWriter {
    checkRef(ref);
    return new GuestStateWriter(this, ref, this.zstdBinary);
  }

  /** Opens a complete guest state after checking its manifest's signature and cluster. */
  async open(ref: GuestStateRef): Promise<GuestStateReader> {
    checkRef(ref);
    const manifest = await this.readManifest(ref);
    return new GuestStateReader(this.store, manifest, this.zstdBinary);
  }

  /** The vm's complete, verifiable guest states, newest first. */
  async list(vmId: string): Promise<GuestStateSummary[]> {
    checkVmId(vmId);
    const prefix = `${root}/${vmId}/`;
    const withManifest: string[] = [];
    for await (const object of this.store.list(prefix)) {
      const [stateId, ...rest] = object.key.slice(prefix.length).split("/");
      if (stateId !== undefined && rest.length === 1 && rest[0] === manifestName) withManifest.push(stateId);
    }
    const summaries: GuestStateSummary[] = [];
    for (const stateId of withManifest) {
      try {
        summaries.push(summarize(await this.readManifest({ vmId, stateId })));
      } catch (error) {
        // A manifest that fails verification cannot be resumed; open() reports why.
        if (!isStorageError(error) || !["bad_signature", "foreign", "corrupt", "not_found", "incomplete", "invalid_key"].includes(error.code)) {
          throw error;
        }
      }
    }
    return summaries.sort(
      (a, b) => b.createdAt.getTime() - a.createdAt.getTime() || (a.stateId < b.stateId ? 1 : a.stateId > b.stateId ? -1 : 0),
    );
  }

  /** The vm's newest complete guest state, or null. */
  async latest(vmId: string): Promise<GuestStateSummary | null> {
    return (await this.list(vmId))[0] ?? null;
  }

  /** Deletes one guest state: the manifest first, so it never looks complete while parts go. */
  async delete(ref: GuestStateRef): Promise<void> {
    checkRef(ref);
    await this.store.delete(`${statePrefix(ref)}${manifestName}`);
    await this.store.deletePrefix(statePrefix(ref));
  }

  /** Deletes all but the newest `keep` complete guest states; returns the deleted state ids. */
  async prune(vmId: string, keep: number): Promise<string[]> {
    if (!Number.isInteger(keep) || keep < 0) {
      throw new RangeError(`keep is ${keep}; pass how many guest states to keep, a whole number ≥ 0.`);
    }
    const doomed = (await this.list(vmId)).slice(keep);
    for (const state of doomed) await this.delete(state);
    return doomed.map((state) => state.stateId);
  }

  /** Deletes every guest state of the vm, complete or not (when the vm is deleted). */
  async deleteAll(vmId: string): Promise<number> {
    checkVmId(vmId);
    const prefix = `${root}/${vmId}/`;
    const manifests: string[] = [];
    for await (const object of this.store.list(prefix)) {
      if (object.key.endsWith(`/${manifestName}`)) manifests.push(object.key);
    }
    for (const key of manifests) await this.store.delete(key);
    return manifests.length + (await this.store.deletePrefix(prefix));
  }

  /**
   * Deletes the parts of guest states that never got a manifest (a worker died mid-upload)
   * and whose newest part is older than `olderThanMs`. Pick an age longer than any upload
   * can pause, e.g. an hour: a younger orphan may still be being written.
   */
  async collectOrphans(options: { olderThanMs: number; now?: Date }): Promise<Array<GuestStateRef & { objects: number }>> {
    const cutoff = (options.now ?? new Date()).getTime() - options.olderThanMs;
    const states = new Map<string, { ref: GuestStateRef; complete: boolean; newest: number }>();
    for await (const object of this.store.list(`${root}/`)) {
      const [, vmId, stateId, ...rest] = object.key.split("/");
      if (vmId === undefined || stateId === undefined || rest.length === 0) continue;
      const id = `${vmId}/${stateId}`;
      const state = states.get(id) ?? { ref: { vmId, stateId }, complete: false, newest: 0 };
      if (rest.length === 1 && rest[0] === manifestName) state.complete = true;
      state.newest = Math.max(state.newest, object.lastModified.getTime());
      states.set(id, state);
    }
    const collected: Array<GuestStateRef & { objects: number }> = [];
    for (const { ref, complete, newest } of states.values()) {
      if (complete || newest >= cutoff) continue;
      // A writer may have committed since the listing: never delete under a manifest.
      if (!idPattern.test(ref.vmId) || !idPattern.test(ref.stateId)) continue;
      if ((await this.store.head(`${statePrefix(ref)}${manifestName}`)) !== null) continue;
      collected.push({ ...ref, objects: await this.store.deletePrefix(statePrefix(ref)) });
    }
    return collected;
  }

  /** @internal The HMAC over a manifest without its signature. */
  sign(unsigned: Omit<Manifest, "signature">): string {
    return createHmac("sha256", this.secret).update(signatureLabel).update(canonicalJson(unsigned)).digest("hex");
  }

  private async readManifest(ref: GuestStateRef): Promise<Manifest> {
    const key = `${statePrefix(ref)}${manifestName}`;
    let body: Readable;
    try {
      body = await this.store.get(key);
    } catch (error) {
      if (!isStorageError(error, "not_found")) throw error;
      for await (const _object of this.store.list(statePrefix(ref))) {
        throw new StorageError(
          "incomplete",
          `Guest state ${label(ref)} has parts but no manifest in ${this.store.location}: its upload never finished. Resume from another guest state (list the vm's states), or boot the vm afresh; collectOrphans will remove the parts.`,
        );
      }
      throw new StorageError(
        "not_found",
        `Guest state ${label(ref)} does not exist in ${this.store.location}. List the vm's guest states to find one that does.`,
      );
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of body) {
      size += (chunk as Buffer).length;
      if (size > maxManifestBytes) {
        body.destroy();
        throw new StorageError("corrupt", `The manifest of guest state ${label(ref)} is over ${maxManifestBytes} bytes: it is not one we wrote. Delete the guest state.`);
      }
      chunks.push(chunk as Buffer);
    }
    return this.verify(ref, Buffer.concat(chunks).toString("utf8"));
  }

  private verify(ref: GuestStateRef, text: string): Manifest {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    const envelope = z.looseObject({ clusterId: z.string(), signature: z.string() }).safeParse(json);
    if (!envelope.success) {
      throw new StorageError(
        "corrupt",
        `The manifest of guest state ${label(ref)} is not a signed guest state manifest (not JSON, or no clusterId and signature). Delete the guest state and resume from another.`,
      );
    }
    if (envelope.data.clusterId !== this.clusterId) {
      throw new StorageError(
        "foreign",
        `Guest state ${label(ref)} was written by cluster "${envelope.data.clusterId}", not this one ("${this.clusterId}"). It cannot be verified here: resume it in its own cluster, or point this worker at its own storage.`,
      );
    }
    const { signature, ...unsigned } = envelope.data;
    const given = Buffer.from(signature, "hex");
    const expected = Buffer.from(this.sign(unsigned as Omit<Manifest, "signature">), "hex");
    if (given.length !== expected.length || !timingSafeEqual(new Uint8Array(given), new Uint8Array(expected))) {
      throw new StorageError(
        "bad_signature",
        `The manifest of guest state ${label(ref)} does not match its signature: it was altered, or signed with another cluster secret. Do not resume from it; delete it and resume from another guest state, or check FERRY_CLUSTER_SECRET.`,
      );
    }
    const parsed = manifestSchema.safeParse(json);
    if (!parsed.success) {
      throw new StorageError(
        "corrupt",
        `The manifest of guest state ${label(ref)} is signed but not a ${formatVersion} manifest (${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message}). A newer worker may have written it: upgrade this worker.`,
      );
    }
    if (parsed.data.vmId !== ref.vmId || parsed.data.stateId !== ref.stateId) {
      throw new StorageError(
        "bad_signature",
        `The manifest stored as guest state ${label(ref)} was signed for ${parsed.data.vmId}/${parsed.data.stateId}: it was copied from another vm or state. Do not resume from it; delete it.`,
      );
    }
    return parsed.data;
  }
}

// ── 2. Writing ──────────────────────────────────────────────────────────────────────────

/** One guest state being written: addStream each stream, then commit (or abort). */
export class GuestStateWriter {
  readonly vmId: string;
  readonly stateId: string;
  private readonly streams = new Map<string, StreamEntry>();
  private readonly writing = new Set<string>();
  private readonly tasks = new Set<Promise<unknown>>();
  private status: "open" | "committed" | "aborted" = "open";
  private freshness: Promise<void> | undefined;
  private touchedStorage = false;

  /** @internal Use GuestStateStore.beginWrite. */
  constructor(
    private readonly owner: GuestStateStore,
    ref: GuestStateRef,
    private readonly zstdBinary: string,
  ) {
    this.vmId = ref.vmId;
    this.stateId = ref.stateId;
  }

  /**
   * Stores one stream ("memory", "disk-data") as parts, reading it as it flows. Rejects
   * with the source's own error if the source fails; the parts stay until abort().
   */
  async addStream(name: string, source: Readable | AsyncIterable<Buffer>, options: AddStreamOptions): Promise<GuestStateStream> {
    // Awaited only once the stream has flowed, if ever: a producer that fails is the caller's to report.
    if (options.digest !== undefined) handled(options.digest);
    this.checkOpen(`add stream ${name} to`);
    if (!streamNamePattern.test(name)) {
      throw new StorageError(
        "invalid_key",
        `Stream name ${JSON.stringify(name)} is invalid: use 1-63 lowercase letters, digits and "-", like "memory" or "disk-data".`,
      );
    }
    if (this.streams.has(name) || this.writing.has(name)) {
      throw new StorageError("exists", `Guest state ${label(this)} already has a stream ${name}. Give each stream its own name.`);
    }
    this.writing.add(name);
    const task = this.writeStream(name, source, options);
    this.tasks.add(task);
    try {
      const entry = await task;
      this.streams.set(name, entry);
      const { parts, ...rest } = entry;
      return { ...rest, parts: parts.length };
    } finally {
      this.tasks.delete(task);
      this.writing.delete(name);
    }
  }

  /** Writes the signed manifest, last: from now on the guest state exists. */
  async commit(metadata: unknown): Promise<GuestStateSummary> {
    this.checkOpen("commit");
    if (this.writing.size > 0) {
      throw new StorageError(
        "closed",
        `Cannot commit guest state ${label(this)}: stream(s) ${[...this.writing].join(", ")} are still being written. Await every addStream first.`,
      );
    }
    if (this.streams.size === 0) {
      throw new StorageError("closed", `Cannot commit guest state ${label(this)}: it has no streams. Add the memory stream (and disks) first.`);
    }
    await this.ensureFresh();
    const unsigned: Omit<Manifest, "signature"> = {
      format: formatVersion,
      vmId: this.vmId,
      stateId: this.stateId,
      clusterId: this.owner.clusterId,
      createdAt: new Date().toISOString(),
      // Through JSON once, so what is signed is exactly what a reader parses back.
      metadata: JSON.parse(JSON.stringify(metadata ?? null)) as Manifest["metadata"],
      streams: [...this.streams.values()],
    };
    const manifest: Manifest = { ...unsigned, signature: this.owner.sign(unsigned) };
    const body = Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`);
    // Closed while the manifest is written, so no stream can join a half-committed state;
    // if the write fails the writer reopens, to retry commit or abort.
    this.status = "committed";
    try {
      await this.owner.store.put(`${statePrefix(this)}${manifestName}`, Readable.from([body]), { contentLength: body.length });
    } catch (error) {
      this.status = "open";
      throw error;
    }
    return summarize(manifest);
  }

  /** Gives up: waits for streams in flight to stop, then deletes every part written. */
  async abort(): Promise<void> {
    if (this.status === "committed") {
      throw new StorageError("closed", `Guest state ${label(this)} is already committed; delete it with GuestStateStore.delete instead.`);
    }
    this.status = "aborted";
    await Promise.allSettled([...this.tasks]);
    if (this.touchedStorage) await this.owner.store.deletePrefix(statePrefix(this));
  }

  private checkOpen(action: string): void {
    if (this.status !== "open") {
      throw new StorageError("closed", `Cannot ${action} guest state ${label(this)}: it was already ${this.status}. Begin a new write.`);
    }
  }

  // Writing parts under a committed state would damage it; refuse once, before the first part.
  private ensureFresh(): Promise<void> {
    this.freshness ??= (async () => {
      if ((await this.owner.store.head(`${statePrefix(this)}${manifestName}`)) !== null) {
        throw new StorageError("exists", `Guest state ${label(this)} already exists. Use a new stateId for every suspend.`);
      }
      this.touchedStorage = true;
    })();
    return this.freshness;
  }

  private async writeStream(name: string, source: Readable | AsyncIterable<Buffer>, options: AddStreamOptions): Promise<StreamEntry> {
    await this.ensureFresh();
    const partSize = this.owner.partSizeBytes;
    if (options.digest !== undefined && options.compress) {
      throw new StorageError("invalid_config", `Stream ${name}: a producer's digest describes the bytes as given; pass it only with compress: false.`);
    }
    const logicalHash = options.digest === undefined ? createHash("sha256") : undefined;
    let logicalBytes = 0;
    async function* counted(): AsyncGenerator<Buffer> {
      for await (const chunk of source) {
        const bytes = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
        logicalHash?.update(bytes);
        logicalBytes += bytes.length;
        yield bytes;
      }
    }
    const stored = options.compress
      ? zstd(this.zstdBinary, compressArgs, counted(), `compressing stream ${name} of guest state ${label(this)}`)
      : counted();

    const parts: Array<z.infer<typeof partSchema>> = [];
    let filling: Buffer[] = [];
    let filled = 0;
    let partHash = createHash("sha256");
    const uploading = new Set<Promise<void>>();
    let uploadError: { error: unknown } | undefined;

    // A few parts upload side by side while the next one fills (object stores serve several
    // requests at once): memory stays under uploadParts + 1 parts.
    const flush = async (): Promise<void> => {
      while (uploading.size >= uploadParts) await Promise.race(uploading);
      if (uploadError) throw uploadError.error;
      if (this.status === "aborted") {
        throw new StorageError("closed", `Guest state ${label(this)} was aborted while stream ${name} was being written.`);
      }
      const part = { index: parts.length, bytes: filled, sha256: partHash.digest("hex") };
      const body = Readable.from(filling, { objectMode: false });
      parts.push(part);
      filling = [];
      filled = 0;
      partHash = createHash("sha256");
      const upload: Promise<void> = this.owner.store
        .put(`${statePrefix(this)}${name}/${part.index}`, body, { contentLength: part.bytes, sha256: part.sha256 })
        .then(
          () => {
            const progress: GuestStateProgress = { doneBytes: logicalBytes };
            if (options.totalBytes !== undefined) progress.totalBytes = options.totalBytes;
            options.onProgress?.(progress);
          },
          (error: unknown) => {
            uploadError ??= { error };
          },
        )
        .finally(() => uploading.delete(upload));
      uploading.add(upload);
    };

    try {
      for await (const chunk of stored) {
        let offset = 0;
        while (offset < chunk.length) {
          const piece = chunk.subarray(offset, offset + partSize - filled);
          filling.push(piece);
          partHash.update(piece);
          filled += piece.length;
          offset += piece.length;
          if (filled === partSize) await flush();
        }
      }
      if (filled > 0) await flush();
      await Promise.all(uploading);
      if (uploadError) throw uploadError.error;
    } finally {
      // Never return while a part is still landing: abort() would miss it.
      await Promise.allSettled(uploading);
    }
    const digest = logicalHash === undefined ? await options.digest! : { bytes: logicalBytes, sha256: logicalHash.digest("hex") };
    if (digest.bytes !== logicalBytes) {
      throw new StorageError(
        "incomplete",
        `Stream ${name} of guest state ${label(this)}: its producer counted ${digest.bytes} bytes but ${logicalBytes} were stored. Abort this guest state and suspend again.`,
      );
    }
    return {
      name,
      compressed: options.compress,
      bytes: logicalBytes,
      sha256: digest.sha256,
      storedBytes: parts.reduce((sum, part) => sum + part.bytes, 0),
      parts,
    };
  }
}

// ── 3. Reading ──────────────────────────────────────────────────────────────────────────

/** A verified guest state: its metadata and its streams. Get one from GuestStateStore.open. */
export class GuestStateReader {
  readonly vmId: string;
  readonly stateId: string;
  readonly createdAt: Date;
  readonly metadata: unknown;
  readonly streams: GuestStateStream[];

  /** @internal Use GuestStateStore.open. */
  constructor(
    private readonly store: ObjectStore,
    private readonly manifest: Manifest,
    private readonly zstdBinary: string,
  ) {
    const summary = summarize(manifest);
    this.vmId = manifest.vmId;
    this.stateId = manifest.stateId;
    this.createdAt = summary.createdAt;
    this.metadata = manifest.metadata;
    this.streams = summary.streams;
  }

  /**
   * The stream's original bytes. Each part is checked against its sha256 before any of its
   * bytes are emitted; a damaged part errors the stream with `corrupt`, a missing one with
   * `incomplete`. The whole stream's sha256 is checked at its end too, unless
   * `wholeChecksum: false`: for a consumer that checks the whole stream itself (the engine
   * checks a memory stream against its own manifest), which spares a second hash of it.
   */
  stream(name: string, options: { wholeChecksum?: boolean } = {}): Readable {
    const entry = this.manifest.streams.find((stream) => stream.name === name);
    if (entry === undefined) {
      throw new StorageError(
        "not_found",
        `Guest state ${label(this)} has no stream ${JSON.stringify(name)}; it has ${this.manifest.streams.map((s) => s.name).join(", ")}.`,
      );
    }
    const verified = this.verifiedParts(entry);
    const original = entry.compressed
      ? zstd(this.zstdBinary, decompressArgs, verified, `decompressing stream ${name} of guest state ${label(this)}`)
      : verified;
    return Readable.from(options.wholeChecksum === false ? original : this.checkedWhole(entry, original), { objectMode: false });
  }

  private verifiedParts(entry: StreamEntry): AsyncGenerator<Buffer> {
    const { parts } = entry;
    // A few parts are fetched ahead while the first is consumed: object stores answer each
    // request slowly but serve several at once. Memory stays under prefetchParts + 1 parts.
    const fetching: Array<Promise<Buffer[]>> = [];
    let requested = 0;
    const fill = () => {
      while (requested < parts.length && fetching.length < prefetchParts) fetching.push(handled(this.fetchPart(entry, parts[requested++]!)));
    };
    // The first parts are asked for now, not at the first read: a consumer that takes a moment
    // to start (a QEMU launching) finds them fetched and verified, and then reads at its own
    // pace. Asked for only once it read (the first part alone now), they slowed QEMU's start
    // less but left it waiting for them mid-load: a resume through the API took longer (12
    // paired resumes of 256 MiB from S3 at load ~8: median 566 ms against 865 ms, 8 of 12 faster).
    fill();
    return (async function* () {
      while (fetching.length > 0) {
        const chunks = await fetching.shift()!;
        fill();
        yield* chunks;
      }
    })();
  }

  private async fetchPart(entry: StreamEntry, part: z.infer<typeof partSchema>): Promise<Buffer[]> {
    const where = `part ${entry.name}/${part.index}`;
    const key = `${statePrefix(this)}${entry.name}/${part.index}`;
    let body: Readable;
    try {
      body = await this.store.get(key);
    } catch (error) {
      if (!isStorageError(error, "not_found")) throw error;
      throw new StorageError(
        "incomplete",
        `Guest state ${label(this)} is missing ${where} (${key} in ${this.store.location}): it was partly deleted. Resume from another guest state, or boot the vm afresh.`,
        { details: { part: `${entry.name}/${part.index}`, key } },
      );
    }
    const hash = createHash("sha256");
    const chunks: Buffer[] = [];
    let bytes = 0;
    for await (const chunk of body) {
      bytes += (chunk as Buffer).length;
      if (bytes > part.bytes) {
        body.destroy();
        break;
      }
      hash.update(chunk as Buffer);
      chunks.push(chunk as Buffer);
    }
    const digest = bytes === part.bytes ? hash.digest("hex") : undefined;
    if (digest !== part.sha256) {
      throw new StorageError(
        "corrupt",
        `Guest state ${label(this)} ${where} failed its checksum (${
          digest === undefined ? `${bytes > part.bytes ? "more than " : ""}${bytes} bytes stored, ${part.bytes} expected` : `sha256 ${digest}, expected ${part.sha256}`
        }); none of its bytes were passed on. The stored copy is damaged: resume from another guest state, or boot the vm afresh.`,
        { details: { part: `${entry.name}/${part.index}`, key } },
      );
    }
    return chunks;
  }

  private async *checkedWhole(entry: StreamEntry, source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
    const hash = createHash("sha256");
    let bytes = 0;
    for await (const chunk of source) {
      hash.update(chunk);
      bytes += chunk.length;
      yield chunk;
    }
    const digest = hash.digest("hex");
    if (bytes !== entry.bytes || digest !== entry.sha256) {
      throw new StorageError(
        "corrupt",
        `Guest state ${label(this)} stream ${entry.name} failed its whole-stream checksum (${bytes} bytes, sha256 ${digest}; expected ${entry.bytes} bytes, ${entry.sha256}) although every part matched. Resume from another guest state, and report this as a bug.`,
      );
    }
  }
}
