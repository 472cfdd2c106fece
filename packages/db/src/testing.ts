import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import pg from "pg";

import { createDb, type Db } from "./client.ts";
import type { Prisma, Vm } from "./generated/client.ts";

const run = promisify(execFile);
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));

/** Apply every migration in prisma/migrations to `databaseUrl` with `prisma migrate deploy`. */
export async function migrateDatabase(databaseUrl: string): Promise<void> {
  const prismaCli = createRequire(import.meta.url).resolve("prisma/build/index.js");
  try {
    await run(process.execPath, [prismaCli, "migrate", "deploy"], {
      cwd: repoRoot,
      env: { ...process.env, FERRY_DATABASE_URL: databaseUrl },
    });
  } catch (error) {
    const { stdout = "", stderr = "" } = error as { stdout?: string; stderr?: string };
    throw new Error(
      `prisma migrate deploy failed on ${redact(databaseUrl)}:\n${stdout}${stderr}\nRun \`npm run db:migrate\` by hand to see the whole error.`,
    );
  }
}

/** A migrated database of its own for one test file; `drop()` it in afterAll. */
export interface TestDatabase {
  url: string;
  db: Db;
  drop(): Promise<void>;
}

/**
 * Create a fresh database named `ferry_test_<random>` on the server at `serverUrl` (a user that
 * may CREATE DATABASE, e.g. FERRY_TEST_DATABASE_URL), migrate it and open a client on it.
 */
export async function createTestDatabase(serverUrl: string): Promise<TestDatabase> {
  const name = `ferry_test_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  await onServer(serverUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  await migrateDatabase(url.toString());
  const db = createDb(url.toString());
  return {
    url: url.toString(),
    db,
    async drop() {
      await db.$disconnect();
      await onServer(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

async function onServer(serverUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

function redact(databaseUrl: string): string {
  const url = new URL(databaseUrl);
  if (url.password) url.password = "***";
  return url.toString();
}

/**
 * An organization with `ownerUserId` as its owner and one project with room for `quota`
 * (generous defaults), for tests that create vms or tokens directly in the database.
 */
export async function createTestProject(
  db: Db,
  ownerUserId: string,
  quota: Partial<{ vcpus: number; memoryMiB: number; vms: number; stateBytes: bigint }> = {},
): Promise<{ organizationId: string; projectId: string }> {
  const suffix = randomUUID().slice(0, 8);
  const organization = await db.organization.create({
    data: { name: `test-org-${suffix}`, memberships: { create: { userId: ownerUserId, role: "owner" } } },
  });
  const project = await db.project.create({
    data: {
      organizationId: organization.id,
      name: `test-project-${suffix}`,
      quotaVcpus: quota.vcpus ?? 1000,
      quotaMemoryMiB: quota.memoryMiB ?? 1_048_576,
      quotaVms: quota.vms ?? 100_000,
      quotaStateBytes: quota.stateBytes ?? 1n << 50n,
    },
  });
  return { organizationId: organization.id, projectId: project.id };
}

/**
 * Registers worker `id` as online, started a minute ago and heartbeating now, with a small TCG
 * host's capacity unless `row` says otherwise; for tests that need a Worker row without a worker.
 */
export async function createTestWorker(db: Db, id: string, row: Partial<Omit<Prisma.WorkerUncheckedCreateInput, "id">> = {}): Promise<void> {
  const now = new Date();
  await db.worker.create({
    data: {
      id,
      hostname: "test",
      consoleAddress: "127.0.0.1:1",
      vcpusTotal: 2,
      memoryMiBTotal: 1024,
      vcpusFree: 2,
      memoryMiBFree: 1024,
      accelerator: "tcg",
      cpuVendor: "GenuineIntel",
      cpuModelName: "test",
      cpuFlags: [],
      qemuVersion: "7.2.22",
      startedAt: new Date(now.getTime() - 60_000),
      lastHeartbeatAt: now,
      ...row,
    },
  });
}

/** Creates a vm of the tiny image with 1 vCPU and 256 MiB (the schema's defaults for the rest) unless `row` says otherwise. */
export async function createTestVm(
  db: Db,
  row: Pick<Prisma.VmUncheckedCreateInput, "ownerId" | "projectId"> & Partial<Prisma.VmUncheckedCreateInput>,
): Promise<Vm> {
  return db.vm.create({
    data: { name: "vm", image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", ...row },
  });
}
