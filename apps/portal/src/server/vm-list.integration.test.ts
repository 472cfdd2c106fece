// The vm list against a project of thousands of vms (bench/api's shape): what PostgreSQL does
// with its prepared statements there, where a test's handful of rows would not show it.
import { Prisma, queryPrepared } from "@ferry/db";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Viewer } from "./access.ts";
import { TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
let viewer: Viewer;

beforeAll(async () => {
  await portal.start();
  const tenant = await portal.tenant("fleet");
  viewer = (await portal.token(tenant.owner, tenant.projectId, { scopes: ["vms:read"] })).viewer;
  const base = Date.now() - 3000 * 1000;
  await portal.services.db.vm.createMany({
    data: Array.from({ length: 3000 }, (_, i) => ({
      name: `fleet-${i}`,
      ownerId: tenant.owner.id,
      projectId: tenant.projectId,
      image: "tiny",
      vcpus: 1,
      memoryMiB: 256,
      profile: "standard",
      cpuModel: "qemu64",
      state: "stopped",
      desiredState: "stopped",
      createdAt: new Date(base + i * 1000),
    })),
  });
  // The statistics autovacuum would gather after such an insert.
  await portal.services.db.$executeRaw`ANALYZE vm`;
});

afterAll(() => portal.stop());

it("lets PostgreSQL keep one plan for each kind of page instead of planning every request", async () => {
  // PostgreSQL plans a prepared statement's first five executions for their values, then keeps
  // a generic plan if it costs no more. With the page size as a parameter it costed the generic
  // plan for a tenth of the project's vms and planned every page anew (bench/api: 0.25 of
  // PostgreSQL's 0.4 ms per page).
  const caller = portal.as(viewer);
  let cursor = (await caller.vm.list({ limit: 50 })).nextCursor;
  for (let i = 0; i < 8 && cursor !== null; i += 1) {
    await caller.vm.list({ limit: 50 });
    cursor = (await caller.vm.list({ limit: 50, cursor })).nextCursor;
  }
  // One after another, the lists ran on the same pooled connection, which holds the statements.
  const plans = await queryPrepared<{ cursorPage: boolean; generic_plans: string; custom_plans: string }>(
    portal.services.db,
    Prisma.sql`SELECT statement LIKE '%c.id%' AS "cursorPage", generic_plans::text, custom_plans::text FROM pg_prepared_statements
      WHERE statement LIKE '%ORDER BY vm."createdAt" DESC, vm.id DESC%' AND statement NOT LIKE '%pg_prepared_statements%' ORDER BY 1`,
  );
  expect(plans.map((row) => row.cursorPage)).toEqual([false, true]);
  for (const row of plans) {
    expect(Number(row.generic_plans) + Number(row.custom_plans)).toBeGreaterThanOrEqual(8);
    expect(Number(row.generic_plans)).toBeGreaterThan(0);
  }
});

it("shows a vm's change at once, however its row was written", async () => {
  // The list reuses the views of rows whose version (xmin) it has seen: a write that sets no
  // updatedAt (raw SQL, another process) still makes a new row version.
  const caller = portal.as(viewer);
  const before = (await caller.vm.list({ limit: 5 })).items;
  expect((await caller.vm.list({ limit: 5 })).items).toEqual(before);
  const changed = before[2]!;
  await portal.services.db.$executeRaw`UPDATE vm SET state = 'running', accelerator = 'tcg', progress = '{"done": 3, "total": 4}' WHERE id = ${changed.id}`;
  const after = (await caller.vm.list({ limit: 5 })).items;
  expect(after.map((vm) => vm.id)).toEqual(before.map((vm) => vm.id));
  expect(after[2]).toEqual({ ...changed, state: "running", accelerator: "tcg", progress: { done: 3, total: 4 } });
  expect(after.filter((_, i) => i !== 2)).toEqual(before.filter((_, i) => i !== 2));
  await portal.services.db.$executeRaw`UPDATE vm SET state = 'deleted' WHERE id = ${changed.id}`;
  expect((await caller.vm.list({ limit: 5 })).items.map((vm) => vm.id)).not.toContain(changed.id);
});
