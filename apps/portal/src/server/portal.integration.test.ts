// The portal's procedures and REST API against a real PostgreSQL and Redis: a fresh database
// and queue prefix per run, callers acting as the cluster admin and as a tenant's owner.
import { redisKeys } from "@ferry/jobs";
import { verifyConsoleToken } from "@ferry/tokens";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Viewer } from "./access.ts";
import { ensureAdmin } from "./auth.ts";
import { refusal, TestPortal, type Tenant } from "./test-portal.ts";

const portal = new TestPortal();
const clusterSecret = "integration-test-cluster-secret-0123456789";
let services: TestPortal["services"];
let admin: Viewer;
let adminToken: string;
/** the owner of a tenant of their own: sees that tenant's vms only */
let member: Viewer;
let tenant: Tenant;

beforeAll(async () => {
  await portal.start();
  ({ services, admin, adminToken } = portal);
  tenant = await portal.tenant("acme");
  member = tenant.owner;
});

afterAll(() => portal.stop());

const as = (viewer: Viewer) => portal.as(viewer);

const valid = { name: "web-1", image: "tiny", vcpus: 1, memoryMiB: 256 };

async function addWorker(id: string, memoryMiBTotal: number) {
  await portal.addWorker(id, { vcpusTotal: 2, vcpusFree: 2, memoryMiBTotal, memoryMiBFree: memoryMiBTotal });
}

describe("vm.create", () => {
  it("refuses bad requests with the right code and creates nothing", async () => {
    await addWorker("worker-a", 3072);
    const before = await services.db.vm.count();

    expect(await refusal(as(admin).vm.create({ ...valid, image: "windows-95" }))).toEqual({
      trpcCode: "UNPROCESSABLE_CONTENT",
      code: "unknown_image",
      message: 'unknown image "windows-95"; known images: tiny',
    });
    expect(await refusal(as(admin).vm.create({ ...valid, memoryMiB: 8192 }))).toMatchObject({
      trpcCode: "UNPROCESSABLE_CONTENT",
      code: "memory_exceeds_workers",
      message: expect.stringContaining("no worker has 8192 MiB; the largest has 3072 MiB"),
    });
    expect(await refusal(as(admin).vm.create({ ...valid, memoryMiB: 64 }))).toMatchObject({ trpcCode: "UNPROCESSABLE_CONTENT", code: "memory_too_small" });
    expect(await refusal(as(admin).vm.create({ ...valid, profile: "retro" }))).toMatchObject({ code: "unknown_profile" });
    expect(await refusal(as(admin).vm.create({ ...valid, color: "red" } as typeof valid))).toMatchObject({
      trpcCode: "BAD_REQUEST",
      code: "unknown_field",
      message: expect.stringContaining('"color"'),
    });
    const badName = await refusal(as(admin).vm.create({ ...valid, name: "web\u001b[2J" }));
    expect(badName).toMatchObject({ trpcCode: "BAD_REQUEST", code: "invalid_input" });
    expect(badName.message).toContain("name: must not contain control characters");
    expect(await refusal(as(admin).vm.create({ ...valid, vcpus: 17 }))).toMatchObject({ code: "invalid_input", message: expect.stringContaining("vcpus") });

    expect(await services.db.vm.count()).toBe(before);
  });

  it("saves a pending vm that should run, records an event and asks the controller to reconcile it", async () => {
    const vm = await as(admin).vm.create(valid);
    expect(vm).toMatchObject({ name: "web-1", state: "pending", desiredState: "running", cpuModel: "qemu64", profile: "standard", generation: 0 });
    const events = await services.db.vmEvent.findMany({ where: { vmId: vm.id } });
    expect(events.map((e) => e.kind)).toEqual(["action.create"]);
    expect(events[0]?.message).toContain("192.0.2.7");
    const job = await services.controllerQueue.getJob(`vm.reconcile.${vm.id}.0`);
    expect(job?.name).toBe("vm.reconcile");
    expect(job?.data).toEqual({ vmId: vm.id });
  });
});

