// Resume anywhere: suspend a vm on one worker, resume it on another that shares nothing with
// the first but object storage and the database (separate state folders), with the folder
// driver and with the S3 driver (s3rver), and the faults: a flipped byte in a stored part, a
// Redis restart during a suspend, a worker killed with -9 mid-upload, S3 unreachable.
//
// The controller runs in this process; workers are child processes. Redis is a server of this
// test's own (it is restarted), on a free port.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createWriteStream, existsSync, readFileSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

import type { Db } from "@ferry/db";
import { coldBootMemoryLayout } from "@ferry/engine";
import { GuestStateStore, LocalFolderStore } from "@ferry/storage";
import { S3Store } from "@ferry/storage/s3";
import { type S3TestServer, startS3TestServer } from "@ferry/storage/testing";
import { Redis } from "ioredis";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";

import { TestCluster } from "./test-cluster.ts";
import { typeOnConsole } from "./test-support.ts";

const cluster = new TestCluster("ferry-resume-", 100);
const { root, clusterSecret, workers, qemuProcesses, until, vmIn, createVm, request, serialText, stopWorkerProcess } = cluster;
const folderStorage = join(root, "guest-states");
const startWorkerProcess = (id: string, storage: Record<string, string>) =>
  cluster.startWorkerProcess(id, { FERRY_GUEST_STATES_KEEP: "2", FERRY_GUEST_STATE_SWEEP_MS: "1000", ...storage });

let db: Db;
let redisPort: number;
let redisServer: ChildProcess | undefined;
let s3: S3TestServer | undefined;

// ── Services ──────────────────────────────────────────────────────────────────────────────

async function freePort(): Promise<number> {
  const server = createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as { port: number }).port;
  server.close();
  return port;
}

