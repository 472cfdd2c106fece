// Live migration, controller side. The portal (or a drain) puts a running vm in state
// `migrating`; the reconciler hands it to the MigrationRunner, which runs the protocol:
//
// 1. Target: the asked-for worker or the best compatible one (engine's chooseMigrationTarget:
//    CPU, accelerator, capacity, same shared storage).
// 2. vm.receive on the target: an incoming QEMU; its answer is the URI it listens on.
// 3. vm.migrate on the source: QEMU live-migrates (downtime limit, auto-converge, time limit)
//    and answers with its figures or the reason the guest stayed.
// 4. Only on QEMU's completion does the vm's worker change, in one transaction
//    (commitMigration), followed by a vmMoved message so console gateways re-attach.
//    The destination's own `running` report commits too (events.ts): whichever comes first,
//    so a source that dies right after completing cannot leave the guest unaccounted for.
// 5. Otherwise the vm stays `running` on the source with the reason, and the target's QEMU is
//    discarded.
import { randomUUID } from "node:crypto";

import { type Db, Prisma, type Vm, type Worker } from "@ferry/db";
import { type MigrationHost, chooseMigrationTarget, memoryLayoutOf } from "@ferry/engine";
import {
  type VmJob,
  type VmMovedMessage,
  type WorkerJobName,
  migrateResult,
  queueNames,
  receiveResult,
  redisKeys,
} from "@ferry/jobs";
import { type Job, QueueEvents } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

import { isWorkerAlive } from "./placement.ts";
import { vmDefinitionOf } from "./vm-definition.ts";
import { WorkerQueues } from "./worker-queues.ts";

/** How long the target may take to start its incoming QEMU. */
const receiveTimeoutMs = 30_000;
/** Beyond the migration's own limit (QEMU cancels then), how long the source may take to answer. */
const answerGraceMs = 30_000;
/** A drain tries a vm again this long after its migration failed. */
export const drainRetryMs = 30_000;

export interface MigrationSettings {
  /** FERRY_MIGRATION_DOWNTIME_MS: the longest pause QEMU may take for the last dirty pages */
  downtimeLimitMs: number;
  /** FERRY_MIGRATION_TIMEOUT_MS: after this the migration is cancelled and the guest stays */
  timeoutMs: number;
  /** FERRY_MIGRATION_MAX_BANDWIDTH: bytes per second a migration may use (unset: no cap) */
  maxBandwidth?: number;
}

export const defaultMigrationSettings: MigrationSettings = { downtimeLimitMs: 50, timeoutMs: 60_000 };

/** Tells other processes (console gateways) that a vm moved; published after the commit. */
export type MovedPublisher = (message: VmMovedMessage) => Promise<void>;

/** A publisher on Redis pub/sub channel `redisKeys.vmMoved(prefix)`. */
export function redisMovedPublisher(redis: Redis, prefix: string): MovedPublisher {
  return async (message) => {
    await redis.publish(redisKeys.vmMoved(prefix), JSON.stringify(message));
  };
}

/**
 * Move a migrating vm to its target worker in one transaction; false when it is no longer
 * migrating from `fromWorkerId` to `toWorkerId` (already committed, or given up).
 */
export async function commitMigration(
  db: Db,
  publish: MovedPublisher,
  move: { vmId: string; fromWorkerId: string; toWorkerId: string; detail: string },
): Promise<boolean> {
  const at = new Date();
  const committed = await db.$transaction(async (tx) => {
    const updated = await tx.vm.updateMany({
      where: { id: move.vmId, state: "migrating", workerId: move.fromWorkerId, targetWorkerId: move.toWorkerId },
      data: {
        state: "running",
        workerId: move.toWorkerId,
        targetWorkerId: null,
        stateReason: null,
        operation: null,
        progress: Prisma.DbNull,
        stateChangedAt: at,
      },
    });
    if (updated.count !== 1) return false;
    await tx.vmEvent.create({
      data: { vmId: move.vmId, at, kind: "migration", message: `migrated from worker ${move.fromWorkerId} to worker ${move.toWorkerId}: ${move.detail}` },
    });
    return true;
  });
  if (committed) await publish({ vmId: move.vmId, fromWorkerId: move.fromWorkerId, toWorkerId: move.toWorkerId });
  return committed;
}