describe("scoping", () => {
  it("shows a tenant only their own project's vms and hides the rest as not found", async () => {
    const mine = await as(member).vm.create({ ...valid, name: "member-vm" });
    const theirs = await as(admin).vm.create({ ...valid, name: "admin-vm" });

    const memberList = await as(member).vm.list({ limit: 50 });
    expect(memberList.items.map((v) => v.name)).toEqual(["member-vm"]);
    expect((await as(admin).vm.list({ limit: 50 })).items.map((v) => v.id)).toEqual(expect.arrayContaining([mine.id, theirs.id]));

    // Thunks, so each call starts only when awaited: an eager array leaves rejections unhandled.
    const calls = [
      () => as(member).vm.get({ id: theirs.id }),
      () => as(member).vm.stop({ id: theirs.id }),
      () => as(member).vm.consoleLog({ id: theirs.id }),
    ];
    for (const call of calls) {
      expect(await refusal(call())).toMatchObject({ trpcCode: "NOT_FOUND", code: "vm_not_found" });
    }
    expect((await services.db.vm.findUniqueOrThrow({ where: { id: theirs.id } })).desiredState).toBe("running");
  });

  it("pages through the list with a cursor", async () => {
    const first = await as(admin).vm.list({ limit: 2 });
    expect(first.items).toHaveLength(2);
    expect(first.nextCursor).toBe(first.items[1]?.id);
    const second = await as(admin).vm.list({ limit: 2, cursor: first.nextCursor ?? undefined });
    const all = await as(admin).vm.list({ limit: 100 });
    expect([...first.items, ...second.items].map((v) => v.id)).toEqual(all.items.slice(0, first.items.length + second.items.length).map((v) => v.id));
    expect(all.nextCursor).toBeNull();
  });
});

describe("actions", () => {
  it("refuses an action the vm's state does not allow, with a sentence", async () => {
    const vm = await as(admin).vm.create({ ...valid, name: "stopped-1" });
    await services.db.vm.update({ where: { id: vm.id }, data: { state: "stopped", desiredState: "stopped" } });
    expect(await refusal(as(admin).vm.suspend({ id: vm.id }))).toEqual({
      trpcCode: "CONFLICT",
      code: "action_refused",
      message: "cannot suspend vm stopped-1: it is stopped; start it first",
    });
    expect((await services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).generation).toBe(0);

    const started = await as(admin).vm.start({ id: vm.id });
    expect(started).toMatchObject({ desiredState: "running", generation: 1, operation: "start" });
    expect((await services.controllerQueue.getJob(`vm.reconcile.${vm.id}.1`))?.data).toEqual({ vmId: vm.id });
  });

  it("reboot bumps the reboot sequence; delete asks for deleted", async () => {
    const vm = await as(admin).vm.create({ ...valid, name: "running-1" });
    await services.db.vm.update({ where: { id: vm.id }, data: { state: "running" } });
    await as(admin).vm.reboot({ id: vm.id });
    expect((await services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).rebootSeq).toBe(1);
    const deleted = await as(admin).vm.delete({ id: vm.id });
    expect(deleted).toMatchObject({ desiredState: "deleted", operation: "delete", generation: 2 });
    expect((await as(admin).vm.events({ id: vm.id })).items.map((e) => e.kind)).toEqual(["action.create", "action.reboot", "action.delete"]);
  });

  it("validates the worker a resume asks for", async () => {
    const vm = await as(admin).vm.create({ ...valid, name: "suspended-1" });
    await services.db.vm.update({ where: { id: vm.id }, data: { state: "suspended", desiredState: "suspended" } });
    expect(await refusal(as(admin).vm.resume({ id: vm.id, workerId: "nowhere" }))).toMatchObject({
      code: "unknown_worker",
      message: 'worker "nowhere" is not registered; online workers: worker-a',
    });
    expect(await as(admin).vm.resume({ id: vm.id, workerId: "worker-a" })).toMatchObject({ desiredState: "running", operation: "resume" });
    expect((await services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).targetWorkerId).toBe("worker-a");
  });

  it("refuses a resume on a worker the guest state cannot load on, with the reason; lists guest states", async () => {
    const vm = await as(admin).vm.create({ ...valid, name: "suspended-kvm" });
    const saved = { vmId: vm.id, workerId: "worker-k", cpuModel: "qemu64", memoryMiB: vm.memoryMiB, vcpus: vm.vcpus, profile: "standard" };
    await services.db.guestState.create({ data: { ...saved, id: "state-old", storedBytes: 1000n, accelerator: "kvm", createdAt: new Date("2030-01-01T00:00:00Z") } });
    await services.db.guestState.create({ data: { ...saved, id: "state-new", storedBytes: 41_000_000n, accelerator: "kvm", createdAt: new Date("2030-01-02T00:00:00Z") } });
    await services.db.vm.update({ where: { id: vm.id }, data: { state: "suspended", desiredState: "suspended", guestStateId: "state-new" } });
    expect(await refusal(as(admin).vm.resume({ id: vm.id, workerId: "worker-a" }))).toMatchObject({
      trpcCode: "CONFLICT",
      code: "incompatible_worker",
      message: expect.stringContaining("cannot resume vm suspended-kvm on worker worker-a: The vm runs under kvm but the target host offers tcg"),
    });
    expect((await services.db.vm.findUniqueOrThrow({ where: { id: vm.id } })).desiredState).toBe("suspended");
    const { items } = await as(admin).vm.guestStates({ id: vm.id });
    expect(items.map((i) => [i.id, i.storedBytes, i.current])).toEqual([
      ["state-new", 41_000_000, true],
      ["state-old", 1000, false],
    ]);
    expect(await refusal(as(member).vm.guestStates({ id: vm.id }))).toMatchObject({ code: "vm_not_found" });
  });
});

