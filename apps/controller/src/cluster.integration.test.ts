// The controller and two workers on real PostgreSQL, Redis and QEMU (tiny image, TCG). The
// controller runs in this process; workers are child processes (`node --import tsx`, one
// process each, so kill -9 really kills the worker and pdeathsig its QEMUs).
import { existsSync } from "node:fs";
import { join } from "node:path";

import type { Db } from "@ferry/db";
import { queueNames, workerJobId } from "@ferry/jobs";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { TestCluster, testServices } from "./test-cluster.ts";

const cluster = new TestCluster("ferry-cluster-", 200);
const { prefix, root, workers, qemuProcesses, until, vmIn, createVm, request, serialText, stopWorkerProcess } = cluster;
// Guest states go to object storage every worker shares (the folder driver here).
const startWorkerProcess = (id: string) => cluster.startWorkerProcess(id, { FERRY_STORAGE_PATH: join(root, "guest-states") });
let db: Db;
let redis: Redis;

const ticks = (text: string) => [...text.matchAll(/ferry-tick (\d+)/g)].map((m) => Number(m[1]));

beforeAll(async () => {
  // The worker timeout must outlast a killed worker's restart (node, tsx, the accelerator probe's
  // cache), which took up to ~18 s on a loaded host: a shorter one makes the controller give the
  // vm up before the restarted worker can report its guest lost.
  await cluster.start({ redisUrl: testServices.redisUrl, controller: { reconcileIntervalMs: 500, workerTimeoutMs: 20_000 } });
  ({ db, redis } = cluster);
});

afterEach((context) => {
  if (context.task.result?.state === "fail") cluster.failed = true;
});

afterAll(() => cluster.close());

