// vm.suspend: save the guest state (memory and devices) beside the vm, then stop QEMU. The
// saved state is complete or absent (guest-state-file.ts), so a crash mid-save leaves the
// vm resumable from nothing rather than from half a state.
import type { HostedVm, WorkerContext } from "../context.ts";
import { openGuestStateSink, openGuestStateSource } from "../guest-state-file.ts";

/** Handle vm.suspend: save the guest state beside the vm, stop QEMU, report suspended. */
export async function suspendVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  const vm = hosted.engineVm;
  if (!vm || vm.state !== "running") {
    const saved = await openGuestStateSource(hosted.dir);
    if (saved) {
      saved.stream.destroy();
      await ctx.report(hosted, "suspended");
    } else {
      await ctx.report(hosted, "failed", {
        reason: `cannot suspend vm ${hosted.vmId}: it is ${vm?.state ?? "not running"} on worker ${ctx.workerId}; start it first`,
      });
    }
    return;
  }
  await ctx.report(hosted, "suspending");
  const sink = openGuestStateSink(hosted.dir);
  let manifest: unknown;
  try {
    manifest = await vm.saveState(sink.stream);
  } catch (error) {
    await sink.abort();
    // The engine resumed the guest: it keeps running and the suspend can be asked again.
    await ctx.report(hosted, "running", { reason: `suspend failed: ${(error as Error).message}` });
    return;
  }
  await sink.commit(manifest);
  hosted.engineVm = undefined;
  await vm.stop({ graceMs: 0 });
  await ctx.options.serial.unfollow(hosted.vmId);
  await ctx.report(hosted, "suspended");
}