describe("console", () => {
  it("issues a console token only for a running vm", async () => {
    const vm = await as(member).vm.create({ ...valid, name: "console-1" });
    expect(await refusal(as(member).vm.console({ id: vm.id }))).toEqual({
      trpcCode: "CONFLICT",
      code: "action_refused",
      message: "cannot open the console of vm console-1: it is pending; start it first",
    });
    await services.db.vm.update({ where: { id: vm.id }, data: { state: "running" } });
    const issued = await as(member).vm.console({ id: vm.id });
    expect(issued.url).toBe(`ws://console.test:3001/console?token=${encodeURIComponent(issued.token)}`);
    const claims = verifyConsoleToken(issued.token, { secret: clusterSecret });
    expect(claims).toMatchObject({ vmId: vm.id, userId: member.id });
    const ttl = new Date(issued.expiresAt).getTime() - Date.now();
    expect(ttl).toBeGreaterThan(50_000);
    expect(ttl).toBeLessThanOrEqual(61_000);
  });

  it("returns the serial log from the vm's Redis stream", async () => {
    const vm = await as(member).vm.create({ ...valid, name: "serial-1" });
    const key = redisKeys.serialLog(services.settings.queuePrefix, vm.id);
    await services.redis.xadd(key, "*", "data", "FERRY-BOOT-OK kernel=6.1\n");
    await services.redis.xadd(key, "*", "data", "ferry-tick 1 uptime=1\nferry-tick 2 uptime=2\n");
    expect((await as(member).vm.consoleLog({ id: vm.id })).text).toBe("FERRY-BOOT-OK kernel=6.1\nferry-tick 1 uptime=1\nferry-tick 2 uptime=2\n");
    expect((await as(member).vm.consoleLog({ id: vm.id, tail: 1 })).text).toBe("ferry-tick 2 uptime=2\n");
  });
});

describe("auth", () => {
  it("creates the admin and its API token once, however often it runs", async () => {
    await ensureAdmin(services.auth, services.db, { email: "admin@ferry.test", password: "admin-password-1", token: adminToken, defaultQuota: services.settings.defaultQuota });
    expect(await services.db.user.count({ where: { email: "admin@ferry.test", role: "admin" } })).toBe(1);
    expect(await services.db.apiToken.count({ where: { userId: admin.id, name: "FERRY_ADMIN_TOKEN" } })).toBe(1);
    expect(await services.db.account.count({ where: { userId: admin.id, providerId: "credential" } })).toBe(1);
    expect(await services.db.project.count({ where: { organizationId: "default" } })).toBe(1);
    expect(await services.db.membership.findUnique({ where: { organizationId_userId: { organizationId: "default", userId: admin.id } } })).toMatchObject({ role: "owner" });
  });

  it("signs the admin in with the configured password through better-auth", async () => {
    const ok = await services.auth.api.signInEmail({ body: { email: "admin@ferry.test", password: "admin-password-1" }, asResponse: true });
    expect(ok.status).toBe(200);
    const wrong = await services.auth.api.signInEmail({ body: { email: "admin@ferry.test", password: "not-the-password" }, asResponse: true });
    expect(wrong.status).toBe(401);
  });
});

