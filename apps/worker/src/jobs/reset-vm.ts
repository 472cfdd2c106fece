// vm.reset: a lab clone goes back to its template version's golden point. The portal cleared
// the vm's own guest state, so the resume path's source is the golden point again: the running
// QEMU is stopped (guest and disk discarded: the fetched golden overlay replaces the disk),
// then vm.resume fetches, verifies and restores as for the clone's first start.
import { type HostedVm, WorkerContext } from "../context.ts";
import { resumeVm } from "./resume-vm.ts";

/** Handle vm.reset: stop the clone's QEMU, then resume it from its golden point. */
export async function resetVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  const row = await ctx.options.db.vm.findUnique({ where: { id: hosted.vmId }, select: { sourceTemplateVersionId: true, guestStateId: true } });
  const vm = hosted.engineVm;
  if (!row?.sourceTemplateVersionId || row.guestStateId !== null) {
    await ctx.report(hosted, WorkerContext.isAlive(vm) ? "running" : "failed", {
      reason: `cannot reset vm ${hosted.vmId}: it is not a lab clone asked to go back to its golden point; ask for the reset again`,
      refused: true,
    });
    return;
  }
  hosted.engineVm = undefined;
  if (WorkerContext.isAlive(vm)) await vm.stop({ graceMs: 0 });
  await ctx.options.serial.unfollow(hosted.vmId);
  await resumeVm(ctx, hosted);
}