async function startRedis(): Promise<void> {
  const child = spawn("redis-server", ["--port", String(redisPort), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(createWriteStream(join(root, "redis.log"), { flags: "a" }));
  redisServer = child;
  await until("redis-server listening", async () => {
    const probe = new Redis(redisPort, "127.0.0.1", { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    try {
      await probe.connect();
      return (await probe.ping()) === "PONG";
    } catch {
      return false;
    } finally {
      probe.disconnect();
    }
  }, 10_000);
}

async function stopRedis(): Promise<void> {
  const child = redisServer;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, "exit");
  child.kill("SIGTERM");
  await exited;
}

const ticks = (text: string) => [...text.matchAll(/ferry-tick (\d+) uptime=([\d.]+)/g)].map((m) => ({ n: Number(m[1]), uptime: Number(m[2]) }));

async function lastTick(vmId: string) {
  return until(`ticks of ${vmId}`, async () => ticks(await serialText(vmId)).at(-1));
}

/** Types on the vm's console on the worker that runs it (through its VNC socket). */
async function typeOn(vmId: string, text: string): Promise<void> {
  const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
  await typeOnConsole(join(root, vm.workerId!, "vms", vmId, "vnc.sock"), text);
}

/** Suspends a running vm and resumes it on the other worker; checks the guest carried on. */
async function suspendHereResumeThere(vmId: string, marker: string) {
  const before = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
  const from = before.workerId!;
  await request(vmId, "suspended");
  const suspended = await vmIn(vmId, "suspended");
  expect(suspended.workerId).toBeNull();
  expect(suspended.guestStateId).not.toBeNull();
  expect(suspended.guestStateId).not.toBe(before.guestStateId);
  // The slot is freed: the paused QEMU and the vm's folder go just after the report.
  await until("QEMU and folder gone", async () => qemuProcesses(vmId).length === 0 && !existsSync(join(root, from, "vms", vmId)), 10_000);
  const row = await db.guestState.findUniqueOrThrow({ where: { id: suspended.guestStateId! } });
  // The layout the vm's cold boot chose on this QEMU, kept by every resume since.
  const { qemuVersion } = await db.worker.findUniqueOrThrow({ where: { id: from } });
  const memoryLayout = coldBootMemoryLayout("tcg", qemuVersion);
  expect(before.memoryLayout).toBe(memoryLayout);
  expect(row).toMatchObject({ vmId, workerId: from, cpuModel: "qemu64", accelerator: "tcg", memoryMiB: 256, vcpus: 1, qemuVersion, memoryLayout });
  expect(row.storedBytes).toBeGreaterThan(0n);
  const stopped = await lastTick(vmId);

  const to = [...workers.keys()].find((id) => id !== from && workers.get(id)!.exitCode === null && workers.get(id)!.signalCode === null)!;
  await request(vmId, "running", { targetWorkerId: to });
  const running = await vmIn(vmId, "running");
  expect(running.workerId).toBe(to);
  expect(running.targetWorkerId).toBeNull();
  expect(running.memoryLayout).toBe(memoryLayout);
  const after = await until("a tick after the resume", async () => ticks(await serialText(vmId)).find((t) => t.n > stopped.n));
  // The counter and uptime go on from where they stopped: no reboot, no reset.
  expect(after.n).toBeLessThan(stopped.n + 5);
  expect(after.uptime).toBeGreaterThan(stopped.uptime);
  expect((await serialText(vmId)).split("FERRY-BOOT-OK").length).toBe(2);
  // The file written before the suspend is on the disk here (page cache dropped: read from disk).
  await typeOn(vmId, `sync; echo 3 >/proc/sys/vm/drop_caches; cat /data/${marker} >/dev/ttyS0\n`);
  await until(`${marker} read back from /data`, async () => (await serialText(vmId)).includes(`${marker}-content`));
  return { from, to, stateId: suspended.guestStateId! };
}

/** Boots a vm and writes a file to its disk through the console. */
async function bootAndWrite(name: string, marker: string): Promise<string> {
  const vm = await createVm(name);
  await vmIn(vm.id, "running");
  await until("a few ticks", async () => ticks(await serialText(vm.id)).length >= 2);
  await typeOn(vm.id, `echo ${marker}-content >/data/${marker}; sync\n`);
  return vm.id;
}

beforeAll(async () => {
  redisPort = await freePort();
  await startRedis();
  await cluster.start({
    redisUrl: `redis://127.0.0.1:${redisPort}`,
    redisOptions: { maxRetriesPerRequest: null },
    ownRedis: true,
    controller: { reconcileIntervalMs: 300, workerTimeoutMs: 5000 },
  });
  ({ db } = cluster);
});

afterEach((context) => {
  if (context.task.result?.state === "fail") cluster.failed = true;
});

afterAll(() =>
  cluster.close(async () => {
    await stopRedis();
    await s3?.close();
  }),
);

// ── Folder driver ─────────────────────────────────────────────────────────────────────────

describe("resume anywhere, folder driver", () => {
  const storage = { FERRY_STORAGE_DRIVER: "folder", FERRY_STORAGE_PATH: folderStorage };
  const folderStates = () => new GuestStateStore({ store: new LocalFolderStore(folderStorage), secret: clusterSecret, clusterId: "ferry" });
  let vmId: string;

  it("suspends on one worker and resumes on the other: counter, uptime and disk file carry on", async () => {
    startWorkerProcess("fa", storage);
    startWorkerProcess("fb", storage);
    await until("both workers", async () => (await db.worker.count({ where: { status: "online" } })) === 2);
    vmId = await bootAndWrite("folder", "note1");
    const { stateId } = await suspendHereResumeThere(vmId, "note1");
    expect(existsSync(join(folderStorage, "guest-states", vmId, stateId, "manifest.json"))).toBe(true);
  });

  it("refuses a guest state with one flipped byte, naming the part; the vm stays suspended", async () => {
    await request(vmId, "suspended");
    const suspended = await vmIn(vmId, "suspended");
    const part = join(folderStorage, "guest-states", vmId, suspended.guestStateId!, "memory", "1");
    const bytes = readFileSync(part);
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(part, bytes);

    await request(vmId, "running");
    const refused = await until("the resume refused", async () => {
      const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
      return vm.state === "suspended" && vm.stateReason?.startsWith("resume refused") ? vm : undefined;
    });
    expect(refused.stateReason).toContain("part memory/1 failed its checksum");
    expect(refused.desiredState).toBe("suspended");
    expect(refused.workerId).toBeNull();
    expect(qemuProcesses(vmId)).toHaveLength(0);

    // Repaired, the same state resumes: nothing was lost.
    bytes[1000] = bytes[1000]! ^ 0xff;
    writeFileSync(part, bytes);
    await request(vmId, "running");
    await vmIn(vmId, "running");
  });

  it("keeps the last 2 guest states, in storage and in the database", async () => {
    await until("2 guest states kept", async () => (await db.guestState.count({ where: { vmId } })) === 2);
    const rows = await db.guestState.findMany({ where: { vmId }, orderBy: { createdAt: "desc" } });
    const listed = await folderStates().list(vmId);
    expect(listed.map((s) => s.stateId)).toEqual(rows.map((r) => r.id));
  });

  it("completes a suspend during which Redis restarts", async () => {
    await request(vmId, "suspended");
    await until("suspending", async () => (await db.vm.findUniqueOrThrow({ where: { id: vmId } })).state === "suspending", 20_000);
    await stopRedis();
    await startRedis();
    const suspended = await vmIn(vmId, "suspended", 120_000);
    const manifest = join(folderStorage, "guest-states", vmId, suspended.guestStateId!, "manifest.json");
    expect(existsSync(manifest)).toBe(true);
    // The serial log lived in Redis; the guest's counter is checked from here on.
    await request(vmId, "running");
    await vmIn(vmId, "running", 120_000);
    await until("ticks after the resume", async () => ticks(await serialText(vmId)).length >= 2);
  });

  it("deletes a suspended vm's guest states with it (no worker holds it: the sweeper does)", async () => {
    await request(vmId, "suspended");
    await vmIn(vmId, "suspended");
    // Older states are pruned just after the suspend is reported.
    await until("2 guest states kept", async () => (await db.guestState.count({ where: { vmId } })) === 2);
    await request(vmId, "deleted");
    await vmIn(vmId, "deleted");
    await until("the states gone", async () => !existsSync(join(folderStorage, "guest-states", vmId)) && (await db.guestState.count({ where: { vmId } })) === 0);
  });
});

// ── S3 driver ─────────────────────────────────────────────────────────────────────────────

describe("resume anywhere, S3 driver (s3rver)", () => {
  let storage: Record<string, string>;
  let bucket: string;
  let vmId: string;
  let committed: string;
  let states: GuestStateStore;

  it("suspends on one worker and resumes on the other: counter, uptime and disk file carry on", async () => {
    await stopWorkerProcess("fa");
    await stopWorkerProcess("fb");
    s3 = await startS3TestServer();
    bucket = await s3.createBucket();
    storage = {
      FERRY_STORAGE_DRIVER: "s3",
      FERRY_S3_ENDPOINT: s3.endpoint,
      FERRY_S3_BUCKET: bucket,
      FERRY_S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
      FERRY_S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
      FERRY_S3_FORCE_PATH_STYLE: "true",
    };
    states = new GuestStateStore({
      store: new S3Store({ endpoint: s3.endpoint, region: "us-east-1", bucket, forcePathStyle: true, ...s3.credentials }),
      secret: clusterSecret,
      clusterId: "ferry",
    });
    startWorkerProcess("sa", storage);
    startWorkerProcess("sb", storage);
    await until("both s3 workers", async () => (await db.worker.count({ where: { id: { in: ["sa", "sb"] }, status: "online" } })) === 2);
    vmId = await bootAndWrite("s3", "note2");
    committed = (await suspendHereResumeThere(vmId, "note2")).stateId;
    expect((await states.list(vmId)).map((s) => s.stateId)).toEqual([committed]);
  });

  it("kill -9 of the worker mid-upload: no partial state, the vm resumes from its previous one", async () => {
    const before = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
    const victim = before.workerId!;
    const tickAtResume = (await lastTick(vmId)).n;
    // Freeze the S3 server so the upload is in flight, then kill the worker under it.
    process.kill(s3!.pid, "SIGSTOP");
    try {
      await request(vmId, "suspended");
      await until("suspending", async () => (await db.vm.findUniqueOrThrow({ where: { id: vmId } })).state === "suspending", 20_000);
      await new Promise((resolve) => setTimeout(resolve, 500));
      workers.get(victim)!.kill("SIGKILL");
      await once(workers.get(victim)!, "exit");
    } finally {
      process.kill(s3!.pid, "SIGCONT");
    }
    const recovered = await vmIn(vmId, "suspended", 30_000);
    expect(recovered.stateReason).toContain(`worker ${victim} stopped responding while the vm was suspending`);
    expect(recovered.guestStateId).toBe(committed);
    expect((await states.list(vmId)).map((s) => s.stateId)).toEqual([committed]);

    await request(vmId, "running");
    const running = await vmIn(vmId, "running");
    expect(running.workerId).not.toBe(victim);
    // It continues from the state committed before: its counter goes back before the kill.
    const fromOld = await until("a tick after resuming the previous state", async () => {
      const all = ticks(await serialText(vmId));
      const index = all.findLastIndex((t) => t.n <= tickAtResume && t.n < all[all.length - 1]!.n);
      return index >= 0 && all.length > index + 1 ? all : undefined;
    });
    expect(fromOld.length).toBeGreaterThan(0);
    expect(qemuProcesses(join(root, victim))).toHaveLength(0);
    // The interrupted upload's parts are collected (no manifest, no writer left).
    const orphans = await states.collectOrphans({ olderThanMs: 0 });
    expect(orphans.every((o) => o.vmId === vmId && o.stateId !== committed)).toBe(true);
  });

  it("S3 unreachable: the suspend fails cleanly and the vm keeps running with the reason", async () => {
    await s3!.close();
    s3 = undefined;
    await request(vmId, "suspended");
    const refused = await until("the suspend refused", async () => {
      const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId } });
      return vm.state === "running" && vm.stateReason?.startsWith("suspend failed") ? vm : undefined;
    });
    expect(refused.desiredState).toBe("running");
    expect(refused.stateReason).toMatch(/unreachable|refused|ECONNREFUSED/i);
    expect(qemuProcesses(vmId)).toHaveLength(1);
    const tick = (await lastTick(vmId)).n;
    await until("ticks go on", async () => (await lastTick(vmId)).n > tick);
  });
});
