// Starts a whole Ferry (the launcher: PostgreSQL, Redis, portal, controller, console gateway,
// two workers) in a temporary state folder for a benchmark, and talks to its REST API.
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { type ProcessInfo, processes } from "@ferry/engine/testing";

const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** A TCP port on 127.0.0.1 that nothing listens on right now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export interface FerryCluster {
  baseUrl: string;
  token: string;
  /** The cluster's PostgreSQL, for a benchmark that fills it directly. */
  databaseUrl: string;
  api<T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  /** The CPU time each of the cluster's processes has used so far (Linux /proc), for `cpuUsedBetween`. */
  cpuSnapshot(): CpuSnapshot;
  stop(): Promise<void>;
}

/** The processes of a Ferry, as `cpuMs` counts them. */
export type ClusterRole = "portal" | "postgres" | "redis" | "controller" | "console" | "workers" | "launcher";

/** CPU time (ms, user + system) used so far by process id, with each process's role. */
export type CpuSnapshot = Map<number, { role: ClusterRole; cpuMs: number }>;

/**
 * CPU time (ms) each role used from one snapshot to a later one. A process that ended in
 * between (a database connection closed as idle) is left out: what it used after the first
 * snapshot is gone with it.
 */
export function cpuUsedBetween(before: CpuSnapshot, after: CpuSnapshot): Record<ClusterRole, number> {
  const used: Record<ClusterRole, number> = { portal: 0, postgres: 0, redis: 0, controller: 0, console: 0, workers: 0, launcher: 0 };
  for (const [pid, { role, cpuMs }] of after) used[role] += cpuMs - (before.get(pid)?.cpuMs ?? 0);
  return used;
}

/** Every process of this host by its id. */
function processTable(): Map<number, ProcessInfo> {
  return new Map(processes().map((info) => [info.pid, info]));
}

/** `root` and every process below it. */
function descendants(table: Map<number, ProcessInfo>, root: number): number[] {
  const found = [root];
  for (let i = 0; i < found.length; i += 1) for (const [pid, entry] of table) if (entry.parent === found[i]) found.push(pid);
  return found.filter((pid) => table.has(pid));
}

function readPid(file: string): number | undefined {
  try {
    return Number(readFileSync(file, "utf8").split("\n")[0]);
  } catch {
    return undefined;
  }
}

/** The role of a process the launcher started, from its command line. */
function roleOf(command: string): ClusterRole {
  if (command.includes("apps/worker/")) return "workers";
  if (command.includes("apps/controller/")) return "controller";
  if (command.includes("apps/console/")) return "console";
  if (command.includes("src/main.ts")) return "portal";
  return "launcher";
}

export async function startFerryCluster(extraEnv: Record<string, string> = {}): Promise<FerryCluster> {
  const stateDir = mkdtempSync("/tmp/ferry-bench-");
  chmodSync(stateDir, 0o755); // PostgreSQL runs as the postgres user and must enter it
  const port = await freePort();
  const token = randomBytes(24).toString("hex");
  const env = {
    ...process.env,
    FERRY_STATE_DIR: stateDir,
    FERRY_PORT: String(port),
    FERRY_CONSOLE_PORT: String(await freePort()),
    FERRY_POSTGRES_PORT: String(await freePort()),
    FERRY_REDIS_PORT: String(await freePort()),
    FERRY_CLUSTER_SECRET: randomBytes(32).toString("hex"),
    FERRY_ADMIN_TOKEN: token,
    // Benchmarks drive the API as fast as it answers; the per-token limit would measure itself.
    FERRY_API_RATE_LIMIT: "10000000",
    FERRY_ACCELERATOR: process.env.FERRY_ACCELERATOR ?? "tcg",
    FERRY_LOG_LEVEL: "warn",
    // Share the image cache the setup built, rather than a fresh state folder's empty one.
    FERRY_IMAGES_DIR: process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images",
    ...extraEnv,
  };
  const launcher: ChildProcess = spawn(join(repoRoot, "node_modules/.bin/tsx"), ["infra/launcher/main.ts"], {
    cwd: repoRoot,
    env,
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const exited = new Promise<void>((resolve) => launcher.once("exit", () => resolve()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`Ferry did not start within 10 minutes:\n${output.slice(-3000)}`)), 600_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      if (output.includes("Ferry is running")) {
        clearTimeout(timer);
        resolve();
      }
    };
    launcher.stdout?.on("data", onData);
    launcher.stderr?.on("data", onData);
    void exited.then(() => {
      clearTimeout(timer);
      reject(new Error(`the launcher exited before Ferry was running:\n${output.slice(-3000)}`));
    });
  });
  launcher.stdout?.resume();
  launcher.stderr?.resume();

  const baseUrl = `http://localhost:${port}`;
  // The launcher's own PostgreSQL: superuser `ferry` with the password it generated (infra/services.sh).
  const databaseUrl =
    extraEnv.FERRY_DATABASE_URL ??
    process.env.FERRY_DATABASE_URL ??
    `postgresql://ferry:${readFileSync(join(stateDir, "postgres", "password"), "utf8").trim()}@127.0.0.1:${env.FERRY_POSTGRES_PORT}/ferry`;
  return {
    baseUrl,
    token,
    databaseUrl,
    async api<T>(method: string, path: string, body?: unknown) {
      const response = await fetch(`${baseUrl}/api/v1${path}`, {
        method,
        headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      return { status: response.status, body: (text ? JSON.parse(text) : undefined) as T };
    },
    cpuSnapshot() {
      const table = processTable();
      const snapshot: CpuSnapshot = new Map();
      const add = (pid: number, role: ClusterRole) => {
        const entry = table.get(pid);
        if (entry) snapshot.set(pid, { role, cpuMs: entry.cpuMs });
      };
      for (const pid of launcher.pid === undefined ? [] : descendants(table, launcher.pid)) add(pid, roleOf(table.get(pid)!.command));
      // PostgreSQL and Redis run detached from the launcher (infra/services.sh); their pid files name them.
      const postmaster = readPid(join(stateDir, "postgres", "data", "postmaster.pid"));
      for (const pid of postmaster === undefined ? [] : descendants(table, postmaster)) add(pid, "postgres");
      const redis = readPid(join(stateDir, "redis", "redis.pid"));
      if (redis !== undefined) add(redis, "redis");
      return snapshot;
    },
    async stop() {
      launcher.kill("SIGTERM");
      await exited;
      rmSync(stateDir, { recursive: true, force: true });
    },
  };
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function round(value: number, digits = 1): number {
  const factor = 10 ** digits;
  return Math.round(value * factor) / factor;
}
