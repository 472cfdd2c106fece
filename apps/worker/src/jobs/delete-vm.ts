// vm.delete: stop QEMU if it runs and remove everything the vm had on this worker.
import { rm } from "node:fs/promises";
import { join } from "node:path";

import type { HostedVm, WorkerContext } from "../context.ts";

/** Handle vm.delete: stop QEMU, remove the vm folder, report deleted. */
export async function deleteVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  const vm = hosted.engineVm;
  hosted.engineVm = undefined;
  if (vm && vm.state !== "stopped" && vm.state !== "failed") await vm.stop({ graceMs: 0 });
  await ctx.options.serial.unfollow(hosted.vmId, { forget: true });
  await rm(hosted.dir, { recursive: true, force: true });
  const shared = ctx.options.sharedStorage;
  if (shared !== undefined) await rm(join(shared, "vms", hosted.vmId), { recursive: true, force: true });
  ctx.vms.delete(hosted.vmId);
  // Its guest states go with it (the sweeper catches those of vms deleted without a worker).
  await ctx.options.guestStates.store.deleteAll(hosted.vmId);
  await ctx.options.db.guestState.deleteMany({ where: { vmId: hosted.vmId } });
  await ctx.report(hosted, "deleted");
}
