// vm.suspend: save the guest state into object storage, then free this worker's slot.
//
// 1. The engine pauses the guest and streams its memory (zstd); the stream goes to storage
//    and, in the same pass, to a local copy beside the vm.
// 2. From QEMU's first byte on (the guest is paused, its disks flushed), each disk overlay is
//    stored beside the memory (zstd, in parts).
// 3. The manifest is committed last; the GuestState row and Vm.guestStateId follow. Only then
//    is the vm reported suspended, and QEMU stopped and the vm's folder removed.
//
// A failure before the commit leaves the vm running: the engine resumes the guest itself
// when the memory save fails; after that, the guest is restored from the local copy (same
// disk, never written since the pause). A worker killed mid-upload leaves parts without a
// manifest, which no reader accepts and the sweeper removes.
import { randomUUID } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import { PassThrough } from "node:stream";

import type { GuestStateManifest, Vm } from "@ferry/engine";
import type { GuestStateProgress } from "@ferry/storage";

import { type HostedVm, WorkerContext } from "../context.ts";
import {
  type GuestStateMetadata,
  diskStreamName,
  discardStaging,
  memoryStateSink,
  progressReporter,
  pruneGuestStates,
  recordGuestState,
  stagingDir,
} from "../guest-state-store.ts";

const mebibyte = 1024 * 1024;
const noop = () => undefined;
// A small overlay (a fresh one is ~200 KB of qcow2 tables) is stored as it is: the zstd process
// that unpacks it on resume added 10-75 ms to its fetch here (5-12 ms from S3 on loopback), on
// the resume's critical path, to save a fraction of a megabyte.
const compressOverlaysAbove = mebibyte;

/** Handle vm.suspend: store the guest state, stop QEMU, free the slot, report suspended. */
export async function suspendVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  const vm = hosted.engineVm;
  if (!vm || vm.state !== "running") {
    const row = await ctx.options.db.vm.findUnique({ where: { id: hosted.vmId }, select: { guestStateId: true } });
    if (!WorkerContext.isAlive(vm) && row?.guestStateId) {
      // A redelivered job after the suspend committed: the state is stored, nothing runs here.
      await ctx.report(hosted, "suspended");
    } else {
      await ctx.report(hosted, "failed", {
        reason: `cannot suspend vm ${hosted.vmId}: it is ${vm?.state ?? "not running"} on worker ${ctx.workerId}; start it first`,
      });
    }
    return;
  }
  hosted.suspending = true;
  try {
    await suspend(ctx, hosted, vm);
  } finally {
    hosted.suspending = false;
  }
}

