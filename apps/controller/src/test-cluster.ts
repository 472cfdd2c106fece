// The harness of the cluster integration tests: a test database, a Redis prefix, the
// controller in this process and workers as child processes (`node --import tsx`, one process
// each, so kill -9 really kills the worker and, by pdeathsig, its QEMUs), and the waits and
// cleanup around them. Every file the cluster writes (vm folders, logs) lives under `root`.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes, randomUUID } from "node:crypto";
import { createWriteStream, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import type { Db } from "@ferry/db";
import { type TestDatabase, createTestDatabase, createTestProject } from "@ferry/db/testing";
import { type DesiredState, queueNames, redisKeys } from "@ferry/jobs";
import { Queue } from "bullmq";
import { Redis, type RedisOptions } from "ioredis";
import { type Logger, pino } from "pino";

import { type Controller, type ControllerOptions, startController } from "./controller.ts";
import { engineCpuCheck } from "./placement.ts";

/** The database server and Redis the tests use: CI's, else this machine's dev services. */
export const testServices = {
  databaseServerUrl: process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres",
  redisUrl: process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390",
  imagesDir: process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images",
};

const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const workerMain = join(repoRoot, "apps/worker/src/main.ts");

type VmRow = Awaited<ReturnType<Db["vm"]["findUniqueOrThrow"]>>;

export interface TestClusterStart {
  redisUrl: string;
  redisOptions?: RedisOptions;
  /** true when the test runs a Redis of its own: nothing of the test's is left in a shared one to remove */
  ownRedis?: boolean;
  controller: Pick<ControllerOptions, "reconcileIntervalMs" | "workerTimeoutMs" | "migration">;
}

/** One cluster per integration test file: `start` it in beforeAll, `close` it in afterAll. */
export class TestCluster {
  readonly prefix = `ferry-test-${randomUUID()}`;
  readonly root: string;
  /** Shared by every worker unless a worker's env says otherwise; guest states are sealed with it. */
  readonly clusterSecret = randomBytes(32).toString("hex");
  readonly workers = new Map<string, ChildProcess>();
  readonly log: Logger;
  database!: TestDatabase;
  db!: Db;
  redis!: Redis;
  controllerQueue!: Queue;
  controller!: Controller;
  ownerId!: string;
  projectId!: string;
  /** Set when a test failed: the folder (with the controller's and workers' logs) is kept. */
  failed = false;
  private redisUrl = "";
  private ownRedis = false;
  private workerTimeoutMs = 0;

  /** `folder` names the temporary folder; `pollMs` is how often `until` probes. */
  constructor(
    folder: string,
    private readonly pollMs: number,
  ) {
    this.root = mkdtempSync(join(tmpdir(), folder));
    this.log = pino({ level: "info" }, createWriteStream(join(this.root, "controller.log")));
  }

  /** Creates the test database and its owner, connects to Redis and starts the controller. */
  async start(options: TestClusterStart): Promise<void> {
    this.redisUrl = options.redisUrl;
    this.ownRedis = options.ownRedis ?? false;
    this.workerTimeoutMs = options.controller.workerTimeoutMs;
    this.database = await createTestDatabase(testServices.databaseServerUrl);
    this.db = this.database.db;
    this.redis = new Redis(options.redisUrl, options.redisOptions ?? {});
    this.controllerQueue = new Queue(queueNames.controller, { connection: this.redis, prefix: this.prefix });
    this.ownerId = randomUUID();
    await this.db.user.create({ data: { id: this.ownerId, name: "Test", email: `${this.ownerId}@ferry.test` } });
    ({ projectId: this.projectId } = await createTestProject(this.db, this.ownerId));
    this.controller = await startController({
      db: this.db,
      redisUrl: options.redisUrl,
      prefix: this.prefix,
      cpuCheck: engineCpuCheck,
      clusterSecret: this.clusterSecret,
      log: this.log,
      ...options.controller,
    });
  }

  /** Starts worker `id` with its own state folder; `env` adds to (or overrides) its environment. */
  startWorkerProcess = (id: string, env: Record<string, string> = {}): ChildProcess => {
    const child = spawn(process.execPath, ["--import", "tsx", workerMain], {
      cwd: repoRoot,
      env: {
        ...process.env,
        FERRY_DATABASE_URL: this.database.url,
        FERRY_REDIS_URL: this.redisUrl,
        FERRY_QUEUE_PREFIX: this.prefix,
        FERRY_CLUSTER_SECRET: this.clusterSecret,
        FERRY_WORKER_ID: id,
        FERRY_WORKER_STATE_DIR: join(this.root, id),
        FERRY_WORKER_VCPUS: "2",
        FERRY_WORKER_MEMORY_MIB: "1024",
        FERRY_IMAGES_DIR: testServices.imagesDir,
        FERRY_ACCELERATOR: "tcg",
        // The controller's figure: a worker cut off for that long pauses its guests.
        FERRY_WORKER_TIMEOUT_MS: String(this.workerTimeoutMs),
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    const out = createWriteStream(join(this.root, `${id}.log`), { flags: "a" });
    child.stdout?.pipe(out);
    child.stderr?.pipe(out);
    this.workers.set(id, child);
    return child;
  };

  /** Signals worker `id` (SIGTERM: a graceful shutdown) and resolves with its exit code once it exited. */
  stopWorkerProcess = async (id: string, signal: NodeJS.Signals = "SIGTERM"): Promise<number | null> => {
    const child = this.workers.get(id);
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
    child.kill(signal);
    return exited;
  };

  /** `ps` lines of this cluster's QEMU processes whose arguments mention `match` (a vm id, a worker folder). */
  qemuProcesses = (match = ""): string[] => {
    const out = execFileSync("ps", ["-eo", "pid=,args="], { encoding: "utf8" });
    return out
      .split("\n")
      .filter((line) => line.includes("qemu-system") && line.includes(this.root) && line.includes(match) && !line.includes("setpriv"));
  };

  /** Probes until it returns something other than undefined or false, and returns that. */
  until = async <T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = this.pollMs): Promise<T> => {
    const deadline = Date.now() + timeoutMs;
    let last: unknown;
    while (Date.now() < deadline) {
      last = await probe();
      if (last !== undefined && last !== false) return last as T;
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
    throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)}); see logs in ${this.root}`);
  };

  /** Waits until the vm's row passes `test`. */
  vmWhere = (id: string, what: string, test: (vm: VmRow) => boolean, timeoutMs = 60_000): Promise<VmRow> =>
    this.until(
      `vm ${id} ${what}`,
      async () => {
        const vm = await this.db.vm.findUniqueOrThrow({ where: { id } });
        return test(vm) ? vm : undefined;
      },
      timeoutMs,
    );

  /** Waits until the vm is in `state`. */
  vmIn = (id: string, state: string, timeoutMs?: number): Promise<VmRow> => this.vmWhere(id, state, (vm) => vm.state === state, timeoutMs);

  /** What the portal does to create a tiny vm: the row, then a reconcile job. */
  createVm = async (name: string, memoryMiB = 256): Promise<VmRow> => {
    const vm = await this.db.vm.create({
      data: { name, ownerId: this.ownerId, projectId: this.projectId, image: "tiny", vcpus: 1, memoryMiB, profile: "standard", cpuModel: "qemu64" },
    });
    await this.controllerQueue.add("vm.reconcile", { vmId: vm.id });
    return vm;
  };

  /** What the portal does for an action: desired state and generation in one update (a reboot, a resume's worker with them), then a reconcile job. */
  request = async (vmId: string, desiredState: DesiredState, more: { reboot?: boolean; targetWorkerId?: string } = {}): Promise<void> => {
    await this.db.vm.update({
      where: { id: vmId },
      data: {
        desiredState,
        generation: { increment: 1 },
        ...(more.reboot ? { rebootSeq: { increment: 1 } } : {}),
        ...(more.targetWorkerId ? { targetWorkerId: more.targetWorkerId } : {}),
      },
    });
    await this.controllerQueue.add("vm.reconcile", { vmId });
  };

  /** Everything the vm wrote to its serial port so far, from its Redis stream. */
  serialText = async (vmId: string): Promise<string> => {
    const entries = await this.redis.xrange(redisKeys.serialLog(this.prefix, vmId), "-", "+");
    return entries.map(([, fields]) => fields[1] ?? "").join("");
  };

  /**
   * Stops the workers and the controller, kills any QEMU left, removes the test's queues and
   * keys from a shared Redis and drops the database. `stopServices` stops what the test started
   * itself (its Redis, S3) once nothing uses them. The folder stays when a test failed.
   */
  async close(stopServices: () => Promise<void> = async () => {}): Promise<void> {
    for (const id of this.workers.keys()) await this.stopWorkerProcess(id);
    await this.controller?.close();
    for (const line of this.qemuProcesses()) process.kill(Number(line.trim().split(/\s+/)[0]), "SIGKILL");
    if (!this.ownRedis && this.redis) {
      for (const name of [queueNames.controller, queueNames.vmEvents, ...[...this.workers.keys()].map((id) => queueNames.worker(id))]) {
        const queue = new Queue(name, { connection: this.redis, prefix: this.prefix });
        await queue.obliterate({ force: true });
        await queue.close();
      }
      const keys = await this.redis.keys(`${this.prefix}:*`);
      if (keys.length > 0) await this.redis.del(...keys);
    }
    await this.controllerQueue?.close();
    this.redis?.disconnect();
    await stopServices();
    await this.database?.drop();
    // Keep the controller's and workers' logs when something failed: the error points there.
    if (!this.failed) rmSync(this.root, { recursive: true, force: true });
  }
}
