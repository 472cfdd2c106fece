import { afterAll, beforeAll, describe, expect, it } from "vitest";

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
});