describe("controller and two workers", () => {
  let first: string;
  let second: string;

  it("keeps a vm pending while no worker is alive, then places it on the first worker that starts", async () => {
    first = (await createVm("first")).id;
    const pending = await until("pending reason", async () => {
      const vm = await db.vm.findUniqueOrThrow({ where: { id: first } });
      return vm.stateReason ? vm : undefined;
    });
    expect(pending.state).toBe("pending");
    expect(pending.stateReason).toBe("no worker alive; waiting for one");

    startWorkerProcess("w1");
    const running = await vmIn(first, "running");
    expect(running.workerId).toBe("w1");
    expect(running.accelerator).toBe("tcg");
    const serial = await until("boot marker in the Redis stream", async () => (await serialText(first)).includes("FERRY-BOOT-OK") || undefined);
    expect(serial).toBe(true);
    expect(qemuProcesses(first)).toHaveLength(1);
    const events = await db.vmEvent.findMany({ where: { vmId: first }, orderBy: { at: "asc" } });
    expect(events.map((e) => e.message)).toContain("booting → running on worker w1");
  });

  it("spreads a second vm to the other worker", async () => {
    startWorkerProcess("w2");
    await until("w2 heartbeat", async () => (await db.worker.findUnique({ where: { id: "w2" } })) ?? undefined);
    second = (await createVm("second")).id;
    const running = await vmIn(second, "running");
    expect(running.workerId).toBe("w2");
  });

  it("keeps a vm too big for any worker pending, saying why, and deletes it without a worker", async () => {
    const big = await createVm("big", 4096);
    const pending = await until("placement refusal", async () => {
      const vm = await db.vm.findUniqueOrThrow({ where: { id: big.id } });
      return vm.stateReason ? vm : undefined;
    });
    expect(pending.state).toBe("pending");
    expect(pending.stateReason).toMatch(/^no worker has 4096 MiB free \(largest free: \d+ MiB\); waiting for capacity$/);
    await request(big.id, "deleted");
    await vmIn(big.id, "deleted");
  });

  it("runs one QEMU when vm.start is delivered twice", async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id: first } });
    const queue = new Queue(queueNames.worker("w1"), { connection: redis, prefix });
    const payload = {
      vm: { vmId: vm.id, image: vm.image, vcpus: vm.vcpus, memoryMiB: vm.memoryMiB, profile: "standard" as const, cpuModel: vm.cpuModel },
      generation: vm.generation,
    };
    // A redelivery under another job id, as at-least-once delivery allows.
    const redelivered = await queue.add("vm.start", payload, { jobId: `${workerJobId("vm.start", vm.id, vm.generation)}.again` });
    await until("redelivered job done", async () => (await redelivered.getState()) === "completed" || (await redelivered.isCompleted()) || undefined);
    await queue.close();
    expect(qemuProcesses(first)).toHaveLength(1);
    expect((await db.vm.findUniqueOrThrow({ where: { id: first } })).state).toBe("running");
  });

  it("suspends a vm to a guest state and resumes it where it stopped", async () => {
    await until("a few ticks", async () => (ticks(await serialText(first)).length >= 2 ? true : undefined));
    await request(first, "suspended");
    await vmIn(first, "suspended");
    // The paused QEMU is stopped just after the (committed) suspend is reported.
    await until("QEMU gone", async () => qemuProcesses(first).length === 0, 10_000);
    const before = ticks(await serialText(first));
    const lastTick = before[before.length - 1]!;
    const bootsBefore = (await serialText(first)).split("FERRY-BOOT-OK").length;

    await request(first, "running");
    await vmIn(first, "running");
    const after = await until("a tick after resume", async () => {
      const all = ticks(await serialText(first));
      return all.length > before.length ? all.slice(before.length) : undefined;
    });
    expect(after[0]).toBeGreaterThan(lastTick);
    expect(after[0]).toBeLessThan(lastTick + 10);
    expect((await serialText(first)).split("FERRY-BOOT-OK").length).toBe(bootsBefore);
  });

  it("reboots a vm in the same QEMU: rebooting, then running with a fresh boot", async () => {
    const boots = (await serialText(first)).split("FERRY-BOOT-OK").length;
    const pid = qemuProcesses(first)[0]!.trim().split(/\s+/)[0];
    await request(first, "running", { reboot: true });
    await until("a second boot marker", async () => (await serialText(first)).split("FERRY-BOOT-OK").length > boots || undefined);
    const vm = await vmIn(first, "running");
    expect(vm.rebootSeq).toBe(0);
    expect(qemuProcesses(first)[0]!.trim().split(/\s+/)[0]).toBe(pid);
    const messages = (await db.vmEvent.findMany({ where: { vmId: first } })).map((e) => e.message);
    expect(messages).toContain("running → rebooting: vm.reboot sent to worker w1");
    expect(messages).toContain("rebooting → running on worker w1");
  });

  it("stops a vm", async () => {
    await request(second, "stopped");
    const stopped = await vmIn(second, "stopped");
    expect(stopped.workerId).toBe("w2");
    expect(qemuProcesses(second)).toHaveLength(0);
  });

  it("deletes a stopped vm: its folder on the worker goes, the row says deleted", async () => {
    await request(second, "deleted");
    await vmIn(second, "deleted");
    expect(existsSync(join(root, "w2", "vms", second))).toBe(false);
  });

  it("reports guests lost when their worker restarts, and places them again", async () => {
    const before = await db.vm.findUniqueOrThrow({ where: { id: first } });
    expect(before.state).toBe("running");
    const host = before.workerId!;
    const exited = new Promise((resolve) => workers.get(host)!.once("exit", resolve));
    workers.get(host)!.kill("SIGKILL");
    await exited;
    startWorkerProcess(host);
    const lost = await until("the lost report", async () => {
      const events = await db.vmEvent.findMany({ where: { vmId: first, message: { contains: "restarted; the guest was lost" } } });
      return events[0];
    });
    expect(lost.message).toBe(`running → failed on worker ${host}: worker ${host} restarted; the guest was lost`);
    const again = await vmIn(first, "running");
    expect(again.workerId).not.toBeNull();
    expect(qemuProcesses(first)).toHaveLength(1);
  });

  it("re-places a vm whose worker is killed mid-boot", async () => {
    const third = (await createVm("third")).id;
    const booting = await until(
      "third booting",
      async () => {
        const vm = await db.vm.findUniqueOrThrow({ where: { id: third } });
        return (vm.state === "booting" || vm.state === "creating") && vm.workerId ? vm : undefined;
      },
      30_000,
    );
    const victim = booting.workerId!;
    const survivor = victim === "w1" ? "w2" : "w1";
    workers.get(victim)!.kill("SIGKILL");
    const running = await until("third running on the other worker", async () => {
      const vm = await db.vm.findUniqueOrThrow({ where: { id: third } });
      return vm.state === "running" ? vm : vm.state === "failed" ? vm : undefined;
    });
    expect(running.state).toBe("running");
    expect(running.workerId).toBe(survivor);
    const messages = (await db.vmEvent.findMany({ where: { vmId: third } })).map((e) => e.message).join("\n");
    expect(messages).toContain(`worker ${victim} stopped responding while the vm was`);
    expect(qemuProcesses(join(root, victim))).toHaveLength(0);
    expect((await db.worker.findUniqueOrThrow({ where: { id: victim } })).status).toBe("offline");
  });

  it("shuts a worker down gracefully: guests stopped and reported, worker offline, exit 0", async () => {
    const alive = [...workers.entries()].find(([, child]) => child.exitCode === null && child.signalCode === null)!;
    const [id] = alive;
    const onIt = await db.vm.findMany({ where: { workerId: id, state: "running" } });
    expect(onIt.length).toBeGreaterThan(0);
    expect(await stopWorkerProcess(id)).toBe(0);
    expect((await db.worker.findUniqueOrThrow({ where: { id } })).status).toBe("offline");
    expect(qemuProcesses()).toHaveLength(0);
    for (const vm of onIt) {
      const after = await until(`vm ${vm.id} reported`, async () => {
        const row = await db.vm.findUniqueOrThrow({ where: { id: vm.id } });
        return row.state !== "running" ? row : undefined;
      });
      expect(["stopped", "pending"]).toContain(after.state);
    }
  });
});
