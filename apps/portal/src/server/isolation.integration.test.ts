// Tenant isolation: every REST route (from the OpenAPI document) and every tRPC procedure (from
// the router itself, so a new one cannot be forgotten) is called, over HTTP through the real
// handlers, as each of: another tenant's signed-in user, a viewer trying to change things, a
// revoked token, an expired token, a token of another project, and no credentials at all.
// Each must be refused with 401, 403 or 404 (or, for a list of one's own things, answered
// with only one's own things), and no answer may carry tenant A's ids, names or emails that
// the request did not itself contain.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Viewer } from "./access.ts";
import { openApiDocument } from "./rest.ts";
import { appRouter } from "./root.ts";
import { TestPortal } from "./test-portal.ts";
import { handleTrpcRequest } from "./trpc-handler.ts";

const portal = new TestPortal();

/** Tenant A's things, which nobody below may see or touch. */
const a = {
  organizationId: "",
  organizationName: "",
  projectId: "",
  projectName: "",
  ownerId: "",
  ownerEmail: "",
  vmId: "",
  vmName: "isolated-vm-7f3a",
  tokenId: "",
  viewerId: "",
  webhookId: "",
  templateId: "",
  templateName: "",
  classId: "",
  className: "",
  seatId: "",
  studentEmail: "",
};

interface Principal {
  name: string;
  headers: Record<string, string>;
  /** what it may get back: mutations only (a viewer may read), and the statuses allowed */
  mutationsOnly?: boolean;
  allowed: number[];
  /** tenant A's strings this principal legitimately knows (a viewer reads all of A; a token of A's side project belongs to A's owner) */
  knows: string[];
}
let principals: Principal[] = [];

async function signIn(email: string, password: string): Promise<string> {
  const response = await portal.services.auth.api.signInEmail({ body: { email, password }, asResponse: true });
  expect(response.status).toBe(200);
  return response.headers
    .getSetCookie()
    .map((cookie) => cookie.split(";")[0])
    .join("; ");
}

async function personWithPassword(name: string): Promise<{ viewer: Viewer; cookie: string }> {
  const email = `${name}@isolation.test`;
  const password = `${name}-password-123`;
  const created = await portal.as(portal.admin).tenancy.createUser({ email, name, password });
  return { viewer: { id: created.id, email, name, role: "member", token: null, sessionId: null }, cookie: await signIn(email, password) };
}

