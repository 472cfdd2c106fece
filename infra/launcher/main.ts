// The local launcher behind `./infra/ferry.sh start` (setup has already run): one Ferry on this
// machine, in the foreground, until Ctrl-C.
//   1. PostgreSQL and Redis in private folders (unless FERRY_DATABASE_URL / FERRY_REDIS_URL given)
//   2. migrations
//   3. `next build` of the portal when its sources changed
//   4. portal, controller, console gateway and two workers, their output prefixed
//   5. on SIGINT/SIGTERM or when any of them dies: workers first (they stop their guests),
//      then the rest, then Redis and PostgreSQL
import { execFile } from "node:child_process";
import { mkdirSync } from "node:fs";
import os from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";

import { portalBuildIsCurrent, recordPortalBuild } from "./portal-build.ts";
import { type Cluster, clusterEnv, launcherConfig, repoRoot } from "./config.ts";
import { ProcessGroup } from "./process-group.ts";

const run = promisify(execFile);
const config = launcherConfig(process.env);
const bin = (name: string) => join(repoRoot, "node_modules", ".bin", name);
const say = (line: string) => process.stdout.write(`ferry    | ${line}\n`);

const startedServices: string[] = [];
const group = new ProcessGroup(join(config.stateDir, "logs"));
let stopping: Promise<void> | undefined;

process.on("SIGINT", () => void stop(0));
process.on("SIGTERM", () => void stop(0));

try {
  mkdirSync(join(config.stateDir, "logs"), { recursive: true });
  const cluster = await startServices();
  say("applying migrations");
  await run(bin("prisma"), ["migrate", "deploy"], { cwd: repoRoot, env: { ...process.env, FERRY_DATABASE_URL: cluster.databaseUrl } });
  await buildPortal(cluster);
  if (stopping) await stopping;
  startApps(cluster);
  await waitForPortal();
  // A process that died while the portal came up has already begun the shutdown.
  if (stopping) await stopping;
  say("");
  say(`Ferry is running: ${config.publicUrl}`);
  say(`sign in as ${config.adminEmail} / ${config.adminPassword}`);
  say(`state in ${config.stateDir}, logs in ${join(config.stateDir, "logs")}; Ctrl-C stops everything`);
} catch (error) {
  const { stderr = "" } = error as { stderr?: string };
  say(`failed to start: ${(error as Error).message}${stderr ? `\n${stderr}` : ""}`);
  await stop(1);
}

async function startServices(): Promise<Cluster> {
  const services = join(repoRoot, "infra", "services.sh");
  let databaseUrl = config.databaseUrl;
  let redisUrl = config.redisUrl;
  if (!databaseUrl) {
    say(`starting PostgreSQL in ${join(config.stateDir, "postgres")} on port ${config.postgresPort}`);
    startedServices.push("postgres");
    const { stdout } = await run(services, ["start-postgres", config.stateDir, String(config.postgresPort)]);
    databaseUrl = stdout.trim().replace(/^FERRY_DATABASE_URL=/, "");
  }
  if (!redisUrl) {
    say(`starting Redis in ${join(config.stateDir, "redis")} on port ${config.redisPort}`);
    startedServices.push("redis");
    const { stdout } = await run(services, ["start-redis", config.stateDir, String(config.redisPort)]);
    redisUrl = stdout.trim().replace(/^FERRY_REDIS_URL=/, "");
  }
  return { databaseUrl, redisUrl };
}

async function buildPortal(cluster: Cluster): Promise<void> {
  if (portalBuildIsCurrent()) return;
  say("building the portal (next build; only when its sources change)");
  await group.runToEnd("build", bin("next"), ["build"], {
    cwd: join(repoRoot, "apps", "portal"),
    env: clusterEnv(config, cluster),
  });
  recordPortalBuild();
}

function startApps(cluster: Cluster): void {
  const env = clusterEnv(config, cluster);
  const tsx = bin("tsx");
  // The portal's own server (apps/portal/src/main.ts): Next's build for pages, REST on node:http.
  group.start("portal", tsx, ["src/main.ts"], { cwd: join(repoRoot, "apps", "portal"), env: { ...env, NODE_ENV: "production" } });
  group.start("control", tsx, ["apps/controller/src/main.ts"], { cwd: repoRoot, env });
  group.start("console", tsx, ["apps/console/src/main.ts"], { cwd: repoRoot, env });
  const capacity = workerCapacity();
  mkdirSync(config.workerSharedStorage, { recursive: true });
  for (const id of ["w1", "w2"]) {
    const stateDir = join(config.stateDir, "workers", id);
    mkdirSync(stateDir, { recursive: true });
    group.start(id, tsx, ["apps/worker/src/main.ts"], {
      cwd: repoRoot,
      env: {
        ...env,
        FERRY_WORKER_ID: id,
        FERRY_WORKER_STATE_DIR: stateDir,
        FERRY_WORKER_VCPUS: String(capacity.vcpus),
        FERRY_WORKER_MEMORY_MIB: String(capacity.memoryMiB),
        FERRY_WORKER_SHARED_STORAGE: config.workerSharedStorage,
      },
      isWorker: true,
    });
  }
  group.onUnexpectedExit((name, code) => {
    say(`${name} exited on its own (${code}); stopping Ferry. Its log: ${join(config.stateDir, "logs", `${name}.log`)}`);
    void stop(1);
  });
}

/** Each of the two workers offers half of the host (at least 2 vCPUs, 1 GiB), unless set. */
function workerCapacity(): { vcpus: number; memoryMiB: number } {
  const halfMemoryMiB = Math.floor((os.totalmem() * 0.75) / 2 / 1024 / 1024 / 256) * 256;
  return {
    vcpus: config.workerVcpus ?? Math.max(2, Math.floor(os.cpus().length / 2)),
    memoryMiB: config.workerMemoryMiB ?? Math.max(1024, Math.min(halfMemoryMiB, 3072)),
  };
}

async function waitForPortal(): Promise<void> {
  const deadline = Date.now() + 120_000;
  const url = `http://127.0.0.1:${config.port}/`;
  while (Date.now() < deadline && !stopping) {
    try {
      await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(2_000) });
      return;
    } catch {
      await new Promise((resolve) => setTimeout(resolve, 500));
    }
  }
  if (!stopping) throw new Error(`the portal did not answer on ${url} within 120 s; see ${join(config.stateDir, "logs", "portal.log")}`);
}

function stop(exitCode: number): Promise<void> {
  stopping ??= (async () => {
    say("stopping: workers first, then portal, gateway and controller, then Redis and PostgreSQL");
    await group.stopAll();
    const services = join(repoRoot, "infra", "services.sh");
    if (startedServices.length > 0) {
      await run(services, ["stop", config.stateDir, ...startedServices.reverse()]).catch((error: Error) => say(`stopping services: ${error.message}`));
    }
    say("stopped");
    process.exit(exitCode);
  })();
  return stopping;
}
