import { execFile } from "node:child_process";
import { randomUUID } from "node:crypto";
import { cp, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createTestDatabase, type TestDatabase } from "./testing.ts";

const serverUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";
const repoRoot = fileURLToPath(new URL("../../../", import.meta.url));
const prismaCli = createRequire(import.meta.url).resolve("prisma/build/index.js");
const bridge = fileURLToPath(new URL("../bridge/schema-engine.mjs", import.meta.url));

// Appended to a scratch copy of the schema: a change that stays valid whatever the real schema
// becomes, with one known migration.
const PROBE_MODEL = `
model MigrationProbe {
  id String @id

  @@map("migration_probe")
}
`;
const PROBE_SQL = `CREATE TABLE "migration_probe" ( "id" TEXT NOT NULL, CONSTRAINT "migration_probe_pkey" PRIMARY KEY ("id") );`;

interface PrismaRun {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs the Prisma CLI like a person would; a non-zero exit is returned, not thrown. */
function prisma(args: string[], options: { databaseUrl: string; cwd?: string }): Promise<PrismaRun> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [prismaCli, ...args],
      {
        cwd: options.cwd ?? repoRoot,
        // The scratch copy's config does not name the bridge, so name it for every run.
        env: { ...process.env, FERRY_DATABASE_URL: options.databaseUrl, PRISMA_SCHEMA_ENGINE_BINARY: bridge },
      },
      (error, stdout, stderr) => {
        const exitCode = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ exitCode, stdout, stderr });
      },
    );
  });
}

/** Migration SQL without comments and with whitespace collapsed, to compare statements. */
function statements(sql: string): string {
  return sql
    .split("\n")
    .filter((line) => !line.startsWith("--"))
    .join(" ")
    .replace(/\s+/g, " ")
    .trim();
}

async function query<T>(connectionString: string, sql: string, values: unknown[] = []): Promise<pg.QueryResult<T & pg.QueryResultRow>> {
  const client = new pg.Client({ connectionString });
  await client.connect();
  try {
    return await client.query<T & pg.QueryResultRow>(sql, values);
  } finally {
    await client.end();
  }
}

/** The bridge's shadow databases for `databaseUrl` still on the server (named in schema-engine.mjs). */
async function shadowDatabasesOf(databaseUrl: string): Promise<string[]> {
  const database = decodeURIComponent(new URL(databaseUrl).pathname.slice(1));
  const found = await query<{ datname: string }>(serverUrl, "SELECT datname FROM pg_database WHERE starts_with(datname, $1)", [
    `${database.slice(0, 30)}_shadow_`,
  ]);
  return found.rows.map((row) => row.datname);
}