/** A Worker row as migration target rules see it. */
export function migrationHostOf(worker: Worker, now: Date, workerTimeoutMs: number): MigrationHost {
  return {
    id: worker.id,
    alive: isWorkerAlive({ status: worker.status === "draining" ? "online" : worker.status, lastHeartbeatAt: worker.lastHeartbeatAt }, now, workerTimeoutMs),
    status: worker.status,
    accelerator: worker.accelerator,
    cpuFlags: worker.cpuFlags,
    vcpusFree: worker.vcpusFree,
    memoryMiBFree: worker.memoryMiBFree,
    sharedStorage: worker.sharedStorage,
    qemuVersion: worker.qemuVersion,
  };
}

export interface MigrationRunnerOptions {
  db: Db;
  redis: Redis;
  prefix: string;
  workerTimeoutMs: number;
  settings: MigrationSettings;
  publish: MovedPublisher;
  log: Logger;
}

/** Runs the live migrations of this controller, at most one per vm. */
export class MigrationRunner {
  /** Limits for the migrations started from now on. */
  settings: MigrationSettings;
  readonly #options: MigrationRunnerOptions;
  readonly #inFlight = new Map<string, Promise<void>>();
  readonly #failedAt = new Map<string, number>();
  readonly #queues: WorkerQueues;
  readonly #queueEvents = new Map<string, Promise<QueueEvents>>();
  readonly #connections: Redis[] = [];

  constructor(options: MigrationRunnerOptions) {
    this.#options = options;
    this.#queues = new WorkerQueues({ redis: options.redis, prefix: options.prefix });
    this.settings = options.settings;
  }

