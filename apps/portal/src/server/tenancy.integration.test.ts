// Tenancy against a real PostgreSQL and Redis: roles, quotas (and their race), API tokens
// (scopes, expiry, shown once, stored hashed), Idempotency-Key, rate limits and the audit log.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { apiTokenHash } from "./api-token.ts";
import { refusal, type Tenant, TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
const valid = { name: "web-1", image: "tiny", vcpus: 1, memoryMiB: 256 };
const json = (body: unknown) => ({ method: "POST", body: JSON.stringify(body) });

beforeAll(async () => {
  await portal.start();
  await portal.addWorker("w1");
});

afterAll(() => portal.stop());

describe("roles", () => {
  let tenant: Tenant;
  beforeAll(async () => {
    tenant = await portal.tenant("roles");
  });

  it("lets a viewer look but not change, and a member change but not manage", async () => {
    const viewer = await portal.member(tenant, "viewer");
    const member = await portal.member(tenant, "member");
    const vm = await portal.as(member).vm.create(valid);
    expect(vm.projectId).toBe(tenant.projectId);
    expect((await portal.as(viewer).vm.get({ id: vm.id })).id).toBe(vm.id);
    expect(await refusal(portal.as(viewer).vm.stop({ id: vm.id }))).toMatchObject({ trpcCode: "FORBIDDEN", code: "forbidden", message: expect.stringContaining("your role in this organization is viewer") });
    expect(await refusal(portal.as(viewer).vm.create(valid))).toMatchObject({ code: "forbidden" });
    expect(await refusal(portal.as(member).tenancy.setMember({ id: tenant.organizationId, email: viewer.email, role: "admin" }))).toMatchObject({ code: "forbidden" });
    expect(await refusal(portal.as(member).tenancy.createProject({ id: tenant.organizationId, name: "side" }))).toMatchObject({ code: "forbidden" });
    const stored = await portal.services.db.vm.findUniqueOrThrow({ where: { id: vm.id } });
    expect(stored.desiredState).toBe("running");
  });

  it("lets an owner run membership: add, promote, remove; only an owner makes owners; never the last owner out", async () => {
    const newcomer = await portal.person("newcomer");
    const admin = await portal.member(tenant, "admin");
    await portal.as(tenant.owner).tenancy.setMember({ id: tenant.organizationId, email: newcomer.email, role: "member" });
    expect(await refusal(portal.as(admin).tenancy.setMember({ id: tenant.organizationId, email: newcomer.email, role: "owner" }))).toMatchObject({ code: "forbidden" });
    await portal.as(admin).tenancy.setMember({ id: tenant.organizationId, email: newcomer.email, role: "viewer" });
    const members = await portal.as(newcomer).tenancy.members({ id: tenant.organizationId, limit: 50 });
    expect(members.items.find((m) => m.userId === newcomer.id)?.role).toBe("viewer");
    expect(await refusal(portal.as(tenant.owner).tenancy.removeMember({ id: tenant.organizationId, userId: tenant.owner.id }))).toMatchObject({ code: "action_refused" });
    await portal.as(admin).tenancy.removeMember({ id: tenant.organizationId, userId: newcomer.id });
    expect(await refusal(portal.as(newcomer).tenancy.project({ id: tenant.projectId }))).toMatchObject({ trpcCode: "NOT_FOUND" });
  });

  it("announces a removal so open consoles close", async () => {
    const leaving = await portal.member(tenant, "member");
    const subscriber = portal.services.redis.duplicate();
    const channel = `${portal.services.settings.queuePrefix}:access-revoked`;
    const heard = new Promise<string>((resolve) => subscriber.on("message", (_channel, message: string) => resolve(message)));
    await subscriber.subscribe(channel);
    await portal.as(tenant.owner).tenancy.removeMember({ id: tenant.organizationId, userId: leaving.id });
    expect(JSON.parse(await heard)).toEqual({ userId: leaving.id, organizationId: tenant.organizationId });
    subscriber.disconnect();
  });
});

describe("signing out", () => {
  it("announces the ended session, so consoles opened from it close at once", async () => {
    const person = await portal.as(portal.admin).tenancy.createUser({ email: "leaver@ferry.test", name: "Leaver", password: "leaver-password-1" });
    const signedIn = await portal.services.auth.api.signInEmail({ body: { email: "leaver@ferry.test", password: "leaver-password-1" }, asResponse: true });
    const cookie = signedIn.headers
      .getSetCookie()
      .map((c) => c.split(";")[0])
      .join("; ");
    const subscriber = portal.services.redis.duplicate();
    const heard = new Promise<string>((resolve) => subscriber.on("message", (_channel, message: string) => resolve(message)));
    await subscriber.subscribe(`${portal.services.settings.queuePrefix}:access-revoked`);
    const signedOut = await portal.services.auth.api.signOut({ headers: new Headers({ cookie }), asResponse: true });
    expect(signedOut.status).toBe(200);
    expect(JSON.parse(await heard)).toEqual({ userId: person.id });
    expect(await portal.services.db.session.count({ where: { userId: person.id } })).toBe(0);
    subscriber.disconnect();
  });
});

describe("quotas", () => {
  it("lets exactly 10 of 50 concurrent creates through a quota of 10 vms", async () => {
    const tenant = await portal.tenant("race", { vms: 10 });
    const { secret } = await portal.token(tenant.owner, tenant.projectId);
    const responses = await Promise.all(
      Array.from({ length: 50 }, (_, i) => portal.rest("/vms", { ...json({ ...valid, name: `racer-${i}` }), token: secret })),
    );
    const statuses = responses.map((r) => r.status);
    expect(statuses.filter((s) => s === 201)).toHaveLength(10);
    expect(statuses.filter((s) => s === 409)).toHaveLength(40);
    const refused = await responses.find((r) => r.status === 409)?.json();
    expect(refused.error).toMatchObject({ code: "quota_exceeded", details: { over: [{ resource: "vms", limit: 10, used: 10, requested: 1 }] } });
    expect(await portal.services.db.vm.count({ where: { projectId: tenant.projectId } })).toBe(10);
  });

  it("counts vCPUs and memory of vms wanted running: a stopped vm frees room, starting it again needs room", async () => {
    const tenant = await portal.tenant("cpus", { vcpus: 2 });
    const as = portal.as(tenant.owner);
    const a = await as.vm.create({ ...valid, name: "a", vcpus: 2 });
    expect(await refusal(as.vm.create({ ...valid, name: "b" }))).toMatchObject({ code: "quota_exceeded", message: expect.stringContaining("vcpus: 2 used + 1 asked > 2 allowed") });
    await portal.services.db.vm.update({ where: { id: a.id }, data: { state: "running", operation: null } });
    await as.vm.stop({ id: a.id });
    const b = await as.vm.create({ ...valid, name: "b" });
    await portal.services.db.vm.update({ where: { id: a.id }, data: { state: "stopped", operation: null } });
    expect(await refusal(as.vm.start({ id: a.id }))).toMatchObject({ code: "quota_exceeded" });
    expect((await portal.services.db.vm.findUniqueOrThrow({ where: { id: a.id } })).desiredState).toBe("stopped");
    await portal.services.db.vm.update({ where: { id: b.id }, data: { state: "running", operation: null } });
    await as.vm.stop({ id: b.id });
    expect((await as.vm.start({ id: a.id })).desiredState).toBe("running");
  });

  it("refuses a suspend when the project's stored guest states are at their limit", async () => {
    const tenant = await portal.tenant("states", { stateBytes: 1000n });
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running", workerId: "w1" });
    await portal.services.db.guestState.create({
      data: { id: `gs-${vm.id}`, vmId: vm.id, workerId: "w1", storedBytes: 1000n, cpuModel: "qemu64", accelerator: "tcg", memoryMiB: 256, vcpus: 1, profile: "standard" },
    });
    expect(await refusal(portal.as(tenant.owner).vm.suspend({ id: vm.id }))).toMatchObject({ code: "quota_exceeded", message: expect.stringContaining("stateBytes") });
  });

  it("lists each project with its own usage", async () => {
    const tenant = await portal.tenant("usage");
    const second = await portal.services.db.project.create({ data: { organizationId: tenant.organizationId, name: "second", quotaVcpus: 10, quotaMemoryMiB: 10_240, quotaVms: 10, quotaStateBytes: 1n << 30n } });
    await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "running", desiredState: "running", vcpus: 2, memoryMiB: 512 });
    await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "stopped", desiredState: "stopped" });
    await portal.vmRow(tenant.projectId, tenant.owner.id, { state: "deleted", desiredState: "deleted" });
    const saved = await portal.vmRow(second.id, tenant.owner.id, { state: "suspended", desiredState: "suspended" });
    await portal.services.db.guestState.create({
      data: { id: `gs-${saved.id}`, vmId: saved.id, workerId: "w1", storedBytes: 4096n, cpuModel: "qemu64", accelerator: "tcg", memoryMiB: 256, vcpus: 1, profile: "standard" },
    });
    const { items } = await portal.as(tenant.owner).tenancy.projects({ limit: 50 });
    expect(Object.fromEntries(items.map((project) => [project.name, project.usage]))).toEqual({
      "usage-project": { vcpus: 2, memoryMiB: 512, vms: 2, stateBytes: 0 },
      second: { vcpus: 0, memoryMiB: 0, vms: 1, stateBytes: 4096 },
    });
  });

  it("lets only a cluster admin set a quota", async () => {
    const tenant = await portal.tenant("quota-setter");
    const body = { id: tenant.projectId, vcpus: 1, memoryMiB: 512, vms: 1, stateBytes: 0 };
    expect(await refusal(portal.as(tenant.owner).tenancy.setQuota(body))).toMatchObject({ code: "forbidden" });
    expect((await portal.as(portal.admin).tenancy.setQuota(body)).quota).toEqual({ vcpus: 1, memoryMiB: 512, vms: 1, stateBytes: 0 });
  });
});

