// The portal's procedures and REST API against a real PostgreSQL and Redis: a fresh database
// and queue prefix per run, callers acting as the admin and as a member.
import { randomUUID } from "node:crypto";
import { createTestDatabase, type TestDatabase } from "@ferry/db/testing";
import { redisKeys } from "@ferry/jobs";
import { verifyConsoleToken } from "@ferry/tokens";
import { TRPCError } from "@trpc/server";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiTokenHash } from "./api-token.ts";
import { ensureAdmin } from "./auth.ts";
import { handleRestRequest } from "./rest.ts";
import { createCaller } from "./root.ts";
import { createPortalServices, type PortalServices } from "./services.ts";
import { toApiError, type Viewer } from "./trpc.ts";

const serverUrl = process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres";
const redisUrl = process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390";
const clusterSecret = "integration-test-cluster-secret-0123456789";
const adminToken = `ferry-test-${randomUUID()}`;

let database: TestDatabase;
let services: PortalServices;
let admin: Viewer;
let member: Viewer;

beforeAll(async () => {
  database = await createTestDatabase(serverUrl);
  services = await createPortalServices({
    databaseUrl: database.url,
    redisUrl,
    queuePrefix: `test-portal-${randomUUID()}`,
    clusterSecret,
    publicUrl: "http://portal.test",
    consolePublicUrl: "ws://console.test:3001",
    cpuModel: "qemu64",
    logLevel: "silent",
    admin: { email: "admin@ferry.test", password: "admin-password-1", token: adminToken },
  });
  const adminRow = await services.db.user.findUniqueOrThrow({ where: { email: "admin@ferry.test" } });
  admin = { id: adminRow.id, email: adminRow.email, name: adminRow.name, role: "admin" };
  const memberRow = await services.db.user.create({ data: { id: randomUUID(), name: "Member", email: "member@ferry.test", role: "member" } });
  member = { id: memberRow.id, email: memberRow.email, name: memberRow.name, role: "member" };
});

afterAll(async () => {
  if (services) {
    await services.controllerQueue.obliterate({ force: true });
    const keys = await services.redis.keys(`${services.settings.queuePrefix}:*`);
    if (keys.length > 0) await services.redis.del(...keys);
    await services.close();
  }
  await database?.drop();
});

const as = (viewer: Viewer) => createCaller({ services, viewer, ip: "192.0.2.7" });

/** Run `call`, expect it to fail, and return the API error the client would see. */
async function refusal(call: Promise<unknown>): Promise<{ trpcCode: string; code: string; message: string }> {
  const error = await call.then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(TRPCError);
  const trpcError = error as TRPCError;
  const api = toApiError(trpcError);
  return { trpcCode: trpcError.code, code: api.code, message: api.message };
}

const valid = { name: "web-1", image: "tiny", vcpus: 1, memoryMiB: 256 };

async function addWorker(id: string, memoryMiBTotal: number) {
  const now = new Date();
  await services.db.worker.create({
    data: {
      id,
      hostname: "host-a",
      consoleAddress: "127.0.0.1:7000",
      vcpusTotal: 2,
      memoryMiBTotal,
      vcpusFree: 2,
      memoryMiBFree: memoryMiBTotal,
      accelerator: "tcg",
      cpuVendor: "GenuineIntel",
      cpuModelName: "test cpu",
      cpuFlags: [],
      qemuVersion: "7.2.22",
      startedAt: now,
      lastHeartbeatAt: now,
    },
  });
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
  it("shows a member only their own vms and hides the rest as not found", async () => {
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
    await ensureAdmin(services.auth, services.db, { email: "admin@ferry.test", password: "admin-password-1", token: adminToken });
    expect(await services.db.user.count({ where: { email: "admin@ferry.test", role: "admin" } })).toBe(1);
    expect(await services.db.apiToken.count({ where: { userId: admin.id, name: "FERRY_ADMIN_TOKEN" } })).toBe(1);
    expect(await services.db.account.count({ where: { userId: admin.id, providerId: "credential" } })).toBe(1);
  });

  it("signs the admin in with the configured password through better-auth", async () => {
    const ok = await services.auth.api.signInEmail({ body: { email: "admin@ferry.test", password: "admin-password-1" }, asResponse: true });
    expect(ok.status).toBe(200);
    const wrong = await services.auth.api.signInEmail({ body: { email: "admin@ferry.test", password: "not-the-password" }, asResponse: true });
    expect(wrong.status).toBe(401);
  });
});

describe("REST", () => {
  const rest = (path: string, init: RequestInit & { token?: string } = {}) => {
    const headers = new Headers(init.headers);
    if (init.token !== undefined) headers.set("authorization", `Bearer ${init.token}`);
    return handleRestRequest(new Request(`http://portal.test/api/v1${path}`, { ...init, headers }), services);
  };

  it("requires a valid bearer token", async () => {
    const anonymous = await rest("/vms");
    expect(anonymous.status).toBe(401);
    expect((await anonymous.json()).error.code).toBe("unauthenticated");
    const bad = await rest("/vms", { token: "not-a-token" });
    expect(bad.status).toBe(401);
    expect((await bad.json()).error).toMatchObject({ code: "unauthenticated", message: expect.stringContaining("unknown, revoked or expired") });
    const revokedToken = `revoked-${randomUUID()}`;
    await services.db.apiToken.create({ data: { userId: admin.id, name: "old", tokenHash: apiTokenHash(revokedToken), revokedAt: new Date() } });
    expect((await rest("/vms", { token: revokedToken })).status).toBe(401);
    const expiredToken = `expired-${randomUUID()}`;
    await services.db.apiToken.create({ data: { userId: admin.id, name: "old", tokenHash: apiTokenHash(expiredToken), expiresAt: new Date(Date.now() - 1000) } });
    expect((await rest("/vms", { token: expiredToken })).status).toBe(401);
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