describe("REST", () => {
  const rest = portal.rest;

  it("requires a valid bearer token", async () => {
    const anonymous = await rest("/vms");
    expect(anonymous.status).toBe(401);
    expect((await anonymous.json()).error.code).toBe("unauthenticated");
    const bad = await rest("/vms", { token: "not-a-token" });
    expect(bad.status).toBe(401);
    expect((await bad.json()).error).toMatchObject({ code: "unauthenticated", message: expect.stringContaining("unknown, revoked or expired") });
    const revoked = await portal.token(admin, portal.defaultProjectId, { revokedAt: new Date() });
    expect((await rest("/vms", { token: revoked.secret })).status).toBe(401);
    const expired = await portal.token(admin, portal.defaultProjectId, { expiresAt: new Date(Date.now() - 1000) });
    expect((await rest("/vms", { token: expired.secret })).status).toBe(401);
    const good = await rest("/vms", { token: adminToken });
    expect(good.status).toBe(200);
    expect(Array.isArray((await good.json()).items)).toBe(true);
  });

  it("creates a vm with 201 and runs an action without a body", async () => {
    const created = await rest("/vms", { method: "POST", token: adminToken, headers: { "content-type": "application/json" }, body: JSON.stringify(valid) });
    expect(created.status).toBe(201);
    const vm = await created.json();
    expect(vm).toMatchObject({ name: "web-1", state: "pending", desiredState: "running", workerId: null, accelerator: null, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard" });
    const fetched = await rest(`/vms/${vm.id}`, { token: adminToken });
    expect((await fetched.json()).id).toBe(vm.id);
    const stopped = await rest(`/vms/${vm.id}/stop`, { method: "POST", token: adminToken });
    expect(stopped.status).toBe(200);
    expect((await stopped.json()).desiredState).toBe("stopped");
    const again = await rest(`/vms/${vm.id}/stop`, { method: "POST", token: adminToken });
    expect(again.status).toBe(409);
    expect((await again.json()).error.code).toBe("action_refused");
    const deleted = await rest(`/vms/${vm.id}`, { method: "DELETE", token: adminToken });
    expect((await deleted.json()).desiredState).toBe("deleted");
  });

  it("answers bad input with a 4xx JSON error, never a 500", async () => {
    const cases: [string, RequestInit, number, string][] = [
      ["/vms", { method: "POST", headers: { "content-type": "application/json" }, body: "{not json" }, 400, "malformed_json"],
      ["/vms", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...valid, colour: "red" }) }, 400, "unknown_field"],
      ["/vms", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...valid, image: "nope" }) }, 422, "unknown_image"],
      ["/vms", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...valid, vcpus: "two" }) }, 400, "invalid_input"],
      ["/vms/does-not-exist", {}, 404, "vm_not_found"],
      ["/no-such-thing", {}, 404, "not_found"],
      ["/vms?limit=0", {}, 400, "invalid_input"],
    ];
    for (const [path, init, status, code] of cases) {
      const response = await rest(path, { ...init, token: adminToken });
      expect({ path, status: response.status, code: (await response.json()).error?.code }).toEqual({ path, status, code });
    }
  });

  it("serves the OpenAPI 3.1 document", async () => {
    const response = await rest("/openapi.json");
    expect(response.status).toBe(200);
    const document = await response.json();
    expect(document.openapi).toBe("3.1.0");
    expect(Object.keys(document.paths)).toEqual(
      expect.arrayContaining(["/vms", "/vms/{id}", "/vms/{id}/start", "/vms/{id}/resume", "/vms/{id}/console-log", "/vms/{id}/console", "/workers"]),
    );
  });
});
