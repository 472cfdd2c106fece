// Live migration with the controller and two workers sharing a disk folder, on real
// PostgreSQL, Redis and QEMU (tiny image, TCG). Workers are child processes, so killing one
// mid-migration really kills it (and, by pdeathsig, its QEMUs).
import { randomBytes } from "node:crypto";
import { mkdirSync } from "node:fs";
import { join } from "node:path";

import type { Db } from "@ferry/db";
import { redisKeys } from "@ferry/jobs";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { TestCluster, testServices } from "./test-cluster.ts";
import { typeOnConsole } from "./test-support.ts";

const { redisUrl } = testServices;
const cluster = new TestCluster("ferry-migration-", 100);
const { prefix, root, qemuProcesses, until, vmWhere, createVm, stopWorkerProcess } = cluster;
const shared = join(root, "shared");
const startWorkerProcess = (id: string) =>
  cluster.startWorkerProcess(id, {
    FERRY_CLUSTER_SECRET: randomBytes(32).toString("hex"),
    FERRY_WORKER_SHARED_STORAGE: shared,
    FERRY_STORAGE_PATH: join(root, "guest-states"),
  });
let db: Db;
let redis: Redis;

/** What the portal does for POST /vms/{id}/migrate: one conditional update, then a reconcile job. */
async function requestMigration(vmId: string, targetWorkerId: string | null = null): Promise<boolean> {
  const updated = await db.vm.updateMany({
    where: { id: vmId, state: "running", operation: null },
    data: { state: "migrating", operation: "migrate", targetWorkerId, stateReason: null, stateChangedAt: new Date() },
  });
  if (updated.count === 1) await cluster.controllerQueue.add("vm.reconcile", { vmId });
  return updated.count === 1;
}

/** Follows the vm's serial stream, noting when each `ferry-tick N uptime=S` line and each `dirty-pass` line arrived. */
function followTicks(vmId: string) {
  const reader = redis.duplicate();
  const ticks: { n: number; uptime: number; at: number }[] = [];
  const passes: number[] = [];
  let text = "";
  let stopped = false;
  const done = (async () => {
    let last = "0";
    while (!stopped) {
      const batch = await reader.xread("BLOCK", 200, "STREAMS", redisKeys.serialLog(prefix, vmId), last);
      const at = Date.now();
      for (const [, entries] of batch ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          text += fields[1] ?? "";
          const lines = text.split("\n");
          text = lines.pop() ?? "";
          for (const line of lines) {
            const match = /ferry-tick (\d+) uptime=([\d.]+)/.exec(line);
            if (match) ticks.push({ n: Number(match[1]), uptime: Number(match[2]), at });
            if (line.startsWith("dirty-pass")) passes.push(at);
          }
        }
      }
    }
  })();
  return {
    ticks,
    passes,
    async stop() {
      stopped = true;
      await done;
      reader.disconnect();
    },
  };
}

beforeAll(async () => {
  mkdirSync(shared);
  await cluster.start({
    redisUrl,
    controller: { reconcileIntervalMs: 500, workerTimeoutMs: 6000, migration: { downtimeLimitMs: 50, timeoutMs: 30_000 } },
  });
  ({ db, redis } = cluster);
  startWorkerProcess("w1");
  startWorkerProcess("w2");
  await until("both workers heartbeating", async () => (await db.worker.count({ where: { status: "online" } })) === 2 || undefined);
});

afterEach((context) => {
  if (context.task.result?.state === "fail") cluster.failed = true;
});

afterAll(() => cluster.close());

