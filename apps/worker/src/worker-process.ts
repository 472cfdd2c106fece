// The worker process without its environment: main.ts starts it from env, integration tests
// start it as a child process. Order matters at start:
//
// 1. Accelerator (probed or configured) and the engine, which kills QEMUs a previous run of
//    this worker left behind.
// 2. Console relay, then the first heartbeat (its consoleAddress and startedAt). The heartbeat
//    also fences the guests (fence.ts) when beats stop getting through or the controller had
//    counted the worker gone.
// 3. Vms the database places here in a state with a live QEMU are reported lost: QEMU dies
//    with its worker, so nothing can be re-adopted. The controller decides what follows.
// 4. Only then the job queue: every job is checked for staleness and ownership first.
import { mkdir, readFile } from "node:fs/promises";
import { hostname } from "node:os";
import { join } from "node:path";

import { createDb } from "@ferry/db";
import { checkUnixSocketPath, Engine, EngineError, loadImage, parseHostCpu, probeAccelerator } from "@ferry/engine";
import { type VmJob, type VmState, type WorkerJobName, queueNames, vmJob, workerJobNames } from "@ferry/jobs";
import type { StoreConfig } from "@ferry/storage";
import { UnrecoverableError, Worker as QueueWorker } from "bullmq";
import { Redis } from "ioredis";
import type { Logger } from "pino";

import { startConsoleRelay } from "./console-relay.ts";
import { type HostedVm, WorkerContext } from "./context.ts";
import { createFence } from "./fence.ts";
import { openGuestStates, startGuestStateSweeper } from "./guest-state-store.ts";
import { type Heartbeat, startHeartbeat } from "./heartbeat.ts";
import { deleteVm } from "./jobs/delete-vm.ts";
import { discardVm, migrateVm, receiveVm } from "./jobs/migrate-vm.ts";
import { publishVm } from "./jobs/publish-vm.ts";
import { rebootVm } from "./jobs/reboot-vm.ts";
import { resetVm } from "./jobs/reset-vm.ts";
import { resumeVm } from "./jobs/resume-vm.ts";
import { startVm } from "./jobs/start-vm.ts";
import { stopVm } from "./jobs/stop-vm.ts";
import { suspendVm } from "./jobs/suspend-vm.ts";
import { SerialRelay } from "./serial-relay.ts";
import { startThumbnails } from "./thumbnails.ts";

export interface WorkerOptions {
  workerId: string;
  stateDir: string;
  databaseUrl: string;
  redisUrl: string;
  prefix: string;
  clusterSecret: string;
  vcpus: number;
  memoryMiB: number;
  consoleHost: string;
  consolePort: number;
  imagesDir: string;
  qemuBinary: string;
  accelerator: "auto" | "kvm" | "tcg";
  /** FERRY_TCG_TB_SIZE_MIB: each guest's TCG translation cache; unset: QEMU's default */
  tcgTranslationCacheMiB?: number;
  /** object storage for guest states, shared by every worker of the cluster */
  storage: StoreConfig;
  /** names the cluster in guest state manifests (a state from another cluster is refused) */
  clusterId: string;
  /** how many guest states each vm keeps (FERRY_GUEST_STATES_KEEP) */
  guestStatesKeep: number;
  /** how often deleted vms' states and interrupted uploads are swept, and the age an upload must reach */
  guestStateSweepMs: number;
  guestStateOrphanAgeMs: number;
  /** FERRY_WORKER_SHARED_STORAGE: vm disks live there, so guests can live-migrate to workers sharing it */
  sharedStorage?: string;
  /** where incoming live migrations connect; defaults to consoleHost */
  migrationHost?: string;
  heartbeatIntervalMs?: number;
  /** FERRY_WORKER_TIMEOUT_MS, the controller's figure: cut off this long, the worker pauses its guests (fence.ts) */
  workerTimeoutMs: number;
  stopGraceMs?: number;
  log: Logger;
}

export interface RunningWorker {
  /** Stop taking jobs, stop the guests (reported stopped), mark the worker offline, disconnect. */
  shutdown(): Promise<void>;
}

/** A job's handler; what it returns is the BullMQ job's return value (live migration jobs use it). */
type JobHandler = (ctx: WorkerContext, hosted: HostedVm, job: VmJob) => Promise<unknown>;

const handlers: Record<WorkerJobName, JobHandler> = {
  "vm.start": startVm,
  "vm.stop": stopVm,
  "vm.reboot": rebootVm,
  "vm.suspend": suspendVm,
  "vm.resume": resumeVm,
  "vm.delete": deleteVm,
  "vm.receive": receiveVm,
  "vm.migrate": migrateVm,
  "vm.discard": discardVm,
  "vm.publish": publishVm,
  "vm.reset": resetVm,
};

