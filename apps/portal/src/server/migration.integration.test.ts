// POST /vms/{id}/migrate and /workers/{id}/drain against a real PostgreSQL and Redis: what is
// refused (with the reason and status), what is written for the controller, and that a
// second migration of the same vm is refused while the first runs.
import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
let services: TestPortal["services"];
let adminToken: string;
let memberToken: string;
let memberId: string;
let projectId: string;

beforeAll(async () => {
  await portal.start();
  ({ services, adminToken } = portal);
  const tenant = await portal.tenant("movers");
  memberId = tenant.owner.id;
  projectId = tenant.projectId;
  memberToken = (await portal.token(tenant.owner, projectId)).secret;
  for (const [id, more] of [
    ["w1", {}],
    ["w2", {}],
    ["w3", { sharedStorage: null }],
    ["w4", { memoryMiBFree: 100 }],
  ] as const) {
    await portal.addWorker(id, { hostname: "host", vcpusTotal: 2, vcpusFree: 2, memoryMiBTotal: 1024, memoryMiBFree: 1024, cpuModelName: "test", sharedStorage: "/srv/ferry-disks", ...more });
  }
});

afterAll(() => portal.stop());

const rest = (path: string, token: string, body?: unknown) => portal.rest(path, { method: "POST", token, body: JSON.stringify(body ?? {}) });

async function runningVm(ownerId: string, workerId = "w1", inProject = projectId) {
  return portal.vmRow(inProject, ownerId, { name: `vm-${randomUUID().slice(0, 8)}`, state: "running", workerId, accelerator: "tcg" });
}

describe("POST /vms/{id}/migrate", () => {
  it("starts a migration, and refuses a second one of the same vm with 409", async () => {
    const vm = await runningVm(memberId);
    const first = await rest(`/vms/${vm.id}/migrate`, memberToken, { workerId: "w2" });
    expect(first.status).toBe(200);
    expect(await first.json()).toMatchObject({ id: vm.id, state: "migrating", operation: "migrate", workerId: "w1", targetWorkerId: "w2" });
    const jobs = await services.controllerQueue.getJobs(["waiting", "delayed", "active"]);
    expect(jobs.some((job) => job.data.vmId === vm.id)).toBe(true);

    const second = await rest(`/vms/${vm.id}/migrate`, memberToken, {});
    expect(second.status).toBe(409);
    expect((await second.json()).error).toMatchObject({
      code: "action_refused",
      message: `vm ${vm.name} is already being migrated to worker w2; wait for it to finish, then ask again`,
    });
    const events = await services.db.vmEvent.findMany({ where: { vmId: vm.id, kind: "action.migrate" } });
    expect(events).toHaveLength(1);
  });

  it.each([
    ["w3", "Worker w3 does not share storage with worker w1 (local disks vs /srv/ferry-disks)."],
    ["w4", "The vm needs 256 MiB of memory but the target host has 100 MiB free."],
    ["w1", "already runs on worker w1"],
    ["w9", "worker w9 does not exist. Choose one of: w1, w2, w3, w4."],
  ])("refuses target %s with the reason, and leaves the vm running", async (target, reason) => {
    const vm = await runningVm(memberId);
    const response = await rest(`/vms/${vm.id}/migrate`, memberToken, { workerId: target });
    expect(response.status).toBe(409);
    const { error } = await response.json();
    expect(error.code).toBe("migration_refused");
    expect(error.message).toContain(reason);
    expect(await services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).toMatchObject({ state: "running", operation: null, targetWorkerId: null });
  });

  it("refuses a worker with an older QEMU, and for a TCG vm with exact RAM one before 9.0, naming the worker and its QEMU", async () => {
    await services.db.worker.update({ where: { id: "w1" }, data: { qemuVersion: "10.0.2" } });
    try {
      const vm = await runningVm(memberId);
      await services.db.vm.update({ where: { id: vm.id }, data: { memoryLayout: "exact" } });
      const response = await rest(`/vms/${vm.id}/migrate`, memberToken, { workerId: "w2" });
      expect(response.status).toBe(409);
      const { error } = await response.json();
      expect(error.code).toBe("migration_refused");
      expect(error.message).toContain("Worker w2 runs QEMU 7.2.22, older than the 10.0.2 the vm's state comes from");
      expect(error.message).toContain("Worker w2 runs QEMU 7.2.22, which under TCG loses guest writes during live migration when the guest's RAM is exact");
      expect(await services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).toMatchObject({ state: "running", operation: null, targetWorkerId: null });
    } finally {
      await services.db.worker.update({ where: { id: "w1" }, data: { qemuVersion: "7.2.22" } });
    }
  });

  it("refuses a vm that is not running", async () => {
    const vm = await portal.vmRow(projectId, memberId, { name: "stopped-one", state: "stopped", desiredState: "stopped" });
    const response = await rest(`/vms/${vm.id}/migrate`, memberToken, {});
    expect(response.status).toBe(409);
    expect((await response.json()).error.message).toBe("cannot migrate vm stopped-one: it is stopped; only a running vm can be live-migrated");
  });
});

describe("POST /workers/{id}/drain", () => {
  it("is for admins only", async () => {
    const response = await rest("/workers/w2/drain", memberToken);
    expect(response.status).toBe(403);
  });

  it("takes the worker out of placement and asks the controller about each of its guests; activate puts it back", async () => {
    const adminRow = await services.db.user.findUniqueOrThrow({ where: { email: "admin@ferry.test" } });
    const a = await runningVm(adminRow.id, "w2", portal.defaultProjectId);
    const b = await runningVm(adminRow.id, "w2", portal.defaultProjectId);
    const response = await rest("/workers/w2/drain", adminToken);
    expect(response.status).toBe(200);
    expect(await response.json()).toEqual({ id: "w2", status: "draining", vmsLeft: 2 });
    expect((await services.db.worker.findUniqueOrThrow({ where: { id: "w2" } })).status).toBe("draining");
    const jobs = await services.controllerQueue.getJobs(["waiting", "delayed", "active"]);
    for (const vm of [a, b]) expect(jobs.some((job) => job.data.vmId === vm.id)).toBe(true);

    const back = await rest("/workers/w2/activate", adminToken);
    expect(back.status).toBe(200);
    expect(await back.json()).toEqual({ id: "w2", status: "online", vmsLeft: 2 });
    expect((await rest("/workers/w2/activate", adminToken)).status).toBe(409);
  });
});
