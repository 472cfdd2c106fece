// The controller and two workers on real PostgreSQL, Redis and QEMU (tiny image, TCG). The
// controller runs in this process; workers are child processes (`node --import tsx`, one
// process each, so kill -9 really kills the worker and pdeathsig its QEMUs).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { createWriteStream, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type { Db } from "@ferry/db";
import { type TestDatabase, createTestDatabase } from "@ferry/db/testing";
import { type DesiredState, queueNames, redisKeys, workerJobId } from "@ferry/jobs";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { type Controller, startController } from "./controller.ts";
import { engineCpuCheck } from "./placement.ts";

const databaseServerUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";
const redisUrl = process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390";
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const workerMain = join(repoRoot, "apps/worker/src/main.ts");

const prefix = `ferry-test-${randomUUID()}`;
const root = mkdtempSync(join(tmpdir(), "ferry-cluster-"));
const workerTimeoutMs = 6000;
const clusterSecret = randomBytes(32).toString("hex");
const log = pino({ level: "info" }, createWriteStream(join(root, "controller.log")));

let database: TestDatabase;
let db: Db;
let redis: Redis;
let controllerQueue: Queue;
let controller: Controller;
const workers = new Map<string, ChildProcess>();
let ownerId: string;
let failed = false;

function startWorkerProcess(id: string): ChildProcess {
  const child = spawn(process.execPath, ["--import", "tsx", workerMain], {
    cwd: repoRoot,
    env: {
      ...process.env,
      FERRY_DATABASE_URL: database.url,
      FERRY_REDIS_URL: redisUrl,
      FERRY_QUEUE_PREFIX: prefix,
      FERRY_CLUSTER_SECRET: clusterSecret,
      // Guest states go to object storage every worker shares (the folder driver here).
      FERRY_STORAGE_PATH: join(root, "guest-states"),
      FERRY_WORKER_ID: id,
      FERRY_WORKER_STATE_DIR: join(root, id),
      FERRY_WORKER_VCPUS: "2",
      FERRY_WORKER_MEMORY_MIB: "1024",
      FERRY_IMAGES_DIR: imagesDir,
      FERRY_ACCELERATOR: "tcg",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = createWriteStream(join(root, `${id}.log`), { flags: "a" });
  child.stdout?.pipe(out);
  child.stderr?.pipe(out);
  workers.set(id, child);
  return child;
}

async function stopWorkerProcess(id: string): Promise<number | null> {
  const child = workers.get(id);
  if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  child.kill("SIGTERM");
  return exited;
}

/** QEMU processes started under this test's folder (every vm file lives there). */
function qemuProcesses(match = root): string[] {
  const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
  return out.split("\n").filter((line) => line.includes("qemu-system") && line.includes(match) && !line.includes("setpriv"));
}

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    last = await probe();
    if (last !== undefined && last !== false) return last as T;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)}); see logs in ${root}`);
}

const vmIn = (id: string, state: string) =>
  until(`vm ${id} ${state}`, async () => {
    const vm = await db.vm.findUniqueOrThrow({ where: { id } });
    return vm.state === state ? vm : undefined;
  });

async function createVm(name: string, memoryMiB = 256) {
  const vm = await db.vm.create({
    data: { name, ownerId, image: "tiny", vcpus: 1, memoryMiB, profile: "standard", cpuModel: "qemu64" },
  });
  await controllerQueue.add("vm.reconcile", { vmId: vm.id });
  return vm;
}

/** What the portal does for an action: desired state and generation in one update, then a reconcile job. */
async function request(vmId: string, desiredState: DesiredState, more: { reboot?: boolean } = {}) {
  await db.vm.update({
    where: { id: vmId },
    data: { desiredState, generation: { increment: 1 }, ...(more.reboot ? { rebootSeq: { increment: 1 } } : {}) },
  });
  await controllerQueue.add("vm.reconcile", { vmId });
}

async function serialText(vmId: string): Promise<string> {
  const entries = await redis.xrange(redisKeys.serialLog(prefix, vmId), "-", "+");
  return entries.map(([, fields]) => fields[1] ?? "").join("");
}

const ticks = (text: string) => [...text.matchAll(/ferry-tick (\d+)/g)].map((m) => Number(m[1]));

beforeAll(async () => {
  database = await createTestDatabase(databaseServerUrl);
  db = database.db;
  redis = new Redis(redisUrl);
  controllerQueue = new Queue(queueNames.controller, { connection: redis, prefix });
  ownerId = randomUUID();
  await db.user.create({ data: { id: ownerId, name: "Test", email: `${ownerId}@ferry.test` } });
  controller = await startController({
    db,
    redisUrl,
    prefix,
    reconcileIntervalMs: 500,
    workerTimeoutMs,
    cpuCheck: engineCpuCheck,
    log,
  });
});

afterEach((context) => {
  if (context.task.result?.state === "fail") failed = true;
});

afterAll(async () => {
  for (const id of workers.keys()) await stopWorkerProcess(id);
  await controller?.close();
  for (const line of qemuProcesses()) process.kill(Number(line.trim().split(/\s+/)[0]), "SIGKILL");
  for (const name of [queueNames.controller, queueNames.vmEvents, queueNames.worker("w1"), queueNames.worker("w2")]) {
    const queue = new Queue(name, { connection: redis, prefix });
    await queue.obliterate({ force: true });
    await queue.close();
  }
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  await controllerQueue?.close();
  redis?.disconnect();
  await database?.drop();
  // Keep the controller's and workers' logs when something failed: the error points there.
  if (!failed) rmSync(root, { recursive: true, force: true });
});

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
