// Carries out reconcile decisions: reads a vm and the workers, asks decide() and placeVm(),
// then writes the new state and sends the worker job. Every write is conditional on the
// generation, state and reboot counter it decided on, so a concurrent API update or a second
// controller makes it a no-op instead of a wrong action; the next pass sees the new row.
import { type Db, Prisma, type Vm, type Worker } from "@ferry/db";
import { memoryLayoutOf } from "@ferry/engine";
import { type VmJob, type VmState, type WorkerJobName, workerJobId } from "@ferry/jobs";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

import type { MigrationRunner } from "./migration.ts";
import { type CpuCheck, type PromisedCapacity, placeVm } from "./placement.ts";
import { type Decision, type VmSnapshot, type WorkerLiveness, decide, guestStates, transitionDeadlineMs } from "./reconcile.ts";
import { vmDefinitionOf } from "./vm-definition.ts";
import type { Webhooks } from "./webhooks.ts";
import { WorkerQueues } from "./worker-queues.ts";

export interface ReconcilerOptions {
  db: Db;
  redis: Redis;
  prefix: string;
  workerTimeoutMs: number;
  cpuCheck: CpuCheck;
  migrations: MigrationRunner;
  /** told of the states the controller sets itself (a vm deleted without a worker, lost with its worker) */
  webhooks: Webhooks;
  log: Logger;
}

const transitionalStates = Object.keys(transitionDeadlineMs);

/** Drives vms from their state to their desired state; one reconcile at a time per process. */
export class Reconciler {
  readonly #options: ReconcilerOptions;
  readonly #queues: WorkerQueues;
  // Placement counts capacity promised to vms placed earlier; running reconciles one after
  // another keeps two placements from promising the same free memory twice.
  #chain: Promise<unknown> = Promise.resolve();

  constructor(options: ReconcilerOptions) {
    this.#options = options;
    this.#queues = new WorkerQueues({ redis: options.redis, prefix: options.prefix });
  }