describe("live migration between two workers sharing storage", () => {
  let vmId: string;

  it("moves a running vm while its counter runs: the counter goes on at the destination without a gap", async () => {
    vmId = (await createVm("mover")).id;
    const running = await vmWhere(vmId, "running", (vm) => vm.state === "running");
    const source = running.workerId!;
    const target = source === "w1" ? "w2" : "w1";
    const follower = followTicks(vmId);
    await until("three ticks", async () => follower.ticks.length >= 3 || undefined, 30_000);

    const moved = new Redis(redisUrl);
    const messages: string[] = [];
    await moved.subscribe(redisKeys.vmMoved(prefix));
    moved.on("message", (_channel, message) => messages.push(message));

    expect(await requestMigration(vmId)).toBe(true);
    // A second migration of the same vm while the first runs is refused.
    expect(await requestMigration(vmId, target)).toBe(false);
    const after = await vmWhere(vmId, `running on ${target}`, (vm) => vm.state === "running" && vm.workerId === target, 60_000);
    const movedAt = Date.now();
    expect(after.targetWorkerId).toBeNull();
    expect(after.stateReason).toBeNull();
    await until("three ticks at the destination", async () => follower.ticks.filter((t) => t.at > movedAt).length >= 3 || undefined, 30_000);
    await follower.stop();
    moved.disconnect();

    const numbers = follower.ticks.map((t) => t.n);
    // Same guest (no reboot: uptime keeps growing), every tick once, in order.
    expect(numbers).toEqual(numbers.map((_, i) => numbers[0]! + i));
    const uptimes = follower.ticks.map((t) => t.uptime);
    expect([...uptimes].sort((a, b) => a - b)).toEqual(uptimes);
    const gaps = follower.ticks.slice(1).map((t, i) => t.at - follower.ticks[i]!.at);
    // Ticks come every second; the move may add its downtime and our 200 ms read interval.
    expect(Math.max(...gaps)).toBeLessThan(1600);

    expect(qemuProcesses(vmId)).toHaveLength(1);
    expect(qemuProcesses(vmId)[0]).toContain(join(root, target));
    expect(JSON.parse(messages[0]!)).toEqual({ vmId, fromWorkerId: source, toWorkerId: target });
    const events = await db.vmEvent.findMany({ where: { vmId, kind: "migration" }, orderBy: { at: "asc" } });
    expect(events.map((e) => e.message).filter((m) => m.includes("started"))).toHaveLength(1);
    expect(events.some((e) => e.message.startsWith(`migrated from worker ${source} to worker ${target}`))).toBe(true);
  });

  it("moves a guest that dirties memory three times: it keeps ticking and dirtying after each move", async () => {
    const dirtier = (await createVm("dirtier")).id;
    let row = await vmWhere(dirtier, "running", (vm) => vm.state === "running");
    const follower = followTicks(dirtier);
    try {
      await until("two ticks", async () => follower.ticks.length >= 2 || undefined, 30_000);
      // Rewrites 16 MiB of the guest's RAM-backed root file system over and over (as bench/migrate
      // does), saying so on the serial port after each pass.
      await typeOnConsole(
        join(root, row.workerId!, "vms", dirtier, "vnc.sock"),
        "while true; do dd if=/dev/urandom of=/tmp/dirty bs=1M count=16 2>/dev/null; echo dirty-pass >/dev/ttyS0; done &\n",
      );
      await until("two dirtying passes", async () => follower.passes.length >= 2 || undefined, 30_000);
      for (let move = 1; move <= 3; move += 1) {
        const target = row.workerId === "w1" ? "w2" : "w1";
        expect(await requestMigration(dirtier, target)).toBe(true);
        row = await vmWhere(dirtier, `move ${move} done`, (vm) => vm.state !== "migrating", 60_000);
        expect({ move, workerId: row.workerId, stateReason: row.stateReason }).toEqual({ move, workerId: target, stateReason: null });
        const movedAt = Date.now();
        // A guest whose memory arrived stale panics or hangs here instead.
        await until(
          `three ticks and a dirtying pass after move ${move}`,
          async () => (follower.ticks.filter((t) => t.at > movedAt).length >= 3 && follower.passes.some((at) => at > movedAt)) || undefined,
          20_000,
        );
      }
      expect(await cluster.serialText(dirtier)).not.toMatch(/Kernel panic|BUG:|Oops/);
      const uptimes = follower.ticks.map((t) => t.uptime);
      expect([...uptimes].sort((a, b) => a - b)).toEqual(uptimes);
    } finally {
      await follower.stop();
      await cluster.request(dirtier, "deleted");
    }
  });

  it("refuses a target without the vm's shared storage or without capacity, saying why; the vm keeps running", async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    const model = await db.worker.findUniqueOrThrow({ where: { id: vm.workerId! } });
    const { id: _id, ...row } = model;
    // Worker rows without a process: they only need to be seen by the target rules.
    await db.worker.create({ data: { ...row, id: "elsewhere", sharedStorage: "/srv/other-disks", lastHeartbeatAt: new Date(Date.now() + 60_000) } });
    await db.worker.create({ data: { ...row, id: "full", memoryMiBFree: 128, lastHeartbeatAt: new Date(Date.now() + 60_000) } });
    try {
      for (const [target, reason] of [
        ["elsewhere", `Worker elsewhere does not share storage with worker ${vm.workerId}`],
        ["full", "The vm needs 256 MiB of memory but the target host has 128 MiB free"],
      ] as const) {
        expect(await requestMigration(vmId, target)).toBe(true);
        const refused = await vmWhere(vmId, `refused for ${target}`, (r) => r.state === "running" && (r.stateReason ?? "").includes(reason));
        expect(refused.workerId).toBe(vm.workerId);
        expect(refused.stateReason).toMatch(new RegExp(`^live migration failed: cannot migrate vm ${vmId} to worker ${target}: `));
      }
    } finally {
      await db.worker.deleteMany({ where: { id: { in: ["elsewhere", "full"] } } });
    }
    expect(qemuProcesses(vmId)).toHaveLength(1);
  });

  it("cancels a migration that outlives its time limit: the guest stays on the source, the destination QEMU goes", async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    const source = vm.workerId!;
    const target = source === "w1" ? "w2" : "w1";
    // 4 MiB/s cannot carry the guest's ~90 MiB within 3 s.
    cluster.controller.migrations.settings = { downtimeLimitMs: 50, timeoutMs: 3000, maxBandwidth: 4 * 1024 * 1024 };
    try {
      expect(await requestMigration(vmId, target)).toBe(true);
      const after = await vmWhere(vmId, "back to running after the time limit", (row) => row.state === "running" && row.stateReason !== null, 60_000);
      expect(after.workerId).toBe(source);
      expect(after.stateReason).toContain("did not complete within 3000 ms and was cancelled");
      await until("no QEMU left at the destination", async () => !qemuProcesses(vmId).some((line) => line.includes(join(root, target))) || undefined, 15_000);
      expect(qemuProcesses(vmId)).toHaveLength(1);
    } finally {
      cluster.controller.migrations.settings = { downtimeLimitMs: 50, timeoutMs: 30_000 };
    }
  });

  it("drains a worker: its guest moves away, and the drain holds across heartbeats", async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    const source = vm.workerId!;
    const target = source === "w1" ? "w2" : "w1";
    // What POST /workers/{id}/drain does: the status, then a reconcile for each guest there.
    await db.worker.update({ where: { id: source }, data: { status: "draining" } });
    await cluster.controllerQueue.add("vm.reconcile", { vmId });
    const moved = await vmWhere(vmId, `moved off draining ${source}`, (row) => row.state === "running" && row.workerId === target, 60_000);
    expect(moved.stateReason).toBeNull();
    // The heartbeat keeps the admin's drain.
    await new Promise((resolve) => setTimeout(resolve, 2500));
    expect((await db.worker.findUniqueOrThrow({ where: { id: source } })).status).toBe("draining");
    const events = await db.vmEvent.findMany({ where: { vmId, kind: "migration" }, orderBy: { at: "asc" } });
    expect(events.some((e) => e.message === `worker ${source} is draining: live-migrating the vm away`)).toBe(true);
    await db.worker.update({ where: { id: source }, data: { status: "online" } });
  });

  it("keeps the guest on the source when the destination worker dies mid-migration", async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    const source = vm.workerId!;
    const target = source === "w1" ? "w2" : "w1";
    await db.vm.update({ where: { id: vmId }, data: { stateReason: null } });
    // Slow the move down so there is a "mid": a bandwidth cap for this migration only.
    cluster.controller.migrations.settings = { downtimeLimitMs: 50, timeoutMs: 30_000, maxBandwidth: 8 * 1024 * 1024 };
    try {
      expect(await requestMigration(vmId, target)).toBe(true);
      await until("the destination's incoming QEMU", async () => qemuProcesses(vmId).some((line) => line.includes(join(root, target))) || undefined, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await stopWorkerProcess(target, "SIGKILL");
      const after = await vmWhere(vmId, "running again on the source", (row) => row.state === "running", 60_000);
      expect(after.workerId).toBe(source);
      expect(after.stateReason).toMatch(new RegExp(`live migration to worker ${target} failed: .*; the vm keeps running on worker ${source}`));
      await until("no QEMU left at the destination", async () => !qemuProcesses(vmId).some((line) => line.includes(join(root, target))) || undefined, 10_000);
      const follower = followTicks(vmId);
      await until("the guest ticking on the source", async () => follower.ticks.length >= 2 || undefined, 10_000);
      await follower.stop();
      expect(qemuProcesses(vmId)).toHaveLength(1);
    } finally {
      cluster.controller.migrations.settings = { downtimeLimitMs: 50, timeoutMs: 30_000 };
    }
    startWorkerProcess(target);
    await until(`${target} back online`, async () => (await db.worker.count({ where: { status: "online" } })) === 2 || undefined);
  });

  it("never shows the vm running in two places when the source worker dies mid-migration", async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    const source = vm.workerId!;
    const target = source === "w1" ? "w2" : "w1";
    cluster.controller.migrations.settings = { downtimeLimitMs: 50, timeoutMs: 30_000, maxBandwidth: 8 * 1024 * 1024 };
    try {
      expect(await requestMigration(vmId, target)).toBe(true);
      await until("the destination's incoming QEMU", async () => qemuProcesses(vmId).some((line) => line.includes(join(root, target))) || undefined, 30_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      await stopWorkerProcess(source, "SIGKILL");
      // Until the vm settles, whenever the database says running there is one QEMU, on its worker.
      const settled = await until(
        "the vm running again (recovered) or failed",
        async () => {
          const row = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
          const processes = qemuProcesses(vmId);
          if (row.state === "running") {
            expect(processes.length).toBeLessThanOrEqual(1);
            if (processes.length === 1) expect(processes[0]).toContain(join(root, row.workerId!));
          }
          return row.state === "failed" || (row.state === "running" && row.workerId === target) ? row : undefined;
        },
        90_000,
        200,
      );
      if (settled.state === "running") {
        expect(qemuProcesses(vmId)).toHaveLength(1);
        expect(qemuProcesses(vmId)[0]).toContain(join(root, target));
      }
      const events = await db.vmEvent.findMany({ where: { vmId }, orderBy: { at: "asc" } });
      expect(events.map((e) => e.message).join("\n")).toContain(`worker ${source} stopped responding while the vm was migrating`);
    } finally {
      cluster.controller.migrations.settings = { downtimeLimitMs: 50, timeoutMs: 30_000 };
    }
  });
});
