import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export const repoRoot = fileURLToPath(new URL("../../", import.meta.url));

/** What the launcher was asked for: the FERRY_* variables it reads, with their defaults. */
export interface LauncherConfig {
  stateDir: string;
  port: number;
  consolePort: number;
  postgresPort: number;
  redisPort: number;
  databaseUrl?: string;
  redisUrl?: string;
  publicUrl: string;
  consolePublicUrl: string;
  adminEmail: string;
  adminPassword: string;
  clusterSecret: string;
  workerVcpus?: number;
  workerMemoryMiB?: number;
  /** FERRY_WORKER_SHARED_STORAGE: the folder w1 and w2 keep vm disks in, so guests live-migrate between them */
  workerSharedStorage: string;
  passThrough: Record<string, string>;
}

/** Where the apps find PostgreSQL and Redis for this run. */
export interface Cluster {
  databaseUrl: string;
  redisUrl: string;
}

export function launcherConfig(env: NodeJS.ProcessEnv): LauncherConfig {
  const problems: string[] = [];
  const port = (name: string, fallback: number) => {
    const value = Number(env[name] ?? fallback);
    if (!Number.isInteger(value) || value < 1 || value > 65535) problems.push(`${name}=${env[name]} is not a TCP port (1-65535)`);
    return value;
  };
  const positive = (name: string) => {
    if (env[name] === undefined) return undefined;
    const value = Number(env[name]);
    if (!Number.isInteger(value) || value < 1) problems.push(`${name}=${env[name]} is not a positive integer`);
    return value;
  };
  const stateDir = env.FERRY_STATE_DIR ?? "/var/lib/ferry";
  const config: LauncherConfig = {
    stateDir,
    port: port("FERRY_PORT", 3000),
    consolePort: port("FERRY_CONSOLE_PORT", 3001),
    postgresPort: port("FERRY_POSTGRES_PORT", 15432),
    redisPort: port("FERRY_REDIS_PORT", 16379),
    databaseUrl: env.FERRY_DATABASE_URL,
    redisUrl: env.FERRY_REDIS_URL,
    publicUrl: "",
    consolePublicUrl: "",
    adminEmail: env.FERRY_ADMIN_EMAIL ?? "admin@ferry.local",
    adminPassword: env.FERRY_ADMIN_PASSWORD ?? "ferry-admin-password",
    clusterSecret: env.FERRY_CLUSTER_SECRET ?? readSecret(join(stateDir, "cluster-secret"), problems),
    workerVcpus: positive("FERRY_WORKER_VCPUS"),
    workerMemoryMiB: positive("FERRY_WORKER_MEMORY_MIB"),
    workerSharedStorage: env.FERRY_WORKER_SHARED_STORAGE ?? join(stateDir, "shared-disks"),
    // Every other FERRY_* variable (log level, accelerator, CPU model…) goes to the apps as given.
    passThrough: Object.fromEntries(
      Object.entries(env).filter((entry): entry is [string, string] => entry[0].startsWith("FERRY_") && entry[1] !== undefined),
    ),
  };
  config.publicUrl = env.FERRY_PUBLIC_URL ?? `http://localhost:${config.port}`;
  config.consolePublicUrl = env.FERRY_CONSOLE_PUBLIC_URL ?? `ws://localhost:${config.consolePort}`;
  if (problems.length > 0) {
    throw new Error(`ferry launcher: fix these environment variables and start again:\n  ${problems.join("\n  ")}`);
  }
  return config;
}

/** The environment every app gets: the cluster wiring of the brief, nothing host-specific. */
export function clusterEnv(config: LauncherConfig, cluster: Cluster): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    NODE_ENV: "production",
    NEXT_TELEMETRY_DISABLED: "1",
    ...config.passThrough,
    FERRY_DATABASE_URL: cluster.databaseUrl,
    FERRY_REDIS_URL: cluster.redisUrl,
    FERRY_CLUSTER_SECRET: config.clusterSecret,
    FERRY_PORT: String(config.port),
    FERRY_PUBLIC_URL: config.publicUrl,
    FERRY_CONSOLE_PORT: String(config.consolePort),
    FERRY_CONSOLE_PUBLIC_URL: config.consolePublicUrl,
    FERRY_ADMIN_EMAIL: config.adminEmail,
    FERRY_ADMIN_PASSWORD: config.adminPassword,
    FERRY_IMAGES_DIR: process.env.FERRY_IMAGES_DIR ?? join(config.stateDir, "images"),
    FERRY_STATE_DIR: config.stateDir,
    // Both workers store guest states in the same folder, so either can resume a vm the other suspended.
    FERRY_STORAGE_PATH: config.passThrough.FERRY_STORAGE_PATH ?? join(config.stateDir, "guest-states"),
  };
}

function readSecret(file: string, problems: string[]): string {
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    problems.push(`FERRY_CLUSTER_SECRET is not set and ${file} is missing; run ./infra/ferry.sh start (its setup writes it)`);
    return "";
  }
}
