// POST /vms/{id}/migrate and /workers/{id}/drain against a real PostgreSQL and Redis: what is
// refused (with the reason and status), what is written for the controller, and that a
// second migration of the same vm is refused while the first runs.
import { randomUUID } from "node:crypto";

import { createTestDatabase, type TestDatabase } from "@ferry/db/testing";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { handleRestRequest } from "./rest.ts";
import { createPortalServices, type PortalServices } from "./services.ts";

const serverUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";
const redisUrl = process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390";
const adminToken = `ferry-test-${randomUUID()}`;
const memberToken = `ferry-test-${randomUUID()}`;

let database: TestDatabase;
let services: PortalServices;
let memberId: string;

beforeAll(async () => {
  database = await createTestDatabase(serverUrl);
  services = await createPortalServices({
    databaseUrl: database.url,
    redisUrl,
    queuePrefix: `test-portal-${randomUUID()}`,
    clusterSecret: "integration-test-cluster-secret-0123456789",
    publicUrl: "http://portal.test",
    consolePublicUrl: "ws://console.test:3001",
    cpuModel: "qemu64",
    logLevel: "silent",
    admin: { email: "admin@ferry.test", password: "admin-password-1", token: adminToken },
  });
  memberId = randomUUID();
  await services.db.user.create({ data: { id: memberId, name: "Member", email: "member@ferry.test", role: "member" } });
  const { createHash } = await import("node:crypto");
  await services.db.apiToken.create({ data: { userId: memberId, name: "member", tokenHash: createHash("sha256").update(memberToken).digest("hex") } });
  for (const [id, more] of [
    ["w1", {}],
    ["w2", {}],
    ["w3", { sharedStorage: null }],
    ["w4", { memoryMiBFree: 100 }],
  ] as const) {
    const now = new Date();
    await services.db.worker.create({
      data: {
        id, hostname: "host", consoleAddress: "127.0.0.1:7000", vcpusTotal: 2, memoryMiBTotal: 1024, vcpusFree: 2, memoryMiBFree: 1024,
        accelerator: "tcg", cpuVendor: "GenuineIntel", cpuModelName: "test", cpuFlags: [], qemuVersion: "7.2.22", startedAt: now, lastHeartbeatAt: now,
        sharedStorage: "/srv/ferry-disks", ...more,
      },
    });
  }
});

afterAll(async () => {
  if (services) {
    await services.controllerQueue.obliterate({ force: true });
    await services.close();
  }
  await database?.drop();
});

const rest = (path: string, token: string, body?: unknown) =>
  handleRestRequest(
    new Request(`http://portal.test/api/v1${path}`, {
      method: "POST",
      headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
      body: JSON.stringify(body ?? {}),
    }),
    services,
  );

async function runningVm(ownerId: string, workerId = "w1") {
  return services.db.vm.create({
    data: { name: `vm-${randomUUID().slice(0, 8)}`, ownerId, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", state: "running", workerId, accelerator: "tcg" },
  });
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

  it("refuses a vm that is not running", async () => {
    const vm = await services.db.vm.create({
      data: { name: "stopped-one", ownerId: memberId, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", state: "stopped", desiredState: "stopped" },
    });
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
    const a = await runningVm(adminRow.id, "w2");
    const b = await runningVm(adminRow.id, "w2");
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