  /** Whether a drain may try this vm now (not in flight, no recent failure). */
  mayStart(vmId: string, now: Date): boolean {
    if (this.#inFlight.has(vmId)) return false;
    const failed = this.#failedAt.get(vmId);
    return failed === undefined || now.getTime() - failed >= drainRetryMs;
  }

  /** Run the migration of a vm in state `migrating`, unless this controller already runs it. */
  ensure(vm: Vm): void {
    if (this.#inFlight.has(vm.id)) return;
    const run = this.#run(vm)
      .catch((error: unknown) => this.#options.log.error({ err: error, vmId: vm.id }, "live migration crashed; the next reconcile pass looks at the vm again"))
      .finally(() => this.#inFlight.delete(vm.id));
    this.#inFlight.set(vm.id, run);
  }

  /** Wait for migrations in flight, then close the queues. */
  async close(): Promise<void> {
    await Promise.all(this.#inFlight.values());
    await this.#queues.close();
    await Promise.all([...this.#queueEvents.values()].map(async (events) => (await events).close()));
    for (const connection of this.#connections) connection.disconnect();
  }

  async #run(vm: Vm): Promise<void> {
    const { db, log, workerTimeoutMs } = this.#options;
    const settings = this.settings;
    const source = vm.workerId;
    if (source === null) return;
    const now = new Date();
    const workers = await db.worker.findMany();
    // Capacity promised to other migrations heading somewhere is not in that worker's heartbeat yet.
    const heading = await db.vm.findMany({
      where: { state: "migrating", targetWorkerId: { not: null }, id: { not: vm.id } },
      select: { targetWorkerId: true, vcpus: true, memoryMiB: true },
    });
    const hosts = workers.map((worker) => {
      const host = migrationHostOf(worker, now, workerTimeoutMs);
      for (const other of heading.filter((h) => h.targetWorkerId === worker.id)) {
        host.vcpusFree -= other.vcpus;
        host.memoryMiBFree -= other.memoryMiB;
      }
      return host;
    });
    const sourceHost = hosts.find((h) => h.id === source);
    if (!sourceHost) return this.#giveUp(vm, source, null, `worker ${source} is not registered`);
    const choice = chooseMigrationTarget(
      { id: vm.id, cpuModel: vm.cpuModel, accelerator: vm.accelerator ?? sourceHost.accelerator, vcpus: vm.vcpus, memoryMiB: vm.memoryMiB, memoryLayout: memoryLayoutOf(vm.memoryLayout) },
      sourceHost,
      hosts,
      vm.targetWorkerId,
    );
    if (!choice.ok) return this.#giveUp(vm, source, null, choice.reason);
    const target = choice.workerId;
    const claimed = await db.vm.updateMany({ where: { id: vm.id, state: "migrating", workerId: source }, data: { targetWorkerId: target } });
    if (claimed.count !== 1) return;

    const migration: NonNullable<VmJob["migration"]> = {
      migrationId: randomUUID(),
      sourceWorkerId: source,
      targetWorkerId: target,
      downtimeLimitMs: settings.downtimeLimitMs,
      timeoutMs: settings.timeoutMs,
      ...(settings.maxBandwidth === undefined ? {} : { maxBandwidth: settings.maxBandwidth }),
    };
    await db.vmEvent.create({ data: { vmId: vm.id, kind: "migration", message: `live migration from worker ${source} to worker ${target} started` } });
    log.info({ vmId: vm.id, source, target, migrationId: migration.migrationId }, "live migration started");
    let reason: string;
    try {
      const received = receiveResult.parse(await this.#call(target, "vm.receive", vm, migration, receiveTimeoutMs));
      const result = migrateResult.parse(
        await this.#call(source, "vm.migrate", vm, { ...migration, uri: received.uri }, settings.timeoutMs + answerGraceMs),
      );
      if (result.ok) {
        const detail = `QEMU reports ${result.downtimeMs} ms downtime, ${result.totalTimeMs} ms in all, ${Math.round(result.bytesSent / 1048576)} MiB sent`;
        const committed = await commitMigration(db, this.#options.publish, { vmId: vm.id, fromWorkerId: source, toWorkerId: target, detail });
        // The destination's running report committed first; keep QEMU's figures beside it.
        if (!committed) await db.vmEvent.create({ data: { vmId: vm.id, kind: "migration", message: `live migration to worker ${target}: ${detail}` } });
        this.#failedAt.delete(vm.id);
        log.info({ vmId: vm.id, source, target, ...result }, "live migration completed");
        return;
      }
      reason = result.reason;
    } catch (error) {
      reason = (error as Error).message;
    }
    await this.#giveUp(vm, source, target, reason, migration);
  }

  /** The guest stays on the source: back to running with the reason; the target's QEMU goes. */
  async #giveUp(vm: Vm, source: string, target: string | null, reason: string, migration?: NonNullable<VmJob["migration"]>): Promise<void> {
    const { db, log } = this.#options;
    this.#failedAt.set(vm.id, Date.now());
    const message = `live migration ${target ? `to worker ${target} ` : ""}failed: ${reason}; the vm keeps running on worker ${source}`;
    const at = new Date();
    const updated = await db.vm.updateMany({
      where: { id: vm.id, state: "migrating", workerId: source },
      data: { state: "running", stateReason: message, operation: null, targetWorkerId: null, progress: Prisma.DbNull, stateChangedAt: at },
    });
    if (updated.count === 1) await db.vmEvent.create({ data: { vmId: vm.id, at, kind: "migration", message } });
    log.warn({ vmId: vm.id, source, target, reason, recorded: updated.count === 1 }, "live migration failed");
    if (target && migration) {
      await this.#send(target, "vm.discard", vm, migration).catch((error: unknown) =>
        log.error({ err: error, vmId: vm.id, target }, "could not ask the target to discard its incoming QEMU; it stops by itself after the time limit"),
      );
    }
  }

  /** Send a job and wait for its answer; a job nobody answered in time is withdrawn. */
  async #call(workerId: string, name: WorkerJobName, vm: Vm, migration: NonNullable<VmJob["migration"]>, ttlMs: number): Promise<unknown> {
    const events = await this.#events(workerId);
    const job = await this.#send(workerId, name, vm, migration);
    try {
      return await job.waitUntilFinished(events, ttlMs);
    } catch (error) {
      await job.remove().catch(() => undefined);
      const message = (error as Error).message;
      throw new Error(
        message.includes("timed out")
          ? `worker ${workerId} did not answer ${name} within ${ttlMs} ms (is it running?)`
          : `${name} on worker ${workerId} failed: ${message}`,
      );
    }
  }

  #send(workerId: string, name: WorkerJobName, vm: Vm, migration: NonNullable<VmJob["migration"]>): Promise<Job> {
    const payload: VmJob = {
      vm: vmDefinitionOf(vm),
      generation: vm.generation,
      migration,
    };
    return this.#queues.of(workerId).add(name, payload, {
      jobId: `${name}.${vm.id}.${migration.migrationId}`,
      // Each step is asked once: a retry could act on a migration that has moved on.
      attempts: 1,
      removeOnComplete: true,
      removeOnFail: true,
    });
  }


  #events(workerId: string): Promise<QueueEvents> {
    let events = this.#queueEvents.get(workerId);
    if (!events) {
      // Its own connection: QueueEvents blocks on XREAD. Ready before any job is added, so no
      // completion is missed.
      const connection = this.#options.redis.duplicate();
      this.#connections.push(connection);
      const created = new QueueEvents(queueNames.worker(workerId), { connection, prefix: this.#options.prefix });
      events = created.waitUntilReady().then(() => created);
      this.#queueEvents.set(workerId, events);
    }
    return events;
  }
}
