// Hosted labs in the reconcile pass.
//
// 1. Publishing template versions. A version is asked for on a vm (the portal writes the
//    version `publishing` and asks the vm to suspend through the normal path); each pass then
//    looks at every publishing version: once its vm is suspended, one worker copies the vm's
//    guest state as the version's golden point (vm.publish, apps/worker) and marks the version
//    ready. The decision is pure (publishDecision) so every rule has a table test.
// 2. Resetting clones. The portal resets a clone by clearing its own guest state: one that
//    runs nowhere is suspended at the golden point again (the normal resume placement takes it
//    from there); one that runs is marked `operation: "reset"`, and here it goes `resuming`
//    and its worker gets vm.reset (stop the guest, resume from the golden point).
import type { Db } from "@ferry/db";
import { type VmJob, type WorkerJobName, workerJobId } from "@ferry/jobs";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

import { isWorkerAlive } from "./placement.ts";
import { vmDefinitionOf } from "./vm-definition.ts";
import { WorkerQueues } from "./worker-queues.ts";

/** The fields of a publishing template version the decision reads. */
export interface PublishingVersion {
  sourceVmId: string;
  /** the vm's guest state chosen for the golden point, once a copy was asked for */
  sourceGuestStateId: string | null;
  publishWorkerId: string | null;
}

/** The fields of the source vm the decision reads. */
export interface PublishingVm {
  id: string;
  state: string;
  desiredState: string;
  stateReason: string | null;
  guestStateId: string | null;
}

export type PublishDecision =
  | { kind: "wait" }
  | { kind: "fail"; reason: string }
  /** ask `workerId` to copy the vm's guest state `stateId` */
  | { kind: "send"; workerId: string; stateId: string };

/** States on the way to the suspend the publish asked for. */
const suspendingStates = new Set(["running", "suspending"]);

/**
 * What to do next for a publishing version: wait for the vm's suspend, ask a worker to copy
 * its guest state (the one chosen before while that worker lives, so two copies never race),
 * or fail the version with the reason.
 */
export function publishDecision(
  version: PublishingVersion,
  vm: PublishingVm | null,
  aliveWorkers: Array<{ id: string; memoryMiBFree: number }>,
): PublishDecision {
  if (!vm || vm.state === "deleted" || vm.desiredState === "deleted") {
    return { kind: "fail", reason: `vm ${version.sourceVmId} was deleted before its guest state was published; publish from another vm` };
  }
  const stateId = version.sourceGuestStateId ?? (vm.state === "suspended" ? vm.guestStateId : null);
  if (stateId === null) {
    if (vm.desiredState === "suspended" && suspendingStates.has(vm.state)) return { kind: "wait" };
    return {
      kind: "fail",
      reason: `vm ${vm.id} is ${vm.state}${vm.stateReason ? ` (${vm.stateReason})` : ""}, not suspended, so it has no guest state to publish; start it and publish again`,
    };
  }
  const chosen = aliveWorkers.find((worker) => worker.id === version.publishWorkerId);
  const worker = chosen ?? [...aliveWorkers].sort((a, b) => b.memoryMiBFree - a.memoryMiBFree || a.id.localeCompare(b.id))[0];
  if (!worker) return { kind: "wait" };
  return { kind: "send", workerId: worker.id, stateId };
}

export interface LabsOptions {
  db: Db;
  redis: Redis;
  prefix: string;
  workerTimeoutMs: number;
  log: Logger;
}

/** Drives publishing template versions to ready (or failed) and clone resets; once per reconcile pass. */
export class Labs {
  readonly #options: LabsOptions;
  readonly #queues: WorkerQueues;

  constructor(options: LabsOptions) {
    this.#options = options;
    this.#queues = new WorkerQueues({ redis: options.redis, prefix: options.prefix });
  }

  /** One pass: every publishing version, then every running clone asked to reset. */
  async reconcileAll(now = new Date()): Promise<void> {
    await this.#publishAll(now);
    await this.#resetAll(now);
  }

  // 1.
  async #publishAll(now: Date): Promise<void> {
    const { db, workerTimeoutMs, log } = this.#options;
    const versions = await db.labTemplateVersion.findMany({ where: { status: "publishing" }, orderBy: { createdAt: "asc" } });
    if (versions.length === 0) return;
    const alive = (await db.worker.findMany()).filter((worker) => isWorkerAlive(worker, now, workerTimeoutMs));
    for (const version of versions) {
      const vm = await db.vm.findUnique({ where: { id: version.sourceVmId } });
      const decision = publishDecision(version, vm, alive);
      if (decision.kind === "wait") continue;
      if (decision.kind === "fail") {
        await db.labTemplateVersion.updateMany({ where: { id: version.id, status: "publishing" }, data: { status: "failed", statusReason: decision.reason } });
        log.info({ versionId: version.id, reason: decision.reason }, "template version not published");
        continue;
      }
      const updated = await db.labTemplateVersion.updateMany({
        where: { id: version.id, status: "publishing" },
        data: { publishWorkerId: decision.workerId, sourceGuestStateId: decision.stateId },
      });
      if (updated.count !== 1 || !vm) continue;
      const payload: VmJob = { vm: vmDefinitionOf(vm), generation: vm.generation, publish: { versionId: version.id, stateId: decision.stateId } };
      // Sent every pass until the version is ready: the stable job id drops a copy while one
      // waits or runs, and a copy that committed before its worker died is found, not redone.
      await this.#send(decision.workerId, "vm.publish", payload, {
        jobId: `vm.publish.${version.id}.${decision.stateId}`,
      });
      if (version.publishWorkerId !== decision.workerId) {
        log.info({ versionId: version.id, vmId: vm.id, workerId: decision.workerId, stateId: decision.stateId }, "golden point copy sent");
      }
    }
  }

  // 2.
  async #resetAll(now: Date): Promise<void> {
    const { db, log } = this.#options;
    const vms = await db.vm.findMany({
      where: { operation: "reset", state: "running", workerId: { not: null }, guestStateId: null, sourceTemplateVersionId: { not: null } },
    });
    for (const vm of vms) {
      const updated = await db.vm.updateMany({
        where: { id: vm.id, generation: vm.generation, state: "running", operation: "reset" },
        data: { state: "resuming", stateReason: null, stateChangedAt: now },
      });
      if (updated.count !== 1) continue;
      await db.vmEvent.create({ data: { vmId: vm.id, kind: "state", message: `running → resuming: vm.reset sent to worker ${vm.workerId} (back to the golden point)`, at: now } });
      log.info({ vmId: vm.id, workerId: vm.workerId }, "clone reset sent");
      await this.#send(vm.workerId!, "vm.reset", { vm: vmDefinitionOf(vm), generation: vm.generation }, { jobId: workerJobId("vm.reset", vm.id, vm.generation) });
    }
  }

  async close(): Promise<void> {
    await this.#queues.close();
  }

  async #send(workerId: string, name: WorkerJobName, payload: VmJob, options: { jobId: string }): Promise<void> {
    await this.#queues.of(workerId).add(name, payload, { ...options, removeOnComplete: true, removeOnFail: true });
  }

}