describe("prisma/migrations and prisma/schema.prisma on a deployed database", () => {
  let testDb: TestDatabase;
  let scratch: string;

  beforeAll(async () => {
    testDb = await createTestDatabase(serverUrl);
    scratch = await mkdtemp(join(tmpdir(), "ferry-schema-"));
    const schema = await readFile(join(repoRoot, "prisma/schema.prisma"), "utf8");
    await writeFile(join(scratch, "schema.prisma"), schema + PROBE_MODEL);
  });

  afterAll(async () => {
    await testDb?.drop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("build the same database: migrate diff from the deployed database to the schema is empty", async () => {
    const run = await prisma(
      ["migrate", "diff", "--from-config-datasource", "--to-schema", "prisma/schema.prisma", "--script", "--exit-code"],
      { databaseUrl: testDb.url },
    );
    expect(
      run.exitCode,
      `prisma/schema.prisma differs from what prisma/migrations builds. Create a migration for the change ` +
        `(packages/db/README.md, "Create a migration"). The difference:\n${run.stdout}${run.stderr}`,
    ).toBe(0);
    expect(run.stdout).toContain("-- This is an empty migration.");
  });

  it("migrate diff prints the SQL of a schema change and exits 2 with --exit-code", async () => {
    const run = await prisma(
      ["migrate", "diff", "--from-config-datasource", "--to-schema", join(scratch, "schema.prisma"), "--script", "--exit-code"],
      { databaseUrl: testDb.url },
    );
    expect(run.exitCode, run.stderr).toBe(2);
    expect(statements(run.stdout)).toBe(PROBE_SQL);
  });

  it("migrate diff from the migrations folder (replayed in a shadow database) to the schema is empty", async () => {
    const run = await prisma(
      ["migrate", "diff", "--from-migrations", "prisma/migrations", "--to-schema", "prisma/schema.prisma", "--exit-code"],
      { databaseUrl: testDb.url },
    );
    expect(run.exitCode, `${run.stdout}${run.stderr}`).toBe(0);
    expect(run.stdout).toContain("No difference detected.");
    expect(await shadowDatabasesOf(testDb.url)).toEqual([]);
  });

  it("migrate diff between two schema files prints a summary of the change", async () => {
    const run = await prisma(
      ["migrate", "diff", "--from-schema", "prisma/schema.prisma", "--to-schema", join(scratch, "schema.prisma"), "--exit-code"],
      { databaseUrl: testDb.url },
    );
    expect(run.exitCode, run.stderr).toBe(2);
    expect(run.stdout).toContain("[+] Added tables");
    expect(run.stdout).toContain("migration_probe");
  });

  it("migrate status reports every migration applied", async () => {
    const migrationCount = (await readdir(join(repoRoot, "prisma/migrations"), { withFileTypes: true })).filter(
      (entry) => entry.isDirectory(),
    ).length;
    const run = await prisma(["migrate", "status"], { databaseUrl: testDb.url });
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain(`${migrationCount} migration${migrationCount === 1 ? "" : "s"} found in prisma/migrations`);
    expect(run.stdout).toContain("Database schema is up to date!");
  });
});

/** An empty database of its own on the test server (not deployed). */
async function createEmptyDatabase(): Promise<{ url: string; drop(): Promise<void> }> {
  const name = `ferry_test_${randomUUID().replaceAll("-", "").slice(0, 16)}`;
  await query(serverUrl, `CREATE DATABASE "${name}"`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      await query(serverUrl, `DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    },
  };
}

/**
 * A temporary folder with a copy of prisma/migrations, the schema plus PROBE_MODEL and a
 * prisma.config.ts, to run `migrate dev` without touching the repository.
 */
async function createScratchPrisma(shadowDatabaseUrl?: string): Promise<string> {
  const scratch = await mkdtemp(join(tmpdir(), "ferry-prisma-"));
  await cp(join(repoRoot, "prisma/migrations"), join(scratch, "migrations"), { recursive: true });
  const schema = await readFile(join(repoRoot, "prisma/schema.prisma"), "utf8");
  await writeFile(join(scratch, "schema.prisma"), schema + PROBE_MODEL);
  const shadow = shadowDatabaseUrl ? `, shadowDatabaseUrl: ${JSON.stringify(shadowDatabaseUrl)}` : "";
  // A plain object: the scratch folder cannot resolve `prisma/config` for defineConfig.
  await writeFile(
    join(scratch, "prisma.config.ts"),
    `export default { schema: "schema.prisma", migrations: { path: "migrations" }, datasource: { url: process.env.FERRY_DATABASE_URL${shadow} } };\n`,
  );
  return scratch;
}

describe("migrate dev on a scratch copy of prisma/", () => {
  let database: Awaited<ReturnType<typeof createEmptyDatabase>>;
  let databaseUrl: string;
  let scratch: string;

  beforeAll(async () => {
    // Empty, not deployed: migrate dev applies the history itself before writing a migration.
    database = await createEmptyDatabase();
    databaseUrl = database.url;
    scratch = await createScratchPrisma();
  });

  afterAll(async () => {
    await database?.drop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("--create-only applies the history, then writes a migration for just the schema change", async () => {
    const before = await readdir(join(scratch, "migrations"));
    const run = await prisma(["migrate", "dev", "--name", "probe", "--create-only"], { databaseUrl, cwd: scratch });
    expect(run.exitCode, `${run.stdout}${run.stderr}`).toBe(0);

    const created = (await readdir(join(scratch, "migrations"))).filter((name) => !before.includes(name));
    expect(created).toEqual([expect.stringMatching(/^\d{14}_probe$/)]);
    const sql = await readFile(join(scratch, "migrations", created[0] ?? "", "migration.sql"), "utf8");
    expect(statements(sql)).toBe(PROBE_SQL);

    const applied = await query<{ migration_name: string }>(
      databaseUrl,
      "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL ORDER BY migration_name",
    );
    expect(applied.rows.map((row) => row.migration_name)).toEqual(before.filter((name) => /^\d{14}_/.test(name)).sort());
  });

  it("then migrate dev applies it and the database matches the changed schema", async () => {
    const run = await prisma(["migrate", "dev"], { databaseUrl, cwd: scratch });
    expect(run.exitCode, `${run.stdout}${run.stderr}`).toBe(0);
    expect(run.stdout).toMatch(/_probe/);

    const diff = await prisma(
      ["migrate", "diff", "--from-config-datasource", "--to-schema", "schema.prisma", "--exit-code"],
      { databaseUrl, cwd: scratch },
    );
    expect(diff.exitCode, `${diff.stdout}${diff.stderr}`).toBe(0);
    expect(diff.stdout).toContain("No difference detected.");
  });

  it("leaves no shadow database behind", async () => {
    expect(await shadowDatabasesOf(databaseUrl)).toEqual([]);
  });
});

describe("migrate dev with a shadowDatabaseUrl in prisma.config.ts", () => {
  let database: Awaited<ReturnType<typeof createEmptyDatabase>>;
  let shadow: Awaited<ReturnType<typeof createEmptyDatabase>>;
  let scratch: string;

  beforeAll(async () => {
    database = await createEmptyDatabase();
    shadow = await createEmptyDatabase();
    scratch = await createScratchPrisma(shadow.url);
  });

  afterAll(async () => {
    await database?.drop();
    await shadow?.drop();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("reuses the shadow database run after run: the previous replay's tables are wiped first", async () => {
    const first = await prisma(["migrate", "dev", "--name", "probe"], { databaseUrl: database.url, cwd: scratch });
    expect(first.exitCode, `${first.stdout}${first.stderr}`).toBe(0);
    expect(first.stdout).toMatch(/_probe/);

    const second = await prisma(["migrate", "dev"], { databaseUrl: database.url, cwd: scratch });
    expect(second.exitCode, `${second.stdout}${second.stderr}`).toBe(0);
    expect(second.stdout).toContain("Already in sync");
  });
});