/** Jobs that would create or change a guest here: only run for a vm the database places here. */
const needsOwnership = new Set<WorkerJobName>(["vm.start", "vm.reboot", "vm.suspend", "vm.resume", "vm.migrate", "vm.reset"]);

/** Database states in which this worker ran a QEMU for the vm; it died with the previous process. */
const lostStates: VmState[] = ["booting", "running", "rebooting", "stopping", "suspending", "resuming", "migrating"];

/** Start a worker: engine, console relay, heartbeat, lost-guest reports, then the job queue. */
export async function startWorker(options: WorkerOptions): Promise<RunningWorker> {
  const { workerId, stateDir, log } = options;
  const startedAt = new Date();
  // A vm's console is QEMU's VNC on <stateDir>/vms/<vm id>/vnc.sock: a state folder too long
  // for that socket is refused here, not at every vm's start.
  checkUnixSocketPath(join(stateDir, "vms", "00000000-0000-0000-0000-000000000000", "vnc.sock"), `a vm's VNC socket under state folder ${stateDir}`);
  await mkdir(stateDir, { recursive: true });

  // 1.
  const accelerator = await chooseAccelerator(options);
  const engine = await Engine.open({
    runDir: join(stateDir, "run"),
    qemuBinary: options.qemuBinary,
    accelerator,
    ...(options.tcgTranslationCacheMiB === undefined ? {} : { tcgTranslationCacheMiB: options.tcgTranslationCacheMiB }),
    log,
  });
  const db = createDb(options.databaseUrl);
  // BullMQ workers block on Redis, so they need maxRetriesPerRequest: null.
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const serial = new SerialRelay({ redis, prefix: options.prefix, log });
  const guestStates = await openGuestStates({
    storage: options.storage,
    secret: options.clusterSecret,
    clusterId: options.clusterId,
    keep: options.guestStatesKeep,
  });
  const ctx = new WorkerContext({
    workerId,
    stateDir,
    imagesDir: options.imagesDir,
    accelerator,
    stopGraceMs: options.stopGraceMs ?? 10_000,
    ...(options.sharedStorage === undefined ? {} : { sharedStorage: options.sharedStorage }),
    migrationHost: options.migrationHost ?? options.consoleHost,
    engine,
    guestStates,
    db,
    redis,
    prefix: options.prefix,
    serial,
    log,
  });

  // 2.
  const relay = await startConsoleRelay({
    host: options.consoleHost,
    port: options.consolePort,
    secret: options.clusterSecret,
    workerId,
    vncSocketFor: (vmId) => {
      const vm = ctx.vms.get(vmId)?.engineVm;
      return WorkerContext.isAlive(vm) ? (vm.spec.display?.vncSocket ?? undefined) : undefined;
    },
    log,
  });
  const heartbeat: Heartbeat = await startHeartbeat({
    db,
    info: {
      id: workerId,
      hostname: hostname(),
      consoleAddress: relay.address,
      vcpusTotal: options.vcpus,
      memoryMiBTotal: options.memoryMiB,
      accelerator,
      cpu: parseHostCpu(await readFile("/proc/cpuinfo", "utf8")),
      qemuVersion: engine.qemuVersion,
      startedAt,
      sharedStorage: options.sharedStorage ?? null,
      migrationHost: options.migrationHost ?? options.consoleHost,
    },
    used: () => ctx.used(),
    intervalMs: options.heartbeatIntervalMs ?? 2000,
    workerTimeoutMs: options.workerTimeoutMs,
    fence: createFence(ctx, log),
    log,
  });

  // 3.
  const lost = await db.vm.findMany({
    where: { workerId, state: { in: lostStates } },
    select: { id: true, generation: true, state: true, guestStateId: true },
  });
  for (const vm of lost) {
    if ((vm.state === "suspending" || vm.state === "resuming") && vm.guestStateId !== null) {
      // The guest died mid-suspend or mid-resume; its last committed guest state did not.
      await ctx.report({ vmId: vm.id, generation: vm.generation }, "suspended", {
        reason: `worker ${workerId} restarted while the vm was ${vm.state}; it resumes from its guest state ${vm.guestStateId}`,
      });
      continue;
    }
    await ctx.report({ vmId: vm.id, generation: vm.generation }, "failed", { reason: `worker ${workerId} restarted; the guest was lost` });
  }
  if (lost.length > 0) log.warn({ vms: lost.map((vm) => vm.id) }, "guests lost with the previous worker process reported failed");

  // 4.
  const latestGeneration = new Map<string, number>();
  const vmLocks = new Map<string, Promise<unknown>>();
  const consumer = new QueueWorker(
    queueNames.worker(workerId),
    async (job) => {
      const name = job.name as WorkerJobName;
      const parsed = vmJob.safeParse(job.data);
      if (!workerJobNames.includes(name) || !parsed.success) {
        throw new UnrecoverableError(
          `worker ${workerId} cannot run job ${job.name} (${job.id}): expected one of ${workerJobNames.join(", ")} with {vm, generation}; got ${JSON.stringify(job.data)}`,
        );
      }
      // Jobs for one vm run one after another; different vms run side by side.
      const vmId = parsed.data.vm.vmId;
      const previous = vmLocks.get(vmId) ?? Promise.resolve();
      const run = previous.then(() => runJob(name, parsed.data));
      const settled = run.catch(() => undefined);
      vmLocks.set(vmId, settled);
      try {
        return await run;
      } finally {
        if (vmLocks.get(vmId) === settled) vmLocks.delete(vmId);
      }
    },
    { connection: redis, prefix: options.prefix, concurrency: 4 },
  );
  consumer.on("failed", (job, error) => log.error({ err: error, job: job?.name, jobId: job?.id }, "job failed"));
  consumer.on("error", (error) => log.error({ err: error }, "job queue error"));

  async function runJob(name: WorkerJobName, job: VmJob): Promise<unknown> {
    const { vm: definition, generation } = job;
    const seen = latestGeneration.get(definition.vmId) ?? -1;
    if (generation < seen) {
      log.info({ vmId: definition.vmId, job: name, generation, seen }, "stale job ignored: a newer generation was already handled");
      return;
    }
    if (needsOwnership.has(name)) {
      const row = await db.vm.findUnique({ where: { id: definition.vmId }, select: { workerId: true, desiredState: true } });
      if (!row || row.workerId !== workerId || row.desiredState === "deleted") {
        log.warn({ vmId: definition.vmId, job: name, owner: row?.workerId }, "job ignored: the vm is not placed on this worker (any more)");
        return;
      }
    }
    latestGeneration.set(definition.vmId, generation);
    const hosted = ctx.hosted(definition, generation);
    hosted.generation = Math.max(hosted.generation, generation);
    log.info({ vmId: definition.vmId, job: name, generation }, "job started");
    try {
      return await handlers[name](ctx, hosted, job);
    } catch (error) {
      if (error instanceof EngineError && (error.code === "invalid_spec" || error.code === "image_not_found")) {
        await ctx.report(hosted, "failed", { reason: error.message });
        throw new UnrecoverableError(error.message);
      }
      await ctx.report(hosted, "failed", { reason: `${name} failed on worker ${workerId}: ${(error as Error).message}` });
      throw error;
    }
  }

  const thumbnails = startThumbnails({ redis, prefix: options.prefix, vms: () => ctx.vms.values(), log });

  const stopSweeper = startGuestStateSweeper(db, guestStates, {
    intervalMs: options.guestStateSweepMs,
    orphanAgeMs: options.guestStateOrphanAgeMs,
    log,
  });

  log.info({ accelerator, consoleAddress: relay.address, vcpus: options.vcpus, memoryMiB: options.memoryMiB }, "worker started");

  return {
    async shutdown() {
      log.info("worker shutting down");
      await consumer.close();
      await thumbnails.stop();
      await stopSweeper();
      await heartbeat.drain();
      for (const hosted of ctx.vms.values()) {
        const vm = hosted.engineVm;
        if (!WorkerContext.isAlive(vm)) continue;
        hosted.engineVm = undefined;
        await vm.stop({ graceMs: 0 }).catch((error: unknown) => log.error({ err: error, vmId: hosted.vmId }, "stopping the guest failed"));
        await ctx.report(hosted, "stopped", { reason: `worker ${workerId} shut down` });
      }
      await serial.close();
      await heartbeat.stop();
      await relay.close();
      await engine.shutdown();
      await ctx.close();
      redis.disconnect();
      await db.$disconnect();
      log.info("worker stopped");
    },
  };
}

async function chooseAccelerator(options: WorkerOptions): Promise<"kvm" | "tcg"> {
  if (options.accelerator !== "auto") {
    options.log.info({ accelerator: options.accelerator }, `accelerator ${options.accelerator} (set by FERRY_ACCELERATOR)`);
    return options.accelerator;
  }
  // The probe boots the tiny image under KVM with a deadline: on some hosts KVM opens but
  // hangs the guest (QEMU-NOTES), so only a guest that prints its boot marker counts.
  const probe = await probeAccelerator({
    qemuBinary: options.qemuBinary,
    image: await loadImage(options.imagesDir, "tiny"),
    cacheFile: join(options.stateDir, "accelerator.json"),
  });
  options.log.info(probe, `accelerator ${probe.accelerator} (probed${probe.cached ? ", cached" : ""}): ${probe.reason}`);
  return probe.accelerator;
}