describe("API tokens", () => {
  it("are shown once, stored hashed, confined to their project and scopes, and refused once revoked or expired", async () => {
    const tenant = await portal.tenant("tokens");
    const other = await portal.tenant("tokens-other");
    const created = await portal.as(tenant.owner).token.create({ projectId: tenant.projectId, name: "ci", scopes: ["vms:read"], expiresInDays: 7 });
    expect(created.token).toMatch(/^ferry_/);
    const row = await portal.services.db.apiToken.findUniqueOrThrow({ where: { id: created.id } });
    expect(row.tokenHash).toBe(apiTokenHash(created.token));
    expect(JSON.stringify(row)).not.toContain(created.token);
    expect(JSON.stringify(await portal.as(tenant.owner).token.list({ projectId: tenant.projectId, limit: 50 }))).not.toContain(created.token);
    expect(new Date(created.expiresAt ?? 0).getTime() - Date.now()).toBeGreaterThan(6.9 * 86_400_000);

    const readOnly = { token: created.token };
    expect((await portal.rest("/vms", readOnly)).status).toBe(200);
    const write = await portal.rest("/vms", { ...json(valid), ...readOnly });
    expect(write.status).toBe(403);
    expect((await write.json()).error.message).toContain('lacks the "vms:write" scope');
    const elsewhere = await portal.rest("/vms", { ...json({ ...valid, projectId: other.projectId }), token: (await portal.token(tenant.owner, tenant.projectId)).secret });
    expect(elsewhere.status).toBe(404);

    await portal.as(tenant.owner).token.revoke({ id: created.id });
    expect((await portal.rest("/vms", readOnly)).status).toBe(401);
    const expired = await portal.token(tenant.owner, tenant.projectId, { expiresAt: new Date(Date.now() - 1) });
    expect((await portal.rest("/vms", { token: expired.secret })).status).toBe(401);
  });

  it("cannot give more than the role allows, and cannot be made by another token", async () => {
    const tenant = await portal.tenant("token-scopes");
    const viewer = await portal.member(tenant, "viewer");
    expect(await refusal(portal.as(viewer).token.create({ projectId: tenant.projectId, name: "x", scopes: ["vms:write"], expiresInDays: 1 }))).toMatchObject({
      code: "forbidden",
      message: expect.stringContaining("as viewer you cannot give a token vms:write"),
    });
    const { viewer: byToken } = await portal.token(tenant.owner, tenant.projectId);
    expect(await refusal(portal.as(byToken).token.create({ projectId: tenant.projectId, name: "x", scopes: ["vms:read"], expiresInDays: 1 }))).toMatchObject({ code: "forbidden" });
    expect(await portal.services.db.apiToken.count({ where: { name: "x" } })).toBe(0);
  });
});

