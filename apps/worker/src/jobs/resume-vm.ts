// vm.resume: fetch the vm's guest state from object storage (saved on any worker), verify it,
// restore its disk overlays and load its memory into a new QEMU; the guest carries on where
// it stopped.
//
// QEMU's loader is not built for untrusted input: the manifest's signature is checked first,
// then every part's sha256 before QEMU sees a byte of it. The memory stream flows into QEMU
// part by part as each is verified (its first parts are fetched while QEMU starts), and the
// guest runs only once the whole stream matched its sha256 too.
// A state that fails any check is refused: the vm stays `suspended`, with the reason naming
// the part, and the state is left in storage for a person to look at.
import { createWriteStream } from "node:fs";
import { mkdir, rename } from "node:fs/promises";
import { dirname, join } from "node:path";
import { Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";

import { isStorageError } from "@ferry/storage";

import { type HostedVm, WorkerContext } from "../context.ts";
import { type GuestStateSourceReader, type SharedGoldenPoint, goldenPoints, resumeSource } from "../golden-point.ts";
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
  // Not awaited: reports go out in order (a failed one is logged by report), and the fetch
  // need not wait for Redis to take this one.
  void ctx.report(hosted, "resuming").catch(() => undefined);
  const { spec } = await ctx.spec(hosted);
  const staging = stagingDir(hosted.dir);
  let metadata: GuestStateMetadata;
  let memory: Readable | undefined;
  let shared: SharedGoldenPoint | undefined;
  let progress: (bytes: number) => void;
  try {
    // The manifest is fetched and checked while the staging folder is made ready. Settled, not
    // raced: on failure the folder is removed only after the mkdir is done.
    const [opened, staged] = await Promise.allSettled([
      source.golden ? goldenPoints(ctx).open(source.ref) : guestStates.store.open(source.ref),
      discardStaging(hosted.dir).then(() => mkdir(staging, { recursive: true })),
    ]);
    if (opened.status === "rejected") throw opened.reason;
    if (staged.status === "rejected") throw staged.reason;
    const reader = opened.value;
    const parsed = guestStateMetadata.safeParse(reader.metadata);
    if (!parsed.success) {
      throw new Error(`guest state ${source.ref.vmId}/${source.ref.stateId} was not written by a Ferry worker (its metadata has no engine manifest and disk list)`);
    }
    metadata = parsed.data;
    const missing = spec.disks.filter((disk) => metadata.disks[disk.id] === undefined).map((disk) => disk.id);
    if (missing.length > 0) throw new Error(`guest state ${source.ref.vmId}/${source.ref.stateId} has no overlay for disk(s) ${missing.join(", ")}`);
    const disks = spec.disks.map((disk) => ({ stream: metadata.disks[disk.id]!, file: join(staging, `${disk.id}.qcow2`) }));
    // A clone maps the golden point's memory, split once per worker (golden-point.ts), beside
    // its fetch of the overlays. If the split fails the clone loads the memory stream, as before.
    const publishedFrom = source.restore.cloneOf;
    const sharing =
      source.golden && publishedFrom !== undefined
        ? goldenPoints(ctx)
            .shared(source.ref, metadata, spec, publishedFrom)
            .catch((error: unknown) => {
              ctx.options.log.warn({ err: error, vmId: hosted.vmId, goldenPoint: source.ref }, "sharing the golden point's memory failed; the clone loads its own copy");
              return undefined;
            })
        : undefined;
    progress = progressOf(ctx, hosted, reader, [...(sharing ? [] : ["memory"]), ...disks.map((disk) => disk.stream)]);
    // The overlays first, alone: QEMU cannot start without them, and the memory's parts
    // fetched beside them only slowed them down.
    await fetchVerified(reader, disks, progress);
    // Every byte of the overlays checked: only now do they replace whatever disk this worker had.
    for (const disk of spec.disks) {
      await mkdir(dirname(disk.overlay), { recursive: true });
      await rename(join(staging, `${disk.id}.qcow2`), disk.overlay);
    }
    shared = await sharing;
    // Asked for now, so its first parts are fetched while QEMU starts. The engine checks the
    // whole stream against its manifest: the store checks each part.
    if (!shared) memory = reader.stream("memory", { wholeChecksum: false });
  } catch (error) {
    await discardStaging(hosted.dir);
    await ctx.report(hosted, "suspended", { reason: `resume refused: ${(error as Error).message}`, refused: true });
    return;
  }
  await ctx.options.serial.follow(hosted.vmId, spec.serial.logFile);
  // A part that fails its check ends the stream with the storage's error, which names it.
  let refusal: Error | undefined;
  async function* verifiedMemory(): AsyncGenerator<Buffer> {
    try {
      for await (const chunk of memory!) {
        progress((chunk as Buffer).length);
        yield chunk as Buffer;
      }
    } catch (error) {
      if (isStorageError(error)) refusal = error;
      throw error;
    }
  }
  let vm;
  try {
    // The engine compares the manifest with the spec and this host before QEMU starts, then
    // feeds QEMU the verified parts and runs the guest only if the whole stream matched.
    vm = shared
      ? await engine.restore(spec, shared.devices, shared.manifest, { ...source.restore, sharedMemory: shared.memoryFile })
      : await engine.restore(spec, Readable.from(verifiedMemory(), { objectMode: false }), metadata.engine, source.restore);
  } catch (error) {
    memory?.destroy();
    await ctx.options.serial.unfollow(hosted.vmId);
    await discardStaging(hosted.dir);
    const reason = refusal ? `resume refused: ${refusal.message}` : `resume failed on worker ${ctx.workerId}: ${(error as Error).message}`;
    await ctx.report(hosted, "suspended", { reason, refused: true });
    return;
  }
  ctx.supervise(hosted, vm);
  await discardStaging(hosted.dir);
  await ctx.report(hosted, vm.state === "running" ? "running" : "resuming");
}

/** Counts bytes of a resume's streams as they arrive, reported as `resuming` progress (done of total). */
function progressOf(ctx: WorkerContext, hosted: HostedVm, reader: GuestStateSourceReader, streams: string[]): (bytes: number) => void {
  const total = streams.reduce((sum, name) => sum + (reader.streams.find((s) => s.name === name)?.bytes ?? 0), 0);
  let done = 0;
  const report = progressReporter((progress) => void ctx.report(hosted, "resuming", { progress }));
  return (bytes) => {
    done += bytes;
    report(done, total);
  };
}

/** Copy streams of a verified guest state into files (side by side). */
async function fetchVerified(reader: GuestStateSourceReader, wanted: Array<{ stream: string; file: string }>, progress: (bytes: number) => void): Promise<void> {
  // Settled, not raced: the staging folder is removed on failure only after every copy stopped.
  const copies = await Promise.allSettled(
    wanted.map((want) => {
      const counter = new Transform({
        transform(chunk: Buffer, _encoding, callback) {
          progress(chunk.length);
          callback(null, chunk);
        },
      });
      return pipeline(reader.stream(want.stream), counter, createWriteStream(want.file));
    }),
  );
  const failed = copies.find((copy) => copy.status === "rejected");
  if (failed) throw failed.reason;
}