  /** Reconcile one vm now (a vm.reconcile job, or after one of its events). */
  reconcileVm(vmId: string): Promise<void> {
    return this.#serial(async () => {
      const { db } = this.#options;
      const [vm, workers] = await Promise.all([db.vm.findUnique({ where: { id: vmId } }), db.worker.findMany()]);
      if (vm) await this.#reconcile(vm, workers);
    });
  }

  /** One pass of the loop: mark silent workers offline, then reconcile every vm that needs it. */
  reconcileAll(): Promise<void> {
    return this.#serial(async () => {
      const { db, workerTimeoutMs, log } = this.#options;
      const now = new Date();
      const silentSince = new Date(now.getTime() - workerTimeoutMs);
      const silent = await db.worker.updateManyAndReturn({
        where: { status: { not: "offline" }, lastHeartbeatAt: { lt: silentSince } },
        data: { status: "offline" },
        select: { id: true, lastHeartbeatAt: true },
      });
      for (const worker of silent) log.warn({ workerId: worker.id, lastHeartbeatAt: worker.lastHeartbeatAt }, "worker stopped heartbeating; marked offline");

      const workers = await db.worker.findMany();
      const gone = workers.filter((w) => this.#liveness(w.id, workers, now) === "gone").map((w) => w.id);
      const vms = await db.vm.findMany({
        where: {
          state: { not: "deleted" },
          OR: [
            { state: { in: transitionalStates } },
            { NOT: { state: { equals: db.vm.fields.desiredState } } },
            { rebootSeq: { gt: 0 } },
            { workerId: { in: gone } },
            { state: "failed", workerId: null },
            { state: "migrating" },
            { state: "running", worker: { status: "draining" } },
          ],
        },
        orderBy: { createdAt: "asc" },
      });
      for (const vm of vms) {
        try {
          await this.#reconcile(vm, workers);
        } catch (error) {
          log.error({ err: error, vmId: vm.id }, "reconciling the vm failed; the next pass retries");
        }
      }
    });
  }

  async close(): Promise<void> {
    await this.#chain;
    await this.#queues.close();
  }

  #serial(work: () => Promise<void>): Promise<void> {
    const next = this.#chain.then(work);
    this.#chain = next.catch(() => undefined);
    return next;
  }

  #liveness(workerId: string | null, workers: Worker[], now: Date): WorkerLiveness {
    if (workerId === null) return "none";
    const worker = workers.find((w) => w.id === workerId);
    if (!worker || worker.status === "offline") return "gone";
    return now.getTime() - worker.lastHeartbeatAt.getTime() <= this.#options.workerTimeoutMs ? "alive" : "gone";
  }

  async #reconcile(vm: Vm, workers: Worker[]): Promise<void> {
    const now = new Date();
    const liveness = this.#liveness(vm.workerId, workers, now);
    // Live migrations run beside the loop (migration.ts); a vm whose source is gone falls to decide().
    if (vm.state === "migrating" && liveness === "alive") {
      this.#options.migrations.ensure(vm);
      return;
    }
    const draining = workers.find((w) => w.id === vm.workerId)?.status === "draining";
    if (draining && liveness === "alive" && vm.state === "running" && vm.desiredState === "running" && vm.operation === null) {
      return this.#drainVm(vm, now);
    }
    const decision = decide(vm as VmSnapshot, liveness, now);
    switch (decision.kind) {
      case "wait":
        return;
      case "place":
        return decision.resume ? this.#placeResume(vm, workers, now) : this.#place(vm, workers, now);
      case "send":
        return this.#send(vm, decision, now);
      case "mark":
        return this.#mark(vm, decision, now);
    }
  }

  async #place(vm: Vm, workers: Worker[], now: Date): Promise<void> {
    const { db, log, workerTimeoutMs, cpuCheck } = this.#options;
    const placement = placeVm({
      vm: { vcpus: vm.vcpus, memoryMiB: vm.memoryMiB, cpuModel: vm.cpuModel, preferredWorkerId: vm.workerId },
      workers,
      promised: await this.#promised(workers),
      now,
      workerTimeoutMs,
      cpuCheck,
    });
    if (!placement.ok) {
      if (vm.state === "pending" && vm.stateReason === placement.reason) return;
      const updated = await db.vm.updateMany({
        where: { id: vm.id, generation: vm.generation, state: vm.state },
        data: { state: "pending", stateReason: placement.reason, ...(vm.state === "pending" ? {} : { stateChangedAt: now }) },
      });
      if (updated.count === 1) {
        await this.#event(vm.id, "placement", `not placed: ${placement.reason}`, now);
        log.info({ vmId: vm.id, reason: placement.reason }, "vm waits for placement");
      }
      return;
    }
    const updated = await db.vm.updateMany({
      where: { id: vm.id, generation: vm.generation, state: vm.state },
      data: {
        state: "creating",
        stateReason: null,
        workerId: placement.workerId,
        operation: "start",
        progress: Prisma.DbNull,
        stateChangedAt: now,
      },
    });
    if (updated.count !== 1) return;
    log.info({ vmId: vm.id, workerId: placement.workerId, generation: vm.generation }, "vm placed");
    await Promise.all([this.#sendJob(placement.workerId, "vm.start", vm), this.#event(vm.id, "placement", `placed on worker ${placement.workerId}`, now)]);
  }

  /** A suspended vm: any compatible worker can fetch its guest state; the asked-for one if any. */
  async #placeResume(vm: Vm, workers: Worker[], now: Date): Promise<void> {
    const { db, log, workerTimeoutMs, cpuCheck } = this.#options;
    const [saved, promised] = await Promise.all([this.#savedBy(vm), this.#promised(workers)]);
    const placement = placeVm({
      vm: {
        vcpus: vm.vcpus,
        memoryMiB: vm.memoryMiB,
        cpuModel: vm.cpuModel,
        preferredWorkerId: null,
        requiredWorkerId: vm.targetWorkerId,
        accelerator: saved?.accelerator ?? vm.accelerator,
        saved: saved?.qemuVersion ? { qemuVersion: saved.qemuVersion, memoryLayout: memoryLayoutOf(saved.memoryLayout) } : null,
      },
      workers,
      promised,
      now,
      workerTimeoutMs,
      cpuCheck,
    });
    if (!placement.ok) {
      // The vm stays suspended (its state is safe in storage); the reason says what it waits for.
      const reason = `not resumed yet: ${placement.reason}`;
      if (vm.stateReason === reason) return;
      const updated = await db.vm.updateMany({ where: { id: vm.id, generation: vm.generation, state: vm.state }, data: { stateReason: reason } });
      if (updated.count === 1) {
        await this.#event(vm.id, "placement", reason, now);
        log.info({ vmId: vm.id, reason: placement.reason }, "suspended vm waits for a worker to resume on");
      }
      return;
    }
    const updated = await db.vm.updateMany({
      where: { id: vm.id, generation: vm.generation, state: vm.state },
      data: {
        state: "resuming",
        stateReason: null,
        workerId: placement.workerId,
        targetWorkerId: null,
        operation: "resume",
        progress: Prisma.DbNull,
        stateChangedAt: now,
      },
    });
    if (updated.count !== 1) return;
    log.info({ vmId: vm.id, workerId: placement.workerId, generation: vm.generation }, "vm resume placed");
    await Promise.all([
      this.#sendJob(placement.workerId, "vm.resume", vm),
      this.#event(vm.id, "placement", `resume placed on worker ${placement.workerId}`, now),
    ]);
  }

  /**
   * What saved the guest state a suspended vm resumes from: its own newest one, or, for a lab
   * clone that has none yet, its template version's golden point.
   */
  async #savedBy(vm: Vm): Promise<{ accelerator: string | null; qemuVersion: string | null; memoryLayout: string | null } | null> {
    const { db } = this.#options;
    const select = { accelerator: true, qemuVersion: true, memoryLayout: true } as const;
    if (vm.guestStateId) return db.guestState.findUnique({ where: { id: vm.guestStateId }, select });
    if (vm.sourceTemplateVersionId) return db.labTemplateVersion.findUnique({ where: { id: vm.sourceTemplateVersionId }, select });
    return null;
  }

  /** A running vm on a draining worker: live-migrate it to wherever fits (retried after a failure). */
  async #drainVm(vm: Vm, now: Date): Promise<void> {
    const { db, migrations, log } = this.#options;
    if (!migrations.mayStart(vm.id, now)) return;
    const updated = await db.vm.updateMany({
      where: { id: vm.id, generation: vm.generation, state: "running", workerId: vm.workerId, operation: null },
      data: { state: "migrating", operation: "migrate", targetWorkerId: null, stateReason: null, stateChangedAt: now },
    });
    if (updated.count !== 1) return;
    await this.#event(vm.id, "migration", `worker ${vm.workerId} is draining: live-migrating the vm away`, now);
    log.info({ vmId: vm.id, workerId: vm.workerId }, "draining worker: vm migration started");
    migrations.ensure({ ...vm, state: "migrating", operation: "migrate", targetWorkerId: null, stateChangedAt: now });
  }

  async #send(vm: Vm, decision: Extract<Decision, { kind: "send" }>, now: Date): Promise<void> {
    const { db, log } = this.#options;
    const updated = await db.vm.updateMany({
      where: { id: vm.id, generation: vm.generation, state: vm.state, rebootSeq: vm.rebootSeq },
      data: {
        state: decision.state,
        operation: decision.job.slice("vm.".length),
        stateChangedAt: now,
        // The reboot request is taken: clear it so the next pass does not reboot again.
        ...(decision.job === "vm.reboot" ? { rebootSeq: 0 } : {}),
      },
    });
    if (updated.count !== 1 || vm.workerId === null) return;
    const sent = this.#sendJob(vm.workerId, decision.job, vm);
    if (decision.resend) log.warn({ vmId: vm.id, state: vm.state, job: decision.job }, "transitional state outlived its deadline; job sent again");
    await Promise.all([sent, decision.resend ? undefined : this.#event(vm.id, "state", `${vm.state} → ${decision.state}: ${decision.job} sent to worker ${vm.workerId}`, now)]);
  }

  async #mark(vm: Vm, decision: Extract<Decision, { kind: "mark" }>, now: Date): Promise<void> {
    const { db, log, workerTimeoutMs } = this.#options;
    // A vm is released from its worker only while that worker is still gone: one that came back
    // since this pass read the workers has already checked which guests it keeps (its fence),
    // so releasing the vm now would leave its guest running beside the next placement.
    const stillGone =
      decision.release && vm.workerId !== null
        ? { worker: { OR: [{ status: "offline" }, { lastHeartbeatAt: { lt: new Date(now.getTime() - workerTimeoutMs) } }] } }
        : {};
    const updated = await db.vm.updateMany({
      where: { id: vm.id, generation: vm.generation, state: vm.state, ...stillGone },
      data: {
        state: decision.state,
        stateReason: decision.reason,
        operation: null,
        stateChangedAt: now,
        ...(decision.release ? { workerId: null } : {}),
      },
    });
    if (updated.count !== 1) return;
    await this.#event(vm.id, "state", `${vm.state} → ${decision.state}${decision.reason ? `: ${decision.reason}` : ""}`, now);
    await this.#options.webhooks.vmChanged(vm, { previousState: vm.state as VmState, state: decision.state, reason: decision.reason, at: now });
    log.info({ vmId: vm.id, from: vm.state, to: decision.state, reason: decision.reason }, "vm state marked by the controller");
  }

  /** Capacity of vms on a worker that its last heartbeat cannot have counted yet. */
  async #promised(workers: Worker[]): Promise<PromisedCapacity[]> {
    const vms = await this.#options.db.vm.findMany({
      where: { workerId: { not: null }, state: { in: [...guestStates] } },
      select: { workerId: true, vcpus: true, memoryMiB: true, state: true, stateChangedAt: true },
    });
    return vms.flatMap((vm) => {
      const worker = workers.find((w) => w.id === vm.workerId);
      if (!worker) return [];
      const notStartedYet = vm.state === "creating" || vm.state === "resuming";
      if (!notStartedYet && vm.stateChangedAt <= worker.lastHeartbeatAt) return [];
      return [{ workerId: worker.id, vcpus: vm.vcpus, memoryMiB: vm.memoryMiB }];
    });
  }

  // Sent side by side with the VmEvent that records it (its time is taken before): the worker
  // starts a round trip sooner, and the log keeps its order.
  async #sendJob(workerId: string, name: WorkerJobName, vm: Vm): Promise<void> {
    const payload: VmJob = {
      vm: vmDefinitionOf(vm),
      generation: vm.generation,
    };
    // The job id is stable per action and generation: a re-send while the first copy still
    // waits in the queue is dropped by BullMQ. Finished jobs are removed so a later re-send
    // (after a deadline) is delivered again.
    await this.#queues.of(workerId).add(name, payload, {
      jobId: workerJobId(name, vm.id, vm.generation),
      removeOnComplete: true,
      removeOnFail: true,
      attempts: 3,
      backoff: { type: "exponential", delay: 1000 },
    });
  }


  async #event(vmId: string, kind: string, message: string, at: Date): Promise<void> {
    await this.#options.db.vmEvent.create({ data: { vmId, kind, message, at } });
  }
}