async function suspend(ctx: WorkerContext, hosted: HostedVm, vm: Vm): Promise<void> {
  const { db, guestStates, log } = ctx.options;
  const { spec } = await ctx.spec(hosted);
  await ctx.report(hosted, "suspending");

  // 1.
  const overlays = await Promise.all(spec.disks.map(async (disk) => ({ ...disk, bytes: (await stat(disk.overlay)).size })));
  // The memory stream's size is known only at the end (zero pages are skipped, then zstd):
  // until then the guest's memory is its upper bound.
  const diskBytes = overlays.reduce((sum, disk) => sum + disk.bytes, 0);
  let total = hosted.definition.memoryMiB * mebibyte + diskBytes;
  const report = progressReporter((progress) => void ctx.report(hosted, "suspending", { progress }));
  const done = new Map<string, number>();
  const progress = (stream: string) => (update: GuestStateProgress) => {
    done.set(stream, update.doneBytes);
    report([...done.values()].reduce((sum, bytes) => sum + bytes, 0), total);
  };
  const staging = stagingDir(hosted.dir);
  await mkdir(staging, { recursive: true });
  const localCopy = join(staging, "memory.zst");
  const writer = guestStates.store.beginWrite({ vmId: hosted.vmId, stateId: randomUUID() });
  const toStore = new PassThrough();
  // Its failures reach us through `upload`; once the store has stopped reading, nobody else listens.
  toStore.on("error", () => undefined);
  // QEMU sends its first byte only after `stop` returned: the guest is paused and its disks
  // flushed, so from then on the overlays can be stored beside the memory.
  let paused = false;
  let onPaused!: () => void;
  const pause = new Promise<void>((resolve) => (onPaused = resolve));
  const saving = vm.saveState(
    memoryStateSink(toStore, localCopy, () => {
      paused = true;
      onPaused();
    }),
  );
  // The engine hashes the stream for its manifest; the store takes that digest rather than hashing it again.
  const digest = saving.then((manifest) => ({ bytes: manifest.streamBytes, sha256: manifest.sha256 }));
  const upload = writer.addStream("memory", toStore, { compress: false, onProgress: progress("memory"), digest });
  // A store that fails stops reading: end the save too (its sink's write fails), or it would
  // wait on a full pipe. Maybe before the first write: the engine then resumes the guest.
  upload.catch((error: unknown) => toStore.destroy(error as Error));

  // 2.
  const storingDisks = (async () => {
    await Promise.race([pause, saving.then(noop, noop)]);
    if (!paused) throw new Error(`vm ${hosted.vmId}'s guest was never paused, so its disks were not stored`);
    const disks: GuestStateMetadata["disks"] = {};
    for (const disk of overlays) {
      const name = diskStreamName(disk.id);
      await writer.addStream(name, createReadStream(disk.overlay), { compress: disk.bytes > compressOverlaysAbove, totalBytes: disk.bytes, onProgress: progress(name) });
      disks[disk.id] = name;
    }
    return disks;
  })();
  // The local copy is complete once the save is: its sink ended the file.
  const [saved, memory, disks] = await Promise.allSettled([saving, upload, storingDisks]);
  if (saved.status === "rejected" || memory.status === "rejected" || disks.status === "rejected") {
    await writer.abort().catch((error: unknown) => log.warn({ err: error, vmId: hosted.vmId }, "removing the parts of a failed suspend failed"));
    const cause = [memory, saved, disks].find((outcome): outcome is PromiseRejectedResult => outcome.status === "rejected")!.reason as Error;
    if (saved.status === "fulfilled") {
      await carryOn(ctx, hosted, localCopy, saved.value, `suspend failed: ${cause.message}`);
    } else {
      await discardStaging(hosted.dir);
      // The engine resumed the guest: it keeps running and the suspend can be asked again.
      await ctx.report(hosted, vm.state === "running" ? "running" : "failed", { reason: `suspend failed: ${cause.message}`, refused: true });
    }
    return;
  }
  const engineManifest = saved.value;
  total = memory.value.bytes + diskBytes;

  // 3.
  try {
    const summary = await writer.commit({ engine: engineManifest, disks: disks.value } satisfies GuestStateMetadata);
    await recordGuestState(db, summary, engineManifest, ctx.workerId);
  } catch (error) {
    await writer.abort().catch((abortError: unknown) => log.warn({ err: abortError, vmId: hosted.vmId }, "removing the parts of a failed suspend failed"));
    await carryOn(ctx, hosted, localCopy, engineManifest, `suspend failed: ${(error as Error).message}`);
    return;
  }
  // The guest state is committed and recorded: the vm is suspended now, and the next resume
  // may go to any worker. A resume placed back here waits for this job (one job per vm at a
  // time), so the paused QEMU and the vm's folder can go after the report.
  hosted.engineVm = undefined;
  await ctx.report(hosted, "suspended");
  await vm.stop({ graceMs: 0 });
  await ctx.options.serial.unfollow(hosted.vmId);
  await rm(hosted.dir, { recursive: true, force: true });
  ctx.vms.delete(hosted.vmId);
  await pruneGuestStates(db, guestStates, hosted.vmId, log);
}

/**
 * The memory was saved but storing the state failed: QEMU is paused with its devices handed
 * off, so start a new one from the local copy and let the guest carry on.
 */
async function carryOn(ctx: WorkerContext, hosted: HostedVm, localCopy: string, manifest: GuestStateManifest, reason: string): Promise<void> {
  const vm = hosted.engineVm;
  hosted.engineVm = undefined;
  if (vm) await vm.stop({ graceMs: 0 });
  try {
    const { spec } = await ctx.spec(hosted);
    const restored = await ctx.options.engine.restore(spec, { file: localCopy }, manifest);
    ctx.supervise(hosted, restored);
    await ctx.report(hosted, "running", { reason, refused: true });
  } catch (error) {
    await ctx.report(hosted, "failed", { reason: `${reason}; continuing the guest from its local copy failed too: ${(error as Error).message}` });
  } finally {
    await discardStaging(hosted.dir);
  }
}
