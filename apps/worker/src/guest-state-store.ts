// Where suspended vms' guest states live: object storage every worker of the cluster shares
// (@ferry/storage), recorded in the GuestState table so the controller and the portal see them
// without reading storage. A guest state holds the engine's memory stream ("memory") and one
// stream per disk overlay ("disk-<id>"); its manifest carries the engine's guest-state manifest.
import { rm } from "node:fs/promises";
import { join } from "node:path";
import type { Writable } from "node:stream";

import type { Db } from "@ferry/db";
import { type GuestStateManifest, type GuestStateSink, guestStateFileSink, guestStateManifestSchema, manifestMemoryLayout } from "@ferry/engine";
import { type GuestStateSummary, GuestStateStore, type StoreConfig, openObjectStore } from "@ferry/storage";
import type { Logger } from "pino";
import { z } from "zod";

/** How a worker keeps guest states: the store, and how many states each vm keeps. */
export interface GuestStates {
  store: GuestStateStore;
  keep: number;
}

/** Open the cluster's guest state store (validated config, cluster secret and id). */
export async function openGuestStates(options: { storage: StoreConfig; secret: string; clusterId: string; keep: number }): Promise<GuestStates> {
  const store = new GuestStateStore({
    store: await openObjectStore(options.storage),
    secret: options.secret,
    clusterId: options.clusterId,
    // The S3 driver's multipart part size: each part of a guest state is then one PUT, and
    // the next part fills while the previous one uploads.
    partSizeBytes: 8 * 1024 * 1024,
  });
  return { store, keep: options.keep };
}

/** The metadata a worker signs into every guest state it commits. */
export const guestStateMetadata = z.object({
  engine: guestStateManifestSchema,
  /** disk id → stream name, for the disks whose overlays the state carries */
  disks: z.record(z.string(), z.string()),
});
export type GuestStateMetadata = z.infer<typeof guestStateMetadata>;

/** The stream a disk overlay is stored under. */
export function diskStreamName(diskId: string): string {
  return `disk-${diskId}`;
}

/** Files a suspend or resume keeps beside the vm while it runs; removed when it is done. */
export function stagingDir(vmDir: string): string {
  return join(vmDir, "guest-state");
}

/** Remove what a suspend or resume left beside the vm (a start boots from the disk alone). */
export async function discardStaging(vmDir: string): Promise<void> {
  await rm(stagingDir(vmDir), { recursive: true, force: true });
}

/** Record a committed guest state: its GuestState row and the vm's guestStateId, in one transaction. */
export async function recordGuestState(db: Db, summary: GuestStateSummary, engine: GuestStateManifest, workerId: string): Promise<void> {
  await db.$transaction([
    db.guestState.create({
      data: {
        id: summary.stateId,
        vmId: summary.vmId,
        workerId,
        storedBytes: BigInt(summary.storedBytes),
        cpuModel: engine.cpuModel,
        accelerator: engine.accelerator,
        memoryMiB: engine.memoryMiB,
        vcpus: engine.vcpus,
        profile: engine.profile,
        qemuVersion: engine.qemuVersion,
        memoryLayout: manifestMemoryLayout(engine),
        createdAt: summary.createdAt,
      },
    }),
    db.vm.update({ where: { id: summary.vmId }, data: { guestStateId: summary.stateId } }),
  ]);
}

/** Keep only the vm's newest `keep` guest states (storage and rows); a failure only keeps more. */
export async function pruneGuestStates(db: Db, states: GuestStates, vmId: string, log: Logger): Promise<void> {
  try {
    const pruned = await states.store.prune(vmId, states.keep);
    if (pruned.length > 0) await db.guestState.deleteMany({ where: { id: { in: pruned } } });
  } catch (error) {
    log.warn({ err: error, vmId }, "pruning old guest states failed; the next suspend retries");
  }
}

/**
 * One sweep of guest states: delete those of deleted vms (and their rows), and parts of
 * uploads that never committed (a worker died mid-suspend) once older than `orphanAgeMs`.
 */
export async function sweepGuestStates(db: Db, states: GuestStates, options: { orphanAgeMs: number; log: Logger }): Promise<void> {
  const ofDeleted = await db.guestState.findMany({ where: { vm: { state: "deleted" } }, select: { vmId: true }, distinct: ["vmId"] });
  for (const { vmId } of ofDeleted) {
    await states.store.deleteAll(vmId);
    await db.guestState.deleteMany({ where: { vmId } });
    options.log.info({ vmId }, "guest states of a deleted vm removed");
  }
  const orphans = await states.store.collectOrphans({ olderThanMs: options.orphanAgeMs });
  for (const orphan of orphans) options.log.info(orphan, "parts of an interrupted guest state upload removed");
}

/** Run sweepGuestStates every `intervalMs` (first one at once); returns a stop function. */
export function startGuestStateSweeper(db: Db, states: GuestStates, options: { intervalMs: number; orphanAgeMs: number; log: Logger }): () => Promise<void> {
  let running: Promise<void> = Promise.resolve();
  const sweep = () => {
    running = running
      .then(() => sweepGuestStates(db, states, options))
      .catch((error: unknown) => options.log.warn({ err: error }, "guest state sweep failed; the next one retries"));
  };
  sweep();
  const timer = setInterval(sweep, options.intervalMs);
  timer.unref();
  return async () => {
    clearInterval(timer);
    await running;
  };
}

/**
 * Reports `state` with progress (bytes done of total) at most every `intervalMs`, the first
 * time `intervalMs` after it was made. Every report is a queue message and a database write
 * in the controller, taking CPU from the QEMU being saved or loaded: a burst of them would
 * delay the settled state the person is waiting for, and one at the first bytes, a few ms
 * after the job said `suspending` or `resuming`, tells them nothing.
 */
export function progressReporter(
  report: (progress: { done: number; total: number }) => void,
  intervalMs = 250,
): (done: number, total: number) => void {
  let last = Date.now();
  return (done, total) => {
    const now = Date.now();
    if (now - last < intervalMs) return;
    last = now;
    report({ done: Math.min(done, total), total });
  };
}

/**
 * The sink a suspend's memory stream goes into: every chunk to `store` and to the local copy
 * `file` in one pass, at the pace of the slower; `onFirstChunk` runs at QEMU's first byte. The
 * store gets a copy of each chunk: it keeps a part's chunks until the part is uploaded, and the
 * engine lends a chunk only until its write resolves. A store that stopped reading (destroyed)
 * fails the write under way, or the next, and so the save.
 */
export function memoryStateSink(store: Writable, file: string, onFirstChunk: () => void): GuestStateSink {
  const local = guestStateFileSink(file);
  let first = true;
  const storeFailed = () =>
    new Error(`the guest state store stopped reading the memory stream${store.errored ? `: ${store.errored.message}` : ""}`);
  return {
    async write(chunk) {
      if (first) {
        first = false;
        onFirstChunk();
      }
      if (store.destroyed) throw storeFailed();
      const full = !store.write(Buffer.from(chunk));
      await Promise.all([local.write(chunk), full ? drainedOrClosed(store) : undefined]);
      if (store.destroyed) throw storeFailed();
    },
    async end() {
      store.end();
      await local.end();
    },
    abort(error) {
      if (!store.destroyed) store.destroy(error);
      local.abort(error);
    },
  };
}

function drainedOrClosed(target: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      target.off("drain", done);
      target.off("close", done);
      resolve();
    };
    target.on("drain", done);
    target.on("close", done);
  });
}
