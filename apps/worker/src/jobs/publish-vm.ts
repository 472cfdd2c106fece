// vm.publish: a lab template version is published from a suspended vm. Any worker may take it
// (the vm runs nowhere): it copies the vm's guest state as the version's golden point
// (golden-point.ts) and records the version ready, or failed with the reason. The vm is not
// touched, so nothing is reported for it.
import { manifestMemoryLayout } from "@ferry/engine";
import type { VmJob } from "@ferry/jobs";

import { type HostedVm, WorkerContext } from "../context.ts";
import { copyGoldenPoint } from "../golden-point.ts";

/** Handle vm.publish: copy the golden point, then mark the template version ready or failed. */
export async function publishVm(ctx: WorkerContext, hosted: HostedVm, job: VmJob): Promise<void> {
  const { db, guestStates, log } = ctx.options;
  // Nothing runs here for the vm: only the job made this worker look at it.
  if (!WorkerContext.isAlive(hosted.engineVm)) ctx.vms.delete(hosted.vmId);
  const request = job.publish;
  if (!request) {
    log.error({ vmId: hosted.vmId, job }, "vm.publish without {versionId, stateId} ignored; fix the sender");
    return;
  }
  const started = Date.now();
  try {
    const golden = await copyGoldenPoint(guestStates.store, hosted.vmId, request);
    const engine = golden.metadata.engine;
    await db.labTemplateVersion.updateMany({
      where: { id: request.versionId, status: "publishing" },
      data: {
        status: "ready",
        statusReason: null,
        sourceGuestStateId: request.stateId,
        goldenStateId: golden.stateId,
        storedBytes: BigInt(golden.storedBytes),
        cpuModel: engine.cpuModel,
        accelerator: engine.accelerator,
        memoryMiB: engine.memoryMiB,
        vcpus: engine.vcpus,
        qemuVersion: engine.qemuVersion,
        memoryLayout: manifestMemoryLayout(engine),
        publishedAt: new Date(),
      },
    });
    log.info({ vmId: hosted.vmId, ...request, storedBytes: golden.storedBytes, ms: Date.now() - started }, "golden point published");
  } catch (error) {
    const reason = `publishing guest state ${request.stateId} of vm ${hosted.vmId} failed on worker ${ctx.workerId}: ${(error as Error).message}`;
    await db.labTemplateVersion
      .updateMany({ where: { id: request.versionId, status: "publishing" }, data: { status: "failed", statusReason: reason } })
      .catch((recordError: unknown) => log.error({ err: recordError, ...request }, "recording a failed publish failed; the version stays publishing and the controller sends the job again"));
    log.warn({ err: error, vmId: hosted.vmId, ...request }, "publishing a golden point failed");
  }
}