describe("Idempotency-Key", () => {
  it("makes one vm however often a create is retried, and refuses the key for another body", async () => {
    const tenant = await portal.tenant("idempotent");
    const { secret } = await portal.token(tenant.owner, tenant.projectId);
    const send = (body: unknown) => portal.rest("/vms", { ...json(body), token: secret, headers: { "idempotency-key": "create-web-1" } });
    const all = await Promise.all(Array.from({ length: 5 }, () => send(valid)));
    const bodies = await Promise.all(all.map((r) => r.json()));
    expect(all.map((r) => r.status)).toEqual([201, 201, 201, 201, 201]);
    expect(new Set(bodies.map((b) => b.id)).size).toBe(1);
    expect(await portal.services.db.vm.count({ where: { projectId: tenant.projectId } })).toBe(1);
    const reused = await send({ ...valid, name: "web-2" });
    expect(reused.status).toBe(422);
    expect((await reused.json()).error.code).toBe("idempotency_key_reused");
    const fresh = await portal.rest("/vms", { ...json(valid), token: secret, headers: { "idempotency-key": "create-web-1b" } });
    expect(fresh.status).toBe(201);
    expect(await portal.services.db.vm.count({ where: { projectId: tenant.projectId } })).toBe(2);
  });
});

describe("rate limits", () => {
  const limited = new TestPortal();
  beforeAll(() => limited.start({ apiRateLimitPerMinute: 5 }));
  afterAll(() => limited.stop());

  it("answers 429 with Retry-After once a token has used its requests, without affecting another token", async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 7; i += 1) statuses.push((await limited.rest("/vms", { token: limited.adminToken })).status);
    expect(statuses).toEqual([200, 200, 200, 200, 200, 429, 429]);
    const response = await limited.rest("/vms", { token: limited.adminToken });
    expect(Number(response.headers.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(Number(response.headers.get("retry-after"))).toBeLessThanOrEqual(60);
    expect((await response.json()).error.code).toBe("rate_limited");
    const other = await limited.token(limited.admin, limited.defaultProjectId);
    expect((await limited.rest("/vms", { token: other.secret })).status).toBe(200);
  });
});

describe("audit log", () => {
  it("records who did what from where, refusals included, and shows it to the project only", async () => {
    const tenant = await portal.tenant("audited");
    const other = await portal.tenant("audited-other");
    const { secret, id: tokenId } = await portal.token(tenant.owner, tenant.projectId);
    const created = await (await portal.rest("/vms", { ...json(valid), token: secret, headers: { "x-forwarded-for": "198.51.100.9" } })).json();
    await portal.rest(`/vms/${created.id}/resume`, { method: "POST", token: secret });
    const { items } = await portal.as(tenant.owner).audit.list({ projectId: tenant.projectId, limit: 50 });
    expect(items.map((e) => [e.action, e.outcome])).toEqual([
      ["vm.resume", "refused"],
      ["vm.create", "ok"],
    ]);
    expect(items[1]).toMatchObject({ actorEmail: tenant.owner.email, actorTokenId: tokenId, ip: "198.51.100.9", targetType: "vm", targetId: created.id });
    expect(items[0]?.message).toContain("action_refused");
    expect(await refusal(portal.as(other.owner).audit.list({ projectId: tenant.projectId, limit: 50 }))).toMatchObject({ trpcCode: "NOT_FOUND" });
  });
});
