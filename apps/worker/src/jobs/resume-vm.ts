// vm.resume: load the guest state saved by vm.suspend into a new QEMU; the guest carries
// on where it stopped. The state is removed once loaded: it is stale from then on.
import type { GuestStateManifest } from "@ferry/engine";

import { type HostedVm, WorkerContext } from "../context.ts";
import { discardGuestState, openGuestStateSource } from "../guest-state-file.ts";

/** Handle vm.resume: restore the saved guest state in a new QEMU, report running. */
export async function resumeVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  if (WorkerContext.isAlive(hosted.engineVm)) {
    await ctx.report(hosted, hosted.engineVm.state === "running" ? "running" : "resuming");
    return;
  }
  const saved = await openGuestStateSource(hosted.dir);
  if (!saved) {
    await ctx.report(hosted, "failed", {
      reason: `cannot resume vm ${hosted.vmId}: worker ${ctx.workerId} has no guest state for it; start it instead`,
    });
    return;
  }
  await ctx.report(hosted, "resuming");
  const { spec } = await ctx.spec(hosted);
  await ctx.options.serial.follow(hosted.vmId, spec.serial.logFile);
  let vm;
  try {
    // The engine validates the manifest and compares it with the spec before QEMU starts.
    vm = await ctx.options.engine.restore(spec, saved.stream, saved.manifest as GuestStateManifest);
  } catch (error) {
    saved.stream.destroy();
    await ctx.report(hosted, "failed", { reason: `resume failed: ${(error as Error).message}` });
    return;
  }
  ctx.supervise(hosted, vm);
  await discardGuestState(hosted.dir);
  await ctx.report(hosted, vm.state === "running" ? "running" : "resuming");
}
