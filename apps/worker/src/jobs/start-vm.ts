// vm.start: boot the vm from its image. Delivered at least once: if the vm already runs
// here, report its state and do nothing else.
import { mkdir } from "node:fs/promises";

import { type HostedVm, WorkerContext } from "../context.ts";
import { discardStaging } from "../guest-state-store.ts";

/** Handle vm.start: boot the vm here, or report it if it already runs. */
export async function startVm(ctx: WorkerContext, hosted: HostedVm): Promise<void> {
  if (WorkerContext.isAlive(hosted.engineVm)) {
    const state = hosted.engineVm.state;
    await ctx.report(hosted, state === "running" ? "running" : "booting");
    return;
  }
  const { spec, image } = await ctx.spec(hosted, { coldBoot: true });
  await mkdir(hosted.dir, { recursive: true });
  // A start boots from the disk; files an interrupted suspend or resume left no longer apply.
  await discardStaging(hosted.dir);
  await ctx.options.serial.follow(hosted.vmId, spec.serial.logFile);
  const vm = await ctx.options.engine.start(spec, { bootMarker: image.bootMarker });
  ctx.supervise(hosted, vm);
  await ctx.report(hosted, vm.state === "running" ? "running" : "booting");
}