beforeAll(async () => {
  await portal.start();
  await portal.addWorker("w1", { sharedStorage: "/srv/disks" });
  await portal.addWorker("w2", { sharedStorage: "/srv/disks" });
  const owner = await personWithPassword("owner-a");
  const viewer = await personWithPassword("viewer-a");
  const stranger = await personWithPassword("owner-b");
  const organization = await portal.as(portal.admin).tenancy.createOrganization({ name: "tenant-a-org", ownerEmail: owner.viewer.email });
  await portal.as(portal.admin).tenancy.createOrganization({ name: "tenant-b-org", ownerEmail: stranger.viewer.email });
  await portal.as(owner.viewer).tenancy.setMember({ id: organization.id, email: viewer.viewer.email, role: "viewer" });
  const project = await portal.as(owner.viewer).tenancy.createProject({ id: organization.id, name: "tenant-a-project" });
  const sideProject = await portal.as(owner.viewer).tenancy.createProject({ id: organization.id, name: "tenant-a-side" });
  const vm = await portal.vmRow(project.id, owner.viewer.id, { name: a.vmName, state: "running", desiredState: "running", workerId: "w1", accelerator: "tcg" });
  const token = await portal.token(owner.viewer, project.id);
  const webhook = await portal.as(owner.viewer).webhook.create({ projectId: project.id, url: "https://tenant-a.example.com/hooks" });
  const template = await portal.services.db.labTemplate.create({ data: { name: "tenant-a-template", ownerId: owner.viewer.id, projectId: project.id } });
  const version = await portal.services.db.labTemplateVersion.create({
    data: { templateId: template.id, version: 1, status: "ready", sourceVmId: vm.id, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", accelerator: "tcg", goldenStateId: "golden-a" },
  });
  const studentEmail = "student-a@isolation.test";
  const labClass = await portal.services.db.labClass.create({
    data: {
      projectId: project.id,
      templateId: template.id,
      templateVersionId: version.id,
      name: "tenant-a-class",
      instructorId: owner.viewer.id,
      opensAt: new Date(Date.now() - 60_000),
      closesAt: new Date(Date.now() + 3_600_000),
      sessionMinutes: 30,
      totalMinutes: 60,
      status: "started",
      joinCode: "TENANTA2",
      joinCodeExpiresAt: new Date(Date.now() + 3_600_000),
      seats: { create: { email: studentEmail, vmId: vm.id } },
    },
    include: { seats: true },
  });
  Object.assign(a, {
    organizationId: organization.id,
    organizationName: organization.name,
    projectId: project.id,
    projectName: project.name,
    ownerId: owner.viewer.id,
    ownerEmail: owner.viewer.email,
    vmId: vm.id,
    tokenId: token.id,
    viewerId: viewer.viewer.id,
    webhookId: webhook.id,
    templateId: template.id,
    templateName: template.name,
    classId: labClass.id,
    className: labClass.name,
    seatId: labClass.seats[0]!.id,
    studentEmail,
  });
  const revoked = await portal.token(owner.viewer, project.id, { revokedAt: new Date() });
  const expired = await portal.token(owner.viewer, project.id, { expiresAt: new Date(Date.now() - 1000) });
  const otherProject = await portal.token(owner.viewer, sideProject.id);
  principals = [
    { name: "another tenant's user", headers: { cookie: stranger.cookie }, allowed: [403, 404], knows: [] },
    { name: "a viewer changing things", headers: { cookie: viewer.cookie }, mutationsOnly: true, allowed: [403], knows: Object.values(a) },
    { name: "a revoked token", headers: { authorization: `Bearer ${revoked.secret}` }, allowed: [401], knows: [] },
    { name: "an expired token", headers: { authorization: `Bearer ${expired.secret}` }, allowed: [401], knows: [] },
    { name: "a token of another project", headers: { authorization: `Bearer ${otherProject.secret}` }, allowed: [403, 404], knows: [a.ownerEmail, a.ownerId, a.organizationId, a.organizationName] },
    { name: "no credentials", headers: {}, allowed: [401], knows: [] },
  ];
});

afterAll(() => portal.stop());

/** What each path parameter names: always one of tenant A's things. */
function fillPath(path: string): string {
  const id = path.startsWith("/vms/")
    ? a.vmId
    : path.startsWith("/projects/")
      ? a.projectId
      : path.startsWith("/organizations/")
        ? a.organizationId
        : path.startsWith("/tokens/")
          ? a.tokenId
          : path.startsWith("/workers/")
            ? "w1"
            : path.startsWith("/webhooks/")
              ? a.webhookId
              : path.startsWith("/templates/")
                ? a.templateId
                : path.startsWith("/classes/")
                  ? a.classId
                  : path.startsWith("/seats/")
                    ? a.seatId
                    : "";
  return path.replace("{id}", id).replace("{projectId}", a.projectId).replace("{userId}", a.viewerId).replace("{seatId}", a.seatId);
}

/** A valid request body aimed at tenant A, by field name. */
const bodyValues: Record<string, unknown> = {
  name: "intruder",
  image: "tiny",
  vcpus: 1,
  memoryMiB: 256,
  profile: "standard",
  projectId: "",
  workerId: "w2",
  vmId: "",
  email: "",
  ownerEmail: "",
  password: "long-enough-password",
  role: "owner",
  scopes: ["vms:write"],
  expiresInDays: 1,
  vms: 1000,
  stateBytes: 0,
  url: "https://intruder.example.com/hooks",
  templateId: "",
  opensAt: "2030-01-01T09:00:00Z",
  closesAt: "2099-01-01T09:00:00Z",
  sessionMinutes: 30,
  totalMinutes: 60,
  emails: ["intruder@isolation.test"],
  minutes: 30,
  expiresAt: "2099-01-01T09:00:00Z",
  mode: "control",
  prewarm: false,
  code: "NOSUCHCODE",
  token: "not-a-lab-link",
};

function validBody(schema: { properties?: Record<string, unknown>; required?: string[] } | undefined): Record<string, unknown> {
  const values: Record<string, unknown> = { ...bodyValues, vmId: a.vmId, projectId: a.projectId, email: a.ownerEmail, ownerEmail: a.ownerEmail, templateId: a.templateId };
  return Object.fromEntries(Object.keys(schema?.properties ?? {}).filter((key) => key in values).map((key) => [key, values[key]]));
}

/** Tenant A's strings that the request did not carry and the principal does not know: none may come back. */
function leaks(body: string, request: string, principal: Principal): string[] {
  const secrets = [a.organizationId, a.organizationName, a.projectId, a.projectName, a.ownerId, a.ownerEmail, a.vmId, a.vmName, a.tokenId, a.viewerId, a.webhookId, a.templateId, a.templateName, a.classId, a.className, a.seatId, a.studentEmail];
  return secrets.filter((secret) => secret !== "" && body.includes(secret) && !request.includes(secret) && !principal.knows.includes(secret));
}

/** Procedure inputs aimed at tenant A, for every tRPC procedure. */
function procedureInput(path: string): unknown {
  const vm = { id: a.vmId };
  const inputs: Record<string, unknown> = {
    "vm.create": { name: "intruder", image: "tiny", vcpus: 1, memoryMiB: 256, projectId: a.projectId },
    "vm.list": { limit: 50, projectId: a.projectId },
    "vm.get": vm,
    "vm.start": vm,
    "vm.stop": vm,
    "vm.reboot": vm,
    "vm.suspend": vm,
    "vm.resume": vm,
    "vm.guestStates": vm,
    "vm.delete": vm,
    "vm.consoleLog": vm,
    "vm.events": vm,
    "vm.console": vm,
    "worker.list": {},
    "migration.migrate": { id: a.vmId, workerId: "w2" },
    "migration.targets": vm,
    "migration.drain": { id: "w1" },
    "migration.activate": { id: "w1" },
    "tenancy.createUser": { email: "intruder@isolation.test", name: "intruder", password: "long-enough-password" },
    "tenancy.createOrganization": { name: "intruder-org", ownerEmail: a.ownerEmail },
    "tenancy.organizations": { limit: 50 },
    "tenancy.members": { id: a.organizationId, limit: 50 },
    "tenancy.setMember": { id: a.organizationId, email: a.ownerEmail, role: "viewer" },
    "tenancy.removeMember": { id: a.organizationId, userId: a.viewerId },
    "tenancy.createProject": { id: a.organizationId, name: "intruder-project" },
    "tenancy.projects": { limit: 50 },
    "tenancy.project": { id: a.projectId },
    "tenancy.setQuota": { id: a.projectId, vcpus: 1000, memoryMiB: 1000, vms: 1000, stateBytes: 0 },
    "token.create": { projectId: a.projectId, name: "intruder", scopes: ["vms:write"], expiresInDays: 1 },
    "token.list": { projectId: a.projectId, limit: 50 },
    "token.revoke": { id: a.tokenId },
    "audit.list": { projectId: a.projectId, limit: 50 },
    "webhook.create": { projectId: a.projectId, url: "https://intruder.example.com/hooks" },
    "webhook.list": { projectId: a.projectId, limit: 50 },
    "webhook.delete": { id: a.webhookId },
    "lab.publish": { vmId: a.vmId, name: "intruder-template" },
    "lab.list": { projectId: a.projectId, limit: 50 },
    "lab.createInstance": { id: a.templateId, name: "intruder-clone", projectId: a.projectId },
    "lab.reset": vm,
    "webhook.deliveries": { id: a.webhookId, limit: 50 },
    "labClass.create": { templateId: a.templateId, name: "intruder-class", opensAt: "2030-01-01T09:00:00Z", closesAt: "2099-01-01T09:00:00Z", sessionMinutes: 30, totalMinutes: 60, projectId: a.projectId },
    "labClass.list": { projectId: a.projectId, limit: 50 },
    "labClass.get": { id: a.classId },
    "labClass.update": { id: a.classId, name: "intruder-class" },
    "labClass.addStudents": { id: a.classId, emails: ["intruder@isolation.test"] },
    "labClass.removeStudent": { id: a.classId, seatId: a.seatId },
    "labClass.newJoinCode": { id: a.classId, expiresAt: "2099-01-01T09:00:00Z" },
    "labClass.start": { id: a.classId, prewarm: false },
    "labClass.end": { id: a.classId },
    "labClass.extend": { id: a.classId, minutes: 30 },
    "labClass.reset": { id: a.classId },
    "labClass.console": { id: a.classId, seatId: a.seatId, mode: "control" },
    "labClass.release": { id: a.classId, seatId: a.seatId },
    "labClass.studentLink": { id: a.classId, seatId: a.seatId },
    "labSeat.mine": {},
    "labSeat.get": { id: a.seatId },
    "labSeat.join": { code: "NOSUCHCODE" },
    "labSeat.start": { id: a.seatId },
    "labSeat.reset": { id: a.seatId },
    "labSeat.console": { id: a.seatId },
    "labSeat.openLink": { token: "not-a-lab-link" },
  };
  if (!(path in inputs)) throw new Error(`procedure ${path} has no input in the isolation suite: add one aimed at tenant A`);
  return inputs[path];
}

/** Lists of one's own things may answer 200, so long as nothing of tenant A is in them. */
const ownLists = new Set(["GET /vms", "GET /projects", "GET /organizations", "GET /templates", "GET /classes", "GET /seats", "vm.list", "tenancy.projects", "tenancy.organizations", "lab.list", "labClass.list", "labSeat.mine"]);

/**
 * A student's routes: authorised by holding a seat, not by a role, so a member of the class's
 * organization who does not hold it gets 404 like anyone else; a student link carries its
 * credential in the body, so a bad one is 401 whoever sends it.
 */
function allowedFor(route: string, principal: Principal): number[] {
  if (route === "POST /seats/open-link" || route === "labSeat.openLink") return [401];
  if (principal.mutationsOnly && (route.startsWith("labSeat.") || route.startsWith("POST /seats"))) return [404];
  return principal.allowed;
}

/** What must not have changed, whoever called. */
async function tenantAState() {
  const { db } = portal.services;
  return {
    vm: await db.vm.findUniqueOrThrow({ where: { id: a.vmId }, select: { desiredState: true, generation: true, state: true, operation: true, name: true } }),
    vms: await db.vm.count({ where: { projectId: a.projectId } }),
    members: await db.membership.findMany({ where: { organizationId: a.organizationId }, orderBy: { userId: "asc" }, select: { userId: true, role: true } }),
    projects: await db.project.findMany({ where: { organizationId: a.organizationId }, orderBy: { id: "asc" } }),
    tokens: await db.apiToken.findMany({ where: { projectId: a.projectId }, orderBy: { id: "asc" }, select: { id: true, revokedAt: true } }),
    users: await db.user.count(),
    organizations: await db.organization.count(),
    workers: await db.worker.findMany({ orderBy: { id: "asc" }, select: { id: true, status: true } }),
    webhooks: await db.webhook.findMany({ where: { projectId: a.projectId }, orderBy: { id: "asc" }, select: { id: true, url: true, disabledAt: true } }),
    classes: await db.labClass.findMany({ where: { projectId: a.projectId }, orderBy: { id: "asc" } }),
    seats: await db.labSeat.findMany({ where: { class: { projectId: a.projectId } }, orderBy: { id: "asc" } }),
  };
}

describe("tenant isolation", () => {
  it("refuses every REST route to every outsider, leaking nothing and changing nothing", async () => {
    const before = await tenantAState();
    const document = openApiDocument("http://portal.test") as unknown as {
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { properties?: Record<string, unknown>; required?: string[] } }> } }>>;
    };
    const problems: string[] = [];
    let calls = 0;
    for (const [path, methods] of Object.entries(document.paths)) {
      for (const [method, operation] of Object.entries(methods)) {
        const route = `${method.toUpperCase()} ${path}`;
        const body = method === "post" || method === "put" ? JSON.stringify(validBody(operation.requestBody?.content["application/json"]?.schema)) : undefined;
        const query = method === "get" && (path === "/vms" || path === "/tokens" || path === "/templates") ? `?projectId=${a.projectId}` : "";
        const url = `${fillPath(path)}${query}`;
        for (const principal of principals) {
          if (principal.mutationsOnly && method === "get") continue;
          calls += 1;
          const response = await portal.rest(url, { method: method.toUpperCase(), headers: principal.headers, ...(body === undefined ? {} : { body }) });
          const text = await response.text();
          const okList = ownLists.has(route) && query === "" && response.status === 200;
          if (!okList && !allowedFor(route, principal).includes(response.status)) problems.push(`${route} as ${principal.name}: ${response.status} ${text.slice(0, 200)}`);
          const leaked = leaks(text, `${url} ${body ?? ""}`, principal);
          if (leaked.length > 0) problems.push(`${route} as ${principal.name} leaked ${leaked.join(", ")}: ${text.slice(0, 200)}`);
        }
      }
    }
    expect(problems).toEqual([]);
    expect(calls).toBeGreaterThan(100);
    expect(await tenantAState()).toEqual(before);
  });

  it("refuses every tRPC procedure to every outsider, leaking nothing and changing nothing", async () => {
    const before = await tenantAState();
    const procedures = Object.entries(appRouter._def.procedures as unknown as Record<string, { _def: { type: "query" | "mutation" | "subscription" } }>);
    expect(procedures.length).toBeGreaterThanOrEqual(30);
    const problems: string[] = [];
    for (const [path, procedure] of procedures) {
      const input = JSON.stringify(procedureInput(path));
      const isQuery = procedure._def.type === "query";
      for (const principal of principals) {
        if (principal.mutationsOnly && isQuery) continue;
        const url = `http://portal.test/api/trpc/${path}${isQuery ? `?input=${encodeURIComponent(input)}` : ""}`;
        const headers = new Headers(principal.headers);
        if (!isQuery) headers.set("content-type", "application/json");
        const response = await handleTrpcRequest(new Request(url, { method: isQuery ? "GET" : "POST", headers, ...(isQuery ? {} : { body: input }) }), portal.services);
        const text = await response.text();
        const okList = ownLists.has(path) && !input.includes(a.projectId) && response.status === 200;
        if (!okList && !allowedFor(path, principal).includes(response.status)) problems.push(`${path} as ${principal.name}: ${response.status} ${text.slice(0, 200)}`);
        const leaked = leaks(text, `${url} ${input}`, principal);
        if (leaked.length > 0) problems.push(`${path} as ${principal.name} leaked ${leaked.join(", ")}: ${text.slice(0, 200)}`);
      }
    }
    expect(problems).toEqual([]);
    expect(await tenantAState()).toEqual(before);
  });

  it("answers tenant A's owner, so the refusals above are about who asks, not broken requests", async () => {
    const owner: Viewer = { id: a.ownerId, email: a.ownerEmail, name: "owner-a", role: "member", token: null, sessionId: null };
    const as = portal.as(owner);
    expect((await as.vm.get({ id: a.vmId })).name).toBe(a.vmName);
    expect((await as.vm.list({ limit: 50, projectId: a.projectId })).items.map((vm) => vm.id)).toEqual([a.vmId]);
    expect((await as.tenancy.members({ id: a.organizationId, limit: 50 })).items).toHaveLength(2);
    expect((await as.token.list({ projectId: a.projectId, limit: 50 })).items.map((t) => t.id)).toContain(a.tokenId);
    expect((await as.audit.list({ projectId: a.projectId, limit: 50 })).items.length).toBeGreaterThan(0);
    expect((await as.webhook.list({ projectId: a.projectId, limit: 50 })).items.map((w) => w.id)).toEqual([a.webhookId]);
    expect((await as.labClass.get({ id: a.classId })).seats.map((seat) => seat.email)).toEqual([a.studentEmail]);
  });
});
