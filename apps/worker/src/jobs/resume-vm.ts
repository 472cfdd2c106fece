// vm.resume: fetch the vm's guest state from object storage (saved on any worker), verify it,
// restore its disk overlays and load its memory into a new QEMU; the guest carries on where
// it stopped.
//
// QEMU's loader is not built for untrusted input, so the whole state is fetched and checked
// (manifest signature, every part's sha256, every stream's sha256) into a staging folder
// BEFORE QEMU starts. A state that fails any check is refused: the vm stays `suspended`,
// with the reason naming the part, and the state is left in storage for a person to look at.
import { createWriteStream } from "node:fs";
import { mkdir, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

import { type HostedVm, WorkerContext } from "../context.ts";
import { type GuestStateSourceReader, goldenPoints, resumeSource } from "../golden-point.ts";
import { type GuestStateMetadata, discardStaging, guestStateMetadata, progressReporter, stagingDir } from "../guest-state-store.ts";

/** Handle vm.resume: fetch and verify the guest state, restore it in a new QEMU, report running. */
export async function resumeVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  if (WorkerContext.isAlive(hosted.engineVm)) {
    await ctx.report(hosted, hosted.engineVm.state === "running" ? "running" : "resuming");
    return;
  }
  const { db, engine, guestStates } = ctx.options;
  const source = await resumeSource(db, guestStates.store, hosted.vmId);
  if (!source) {
    await ctx.report(hosted, "failed", {
      reason: `cannot resume vm ${hosted.vmId}: it has no guest state in ${guestStates.store.store.location}; start it instead`,
    });
    return;
  }
  await ctx.report(hosted, "resuming");
  const { spec } = await ctx.spec(hosted);
  const staging = stagingDir(hosted.dir);
  const memoryFile = join(staging, "memory.zst");
  let metadata: GuestStateMetadata;
  try {
    await discardStaging(hosted.dir);
    await mkdir(staging, { recursive: true });
    const reader = source.golden ? await goldenPoints(ctx).open(source.ref) : await guestStates.store.open(source.ref);
    const parsed = guestStateMetadata.safeParse(reader.metadata);
    if (!parsed.success) {
      throw new Error(`guest state ${source.ref.vmId}/${source.ref.stateId} was not written by a Ferry worker (its metadata has no engine manifest and disk list)`);
    }
    metadata = parsed.data;
    const missing = spec.disks.filter((disk) => metadata.disks[disk.id] === undefined).map((disk) => disk.id);
    if (missing.length > 0) throw new Error(`guest state ${source.ref.vmId}/${source.ref.stateId} has no overlay for disk(s) ${missing.join(", ")}`);
    await fetchVerified(ctx, hosted, reader, [
      { stream: "memory", file: memoryFile },
      ...spec.disks.map((disk) => ({ stream: metadata.disks[disk.id]!, file: join(staging, `${disk.id}.qcow2`) })),
    ]);
    // Every byte checked: only now do the overlays replace whatever disk this worker had.
    for (const disk of spec.disks) {
      await mkdir(dirname(disk.overlay), { recursive: true });
      await rename(join(staging, `${disk.id}.qcow2`), disk.overlay);
    }
  } catch (error) {
    await discardStaging(hosted.dir);
    await ctx.report(hosted, "suspended", { reason: `resume refused: ${(error as Error).message}`, refused: true });
    return;
  }
  await ctx.options.serial.follow(hosted.vmId, spec.serial.logFile);
  let vm;
  try {
    // The engine compares the manifest with the spec and this host before QEMU starts.
    // From the file: QEMU reads it itself once the engine has checked it against the manifest.
    vm = await engine.restore(spec, { file: memoryFile }, metadata.engine, source.restore);
  } catch (error) {
    await ctx.options.serial.unfollow(hosted.vmId);
    await discardStaging(hosted.dir);
    await ctx.report(hosted, "suspended", { reason: `resume failed on worker ${ctx.workerId}: ${(error as Error).message}`, refused: true });
    return;
  }
  ctx.supervise(hosted, vm);
  await discardStaging(hosted.dir);
  await ctx.report(hosted, vm.state === "running" ? "running" : "resuming");
}

/** Copy streams of a verified guest state into files (side by side), reporting bytes done of the total. */
async function fetchVerified(ctx: WorkerContext, hosted: HostedVm, reader: GuestStateSourceReader, wanted: Array<{ stream: string; file: string }>): Promise<void> {
  const total = wanted.reduce((sum, want) => sum + (reader.streams.find((s) => s.name === want.stream)?.bytes ?? 0), 0);
  let done = 0;
  const report = progressReporter((progress) => void ctx.report(hosted, "resuming", { progress }));
  // Settled, not raced: the staging folder is removed on failure only after every copy stopped.
  const copies = await Promise.allSettled(
    wanted.map(async (want) => {
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          done += chunk.length;
          report(done, total);
          callback(null, chunk);
        },
      });
      await pipeline(reader.stream(want.stream), counter, createWriteStream(want.file));
    }),
  );
  const failed = copies.find((copy) => copy.status === "rejected");
  if (failed) throw failed.reason;
}
