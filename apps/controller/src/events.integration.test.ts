// applyVmEvent on a real PostgreSQL database: which worker events change a vm, and which not.
import { randomUUID } from "node:crypto";

import type { Db } from "@ferry/db";
import { type TestDatabase, createTestDatabase, createTestProject, createTestVm, createTestWorker } from "@ferry/db/testing";
import type { VmStateEvent } from "@ferry/jobs";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { applyVmEvent } from "./events.ts";

const databaseServerUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";
const log = pino({ level: "silent" });

let database: TestDatabase;
let db: Db;
let ownerId: string;
let projectId: string;

beforeAll(async () => {
  database = await createTestDatabase(databaseServerUrl);
  db = database.db;
  ownerId = randomUUID();
  await db.user.create({ data: { id: ownerId, name: "Test", email: `${ownerId}@ferry.test` } });
  ({ projectId } = await createTestProject(db, ownerId));
  for (const id of ["w1", "w2"]) await createTestWorker(db, id);
});

afterAll(async () => {
  await database?.drop();
});

async function vmOn(workerId: string, state: string, generation: number) {
  return createTestVm(db, { ownerId, projectId, state, workerId, generation, operation: "start" });
}

function event(vmId: string, more: Partial<VmStateEvent>): VmStateEvent {
  return { vmId, workerId: "w1", state: "running", generation: 3, accelerator: "tcg", at: new Date().toISOString(), ...more };
}

describe("applyVmEvent", () => {
  it("writes the state, accelerator and a VmEvent, and clears the finished operation", async () => {
    const vm = await vmOn("w1", "booting", 3);
    expect(await applyVmEvent(db, event(vm.id, {}), log)).toBe("applied");
    const after = await db.vm.findUniqueOrThrow({ where: { id: vm.id }, include: { events: true } });
    expect(after).toMatchObject({ state: "running", accelerator: "tcg", operation: null, workerId: "w1" });
    expect(after.events.map((e) => e.message)).toEqual(["booting → running on worker w1"]);
  });

  it("a guest that powered itself off stays stopped: the desired state follows", async () => {
    const vm = await vmOn("w1", "running", 3);
    const poweredOff = event(vm.id, { state: "stopped", byGuest: true, reason: "the guest powered itself off" });
    expect(await applyVmEvent(db, poweredOff, log)).toBe("applied");
    expect(await db.vm.findUniqueOrThrow({ where: { id: vm.id } })).toMatchObject({
      state: "stopped",
      desiredState: "stopped",
      stateReason: "the guest powered itself off",
    });

    // A stop the worker carried out on request leaves the desired state to the requester.
    const other = await vmOn("w1", "stopping", 3);
    expect(await applyVmEvent(db, event(other.id, { state: "stopped" }), log)).toBe("applied");
    expect((await db.vm.findUniqueOrThrow({ where: { id: other.id } })).desiredState).toBe("running");
  });

  it("records a resume's progress as progressed (nothing to reconcile), and its end as applied", async () => {
    const vm = await vmOn("w1", "resuming", 3);
    const progress = { done: 1000, total: 4000 };
    expect(await applyVmEvent(db, event(vm.id, { state: "resuming" }), log)).toBe("progressed");
    expect(await applyVmEvent(db, event(vm.id, { state: "resuming", progress }), log)).toBe("progressed");
    expect(await db.vm.findUniqueOrThrow({ where: { id: vm.id } })).toMatchObject({ state: "resuming", progress, workerId: "w1" });
    expect(await applyVmEvent(db, event(vm.id, { state: "running" }), log)).toBe("applied");
    // A settled state reported again may clear an operation: the reconciler looks at it.
    expect(await applyVmEvent(db, event(vm.id, { state: "running" }), log)).toBe("applied");
  });

  it("ignores an event from a worker that does not own the vm", async () => {
    const vm = await vmOn("w2", "booting", 3);
    expect(await applyVmEvent(db, event(vm.id, { workerId: "w1" }), log)).toBe("ignored");
    expect((await db.vm.findUniqueOrThrow({ where: { id: vm.id } })).state).toBe("booting");
  });

  it("ignores an event older than the vm's generation, except a failure", async () => {
    const vm = await vmOn("w1", "stopping", 4);
    expect(await applyVmEvent(db, event(vm.id, { state: "running", generation: 3 }), log)).toBe("ignored");
    expect((await db.vm.findUniqueOrThrow({ where: { id: vm.id } })).state).toBe("stopping");

    const crash = event(vm.id, { state: "failed", generation: 3, reason: "QEMU exited unexpectedly (exit code 1)" });
    expect(await applyVmEvent(db, crash, log)).toBe("applied");
    const after = await db.vm.findUniqueOrThrow({ where: { id: vm.id } });
    // The crash happened under this worker process: the vm stays with it (its disk is there).
    expect(after).toMatchObject({ state: "failed", stateReason: "QEMU exited unexpectedly (exit code 1)", workerId: "w1" });
  });

  it("releases a vm whose guest was lost with a worker that restarted since", async () => {
    const vm = await vmOn("w1", "running", 3);
    await db.vm.update({ where: { id: vm.id }, data: { stateChangedAt: new Date(Date.now() - 120_000) } });
    const lost = event(vm.id, { state: "failed", reason: "worker w1 restarted; the guest was lost" });
    expect(await applyVmEvent(db, lost, log)).toBe("applied");
    const after = await db.vm.findUniqueOrThrow({ where: { id: vm.id } });
    expect(after).toMatchObject({ state: "failed", workerId: null, stateReason: "worker w1 restarted; the guest was lost" });
  });
});
