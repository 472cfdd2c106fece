// vm.reboot: hard reset inside the same QEMU; the guest boots again and reports running.
import type { HostedVm, WorkerContext } from "../context.ts";

/** Handle vm.reboot: reset the running guest; report rebooting, then running. */
export async function rebootVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  const vm = hosted.engineVm;
  if (!vm || (vm.state !== "running" && vm.state !== "booting")) {
    await ctx.report(hosted, "failed", {
      reason: `cannot reboot vm ${hosted.vmId}: it is not running on worker ${ctx.workerId} (${vm?.state ?? "no QEMU"}); start it instead`,
    });
    return;
  }
  // Already booting (a duplicated job, or a reset under way): the reboot has happened.
  if (vm.state === "booting") return;
  hosted.rebooting = true;
  await ctx.report(hosted, "rebooting");
  await vm.reset();
  // The engine follows the boot only for a process it booted itself (it knows the marker);
  // a restored vm stays `running` through its reset, so nothing else would report it.
  if (vm.state === "running") {
    hosted.rebooting = false;
    await ctx.report(hosted, "running");
  }
}
