// Live migration, worker side. The controller (apps/controller/src/migration.ts) runs the
// protocol; each worker only does its own step and says how it went:
//
// 1. vm.receive (destination): start QEMU waiting for the guest on an ephemeral port of
//    migrationHost and return its URI. The vm's disk is on shared storage, so QEMU opens the
//    overlay the source is writing. A destination that never receives the guest stops its
//    QEMU by itself after the migration's time limit.
// 2. vm.migrate (source): live-migrate the guest to that URI and return QEMU's figures, or the
//    reason it stayed here. Never throws for a failed migration: the guest keeps running here.
// 3. vm.discard (destination, after a failure): stop the incoming QEMU of that migration,
//    unless the vm was moved here after all.
import { mkdir, rm } from "node:fs/promises";

import type { MigrateResult, ReceiveResult, VmJob } from "@ferry/jobs";

import { type HostedVm, WorkerContext } from "../context.ts";

/** Extra time a destination waits past the migration's limit before giving up on the guest. */
const receiveGraceMs = 10_000;

function migrationOf(job: VmJob, name: string): NonNullable<VmJob["migration"]> {
  if (!job.migration) throw new Error(`${name} for vm ${job.vm.vmId} carries no migration; the controller must send {migrationId, sourceWorkerId, targetWorkerId, …}`);
  return job.migration;
}

/** Handle vm.receive: start an incoming QEMU for the vm and return where it listens. */
export async function receiveVm(ctx: WorkerContext, hosted: HostedVm, job: VmJob): Promise<ReceiveResult> {
  const migration = migrationOf(job, "vm.receive");
  const existing = hosted.engineVm;
  if (WorkerContext.isAlive(existing)) {
    // A re-delivered vm.receive of the same migration gets the same answer.
    if (hosted.incomingMigrationId === migration.migrationId && existing.state === "resuming") {
      return { uri: await listeningUri(existing) };
    }
    throw new Error(`vm ${hosted.vmId} already runs on worker ${ctx.workerId} (${existing.state}); it cannot be migrated here`);
  }
  const { spec } = await ctx.spec(hosted);
  await mkdir(hosted.dir, { recursive: true });
  // The destination's serial log starts empty and continues the vm's Redis stream from there.
  await ctx.options.serial.unfollow(hosted.vmId, { forget: true });
  await rm(spec.serial.logFile, { force: true });
  await ctx.options.serial.follow(hosted.vmId, spec.serial.logFile);
  const vm = await ctx.options.engine.prepareIncoming(spec, { listen: { kind: "tcp", host: ctx.options.migrationHost, port: 0 } });
  hosted.incomingMigrationId = migration.migrationId;
  ctx.supervise(hosted, vm);
  const giveUp = setTimeout(() => {
    if (hosted.engineVm === vm && vm.state === "resuming") {
      void vm.fail(`live migration ${migration.migrationId} from worker ${migration.sourceWorkerId} did not arrive within ${migration.timeoutMs + receiveGraceMs} ms`);
    }
  }, migration.timeoutMs + receiveGraceMs);
  giveUp.unref();
  vm.on("state", (state) => {
    if (state !== "resuming") clearTimeout(giveUp);
  });
  return { uri: await listeningUri(vm) };
}

/** Handle vm.migrate: live-migrate the running guest to the destination's URI. */
export async function migrateVm(ctx: WorkerContext, hosted: HostedVm, job: VmJob): Promise<MigrateResult> {
  const migration = migrationOf(job, "vm.migrate");
  const vm = hosted.engineVm;
  if (!migration.uri) return { ok: false, reason: `vm.migrate for vm ${hosted.vmId} has no destination URI; the controller sends it after vm.receive` };
  if (!vm || vm.state !== "running") {
    return { ok: false, reason: `vm ${hosted.vmId} is ${vm?.state ?? "not running"} on worker ${ctx.workerId}; only a running vm can be live-migrated` };
  }
  hosted.migrating = true;
  let figures;
  try {
    figures = await vm.liveMigrate(migration.uri, {
      downtimeLimitMs: migration.downtimeLimitMs,
      timeoutMs: migration.timeoutMs,
      autoConverge: true,
      ...(migration.maxBandwidth === undefined ? {} : { maxBandwidth: migration.maxBandwidth }),
    });
  } catch (error) {
    return { ok: false, reason: (error as Error).message };
  } finally {
    hosted.migrating = false;
  }
  hosted.engineVm = undefined;
  await ctx.options.serial.unfollow(hosted.vmId, { forget: true });
  return { ok: true, downtimeMs: figures.downtimeMs, totalTimeMs: figures.totalTimeMs, bytesSent: figures.bytesSent };
}

/** Handle vm.discard: stop the incoming QEMU a failed migration left here. */
export async function discardVm(ctx: WorkerContext, hosted: HostedVm, job: VmJob): Promise<void> {
  const migration = migrationOf(job, "vm.discard");
  const row = await ctx.options.db.vm.findUnique({ where: { id: hosted.vmId }, select: { workerId: true } });
  // The destination already reported the guest running and the move was committed: keep it.
  if (row?.workerId === ctx.workerId) return;
  if (hosted.incomingMigrationId !== migration.migrationId) return;
  const vm = hosted.engineVm;
  hosted.engineVm = undefined;
  hosted.incomingMigrationId = undefined;
  if (WorkerContext.isAlive(vm)) await vm.stop({ graceMs: 0 });
  await ctx.options.serial.unfollow(hosted.vmId, { forget: true });
  ctx.log.info({ vmId: hosted.vmId, migrationId: migration.migrationId }, "incoming QEMU of a failed live migration stopped");
}

async function listeningUri(vm: NonNullable<HostedVm["engineVm"]>): Promise<string> {
  const info = await vm.execute<{ "socket-address"?: { type: string; host?: string; port?: string }[] }>("query-migrate");
  const address = info["socket-address"]?.find((a) => a.type === "inet");
  if (!address?.host || !address.port) {
    throw new Error(`the incoming QEMU of vm ${vm.id} reports no listening TCP address (query-migrate: ${JSON.stringify(info)})`);
  }
  return `tcp:${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`;
}
