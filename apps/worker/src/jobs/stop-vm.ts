// vm.stop: power the vm off (ACPI, then QEMU quit, then kill) and drop what an interrupted
// suspend or resume left beside it; its guest states stay in storage.
import type { HostedVm, WorkerContext } from "../context.ts";
import { discardStaging } from "../guest-state-store.ts";

/** Handle vm.stop: stop QEMU if it runs, discard any guest state, report stopped. */
export async function stopVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  const vm = hosted.engineVm;
  if (vm && vm.state !== "stopped" && vm.state !== "failed") {
    await ctx.report(hosted, "stopping");
    hosted.engineVm = undefined;
    await vm.stop({ graceMs: ctx.options.stopGraceMs });
  }
  hosted.engineVm = undefined;
  await discardStaging(hosted.dir);
  await ctx.options.serial.unfollow(hosted.vmId);
  await ctx.report(hosted, "stopped");
}
