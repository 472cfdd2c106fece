import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { isoTimestampSql, queryPrepared } from "./client.ts";
import { Prisma } from "./generated/client.ts";
import { createTestDatabase, createTestProject, type TestDatabase } from "./testing.ts";

const serverUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";

describe("createDb on a freshly migrated database", () => {
  let testDb: TestDatabase;

  beforeAll(async () => {
    testDb = await createTestDatabase(serverUrl);
  });

  afterAll(async () => {
    await testDb?.drop();
  });

  it("stores a user and their vm and reads them back with the schema's defaults", async () => {
    const { db } = testDb;
    const user = await db.user.create({
      data: { id: "user-1", name: "Ada", email: "ada@example.test" },
    });
    const { projectId } = await createTestProject(db, user.id);
    await db.vm.create({
      data: {
        name: "build-box",
        ownerId: user.id,
        projectId,
        image: "tiny",
        vcpus: 1,
        memoryMiB: 256,
        profile: "standard",
        cpuModel: "qemu64",
        events: { create: { kind: "created", message: "vm build-box created" } },
      },
    });

    const found = await db.user.findUniqueOrThrow({
      where: { email: "ada@example.test" },
      include: { vms: { include: { events: true } } },
    });

    expect(found.role).toBe("member");
    expect(found.vms).toHaveLength(1);
    const [vm] = found.vms;
    expect(vm).toMatchObject({
      name: "build-box",
      desiredState: "running",
      state: "pending",
      generation: 0,
      workerId: null,
    });
    expect(vm?.events.map((event) => event.kind)).toEqual(["created"]);
    expect(typeof vm?.events[0]?.id).toBe("bigint");
  });

  it("enforces the unique email from the migration", async () => {
    await expect(
      testDb.db.user.create({ data: { id: "user-2", name: "Copy", email: "ada@example.test" } }),
    ).rejects.toMatchObject({ code: "P2002" });
  });

  it("records the applied migration in Prisma's history table", async () => {
    const rows = await testDb.db.$queryRaw<{ migration_name: string }[]>`
      SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL`;
    expect(rows.map((row) => row.migration_name)).toContainEqual(expect.stringMatching(/_init$/));
  });

  it("runs queryPrepared as a prepared statement on the client's own pool, timestamps as toISOString gives them", async () => {
    const { db } = testDb;
    const vm = await db.vm.findFirstOrThrow({ where: { name: "build-box" } });
    // Milliseconds that a zone or precision slip would change in the text.
    const at = new Date("2026-03-04T05:06:07.089Z");
    await db.vm.update({ where: { id: vm.id }, data: { createdAt: at } });
    const read = () =>
      queryPrepared<{ id: string; vcpus: number; createdAt: string }>(db, Prisma.sql`SELECT id, vcpus, ${isoTimestampSql(`"createdAt"`)} AS "createdAt" FROM vm WHERE id = ${vm.id}`);
    expect(await read()).toEqual([{ id: vm.id, vcpus: 1, createdAt: at.toISOString() }]);
    expect(await read()).toEqual([{ id: vm.id, vcpus: 1, createdAt: at.toISOString() }]);
    // One after another, the queries ran on the same pooled connection, which holds the statement.
    const prepared = await queryPrepared<{ name: string; statement: string }>(db, Prisma.sql`SELECT name, statement FROM pg_prepared_statements`);
    expect(prepared).toContainEqual({ name: expect.stringMatching(/^ferry_[0-9a-f]{24}$/), statement: expect.stringContaining(`FROM vm WHERE id = $1`) });
  });

  it("runs queryPrepared on a client another copy of the module made (the portal's server and Next's bundle share one)", async () => {
    const anotherCopy = "./client.ts?another-copy";
    const copy = (await import(/* @vite-ignore */ anotherCopy)) as typeof import("./client.ts");
    expect(copy.queryPrepared).not.toBe(queryPrepared);
    const db = copy.createDb(testDb.url);
    try {
      expect(await queryPrepared<{ answer: number }>(db, Prisma.sql`SELECT ${42}::int AS answer`)).toEqual([{ answer: 42 }]);
    } finally {
      await db.$disconnect();
    }
  });
});
