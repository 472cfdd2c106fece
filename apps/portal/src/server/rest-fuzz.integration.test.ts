// Fuzzing the REST API: well over 1,000 malformed requests, generated from the OpenAPI document
// (so every route is covered, new ones too) with a seeded PRNG (so a failure replays), sent to
// the real handler on a fresh database and Redis. Every one must be refused with a 4xx in the one
// error schema, field errors must name the field, and nothing may be stored or queued.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { handleRestRequest, openApiDocument } from "./rest.ts";
import { TestPortal } from "./test-portal.ts";

const base = "http://portal.test/api/v1";
const portal = new TestPortal();
let services: TestPortal["services"];
let adminToken: string;
let vmId: string;
let adminTokenId: string;
const workerId = "w1";

/** A real id for a path's {id}, so a malformed request to an existing thing is refused for its malformation. */
function realIdFor(path: string): string {
  if (path.startsWith("/workers/")) return workerId;
  if (path.startsWith("/projects/")) return portal.defaultProjectId;
  if (path.startsWith("/organizations/")) return "default";
  if (path.startsWith("/tokens/")) return adminTokenId;
  return vmId;
}

beforeAll(async () => {
  await portal.start();
  ({ services, adminToken } = portal);
  await portal.addWorker(workerId);
  // A running vm: actions on it are legal, so only the malformation can stop them.
  const vm = await portal.vmRow(portal.defaultProjectId, portal.admin.id, { name: "target", state: "running", desiredState: "running", workerId });
  vmId = vm.id;
  adminTokenId = (await services.db.apiToken.findFirstOrThrow({ where: { name: "FERRY_ADMIN_TOKEN" } })).id;
});

afterAll(() => portal.stop());


// ---------------------------------------------------------------------------------------
// The routes, from the OpenAPI document

interface JsonSchema {
  type?: string;
  minimum?: number;
  maximum?: number;
  minLength?: number;
  maxLength?: number;
  pattern?: string;
  properties?: Record<string, JsonSchema>;
  required?: string[];
}

interface Operation {
  method: string;
  path: string;
  query: Record<string, JsonSchema>;
  body: JsonSchema | undefined;
}

function operations(): Operation[] {
  const document = openApiDocument("http://portal.test") as unknown as {
    paths: Record<string, Record<string, { parameters?: { name: string; in: string; schema: JsonSchema }[]; requestBody?: { content: Record<string, { schema: JsonSchema }> } }>>;
  };
  return Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(methods).map(([method, operation]) => ({
      method: method.toUpperCase(),
      path,
      query: Object.fromEntries((operation.parameters ?? []).filter((p) => p.in === "query").map((p) => [p.name, p.schema])),
      body: operation.requestBody?.content["application/json"]?.schema,
    })),
  );
}

// ---------------------------------------------------------------------------------------
// Malformed requests

/** mulberry32: small, seeded, and the same sequence on every run. */
function prng(seed: number) {
  let state = seed >>> 0;
  const next = () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, pick: <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)]! };
}

interface Case {
  kind: string;
  /** The route as the OpenAPI document names it, e.g. "POST /vms/{id}/start"; none for unknown paths. */
  route?: string;
  method: string;
  url: string;
  headers: Record<string, string>;
  body?: string;
  /** The field the error message or details must name. */
  field?: string;
  /** Allowed statuses; by default any 4xx. */
  statuses?: number[];
}

/** Values a valid request would carry, by field name; the mutation then breaks one thing. */
const validValues: Record<string, unknown> = {
  name: "fuzz-vm",
  image: "tiny",
  vcpus: 1,
  memoryMiB: 256,
  profile: "standard",
  workerId: "w1",
  vms: 1,
  stateBytes: 0,
  email: "someone@ferry.test",
  ownerEmail: "someone@ferry.test",
  password: "long-enough-password",
  role: "member",
  scopes: ["vms:read"],
  expiresInDays: 1,
  url: "https://hooks.example.com/fuzz",
  opensAt: "2030-01-01T09:00:00Z",
  closesAt: "2099-01-01T09:00:00Z",
  expiresAt: "2099-01-01T09:00:00Z",
  sessionMinutes: 30,
  totalMinutes: 60,
  minutes: 30,
  emails: ["student@ferry.test"],
};

const controlStrings = ["a\u0000b", "\u001b[2J", "line\nbreak", "tab\there", "\u007f", "\u0085", "bell\u0007"];
const hugeString = "x".repeat(100 * 1024);

function wrongValues(schema: JsonSchema): unknown[] {
  if (schema.type === "integer" || schema.type === "number") {
    const values: unknown[] = ["two", "1", "", true, false, null, [], [1], {}, 1.5, -1, -0.5, Number.MAX_SAFE_INTEGER + 2, 1e308, -1e308, hugeString];
    if (schema.minimum !== undefined) values.push(schema.minimum - 1);
    if (schema.maximum !== undefined) values.push(schema.maximum + 1);
    return values;
  }
  const values: unknown[] = [123, 0, true, null, [], ["a"], {}, { a: 1 }, hugeString];
  if ((schema.minLength ?? 0) > 0) values.push("");
  if (schema.maxLength !== undefined) values.push("x".repeat(schema.maxLength + 1));
  if (schema.pattern !== undefined) values.push(...controlStrings, "UPPER", "../w1", "w 1");
  return values;
}

/** A query value for `schema` that is not one: `undefined` when every string is a legal value. */
function wrongQueryValues(schema: JsonSchema): string[] {
  if (schema.type === "integer" || schema.type === "number") {
    const values = ["two", "1.5", "-1", "NaN", "Infinity", "-Infinity", "1e999", "99999999999999999999999", "true", hugeString];
    if (schema.minimum !== undefined) values.push(String(schema.minimum - 1));
    if (schema.maximum !== undefined) values.push(String(schema.maximum + 1));
    return values;
  }
  return ["", ...(schema.maxLength !== undefined ? ["x".repeat(schema.maxLength + 1)] : []), hugeString];
}

function validBody(schema: JsonSchema | undefined): Record<string, unknown> {
  if (schema?.properties === undefined) return {};
  const required = new Set(schema.required ?? []);
  return Object.fromEntries(Object.keys(schema.properties).filter((key) => required.has(key)).map((key) => [key, validValues[key] ?? "x"]));
}

const badIds = [
  "not-a-uuid",
  "00000000-0000-4000-8000-000000000000",
  "..",
  "..%2F..%2Fetc%2Fpasswd",
  "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
  "%00",
  "a%0Ab",
  "%1B%5B2J",
  "%E2%80%AE",
  "%ZZ",
  "'%3B%20DROP%20TABLE%20%22Vm%22%3B--",
  "x".repeat(101),
  "y".repeat(5000),
];
const unknownKeys = ["colour", "ownerId", "admin", "state", "__proto__", "constructor", "k".repeat(300), "état", "a b"];
const malformedJson = ["{", '{"name":', "[1,2", "NaN", "{'a':1}", '{"a":1}}', "\u0000", '{"a":1,}', "undefined", "\u00ff\u00fe\u0000", "{}{}"];
const notObjects = ["[]", '"text"', "123", "null", "true", "[{}]"];
const wrongContentTypes = ["text/plain", "application/xml", "multipart/form-data; boundary=x", "application/x-www-form-urlencoded", "application/jsonp", "image/png"];
const allMethods = ["GET", "POST", "PUT", "PATCH", "DELETE"];
const unknownPaths = ["/vms/{id}/frobnicate", "/vmsx", "/vms/{id}/start/again", "/", "/workers/w1", "/vms/{id}/console-log/..", "/openapi.yaml"];
const badAuthorizations = () => ["", "Bearer", "Bearer ", "Basic YWRtaW46YWRtaW4=", `Bearer ${"t".repeat(20_000)}`, "Bearer a b", "bearer\tnot-a-token", `Token ${adminToken}`];

function* cases(ops: Operation[], seed: number): Generator<Case> {
  const random = prng(seed);
  const json = { "content-type": "application/json", authorization: `Bearer ${adminToken}` };
  const auth = { authorization: `Bearer ${adminToken}` };
  // Real ids, so a malformed request to an existing vm or worker is refused for its malformation.
  const pathOf = (op: Operation, id?: string) =>
    op.path
      .replace("{id}", id ?? realIdFor(op.path))
      .replace("{projectId}", id ?? portal.defaultProjectId)
      .replace("{userId}", portal.admin.id);
  const withQuery = (path: string, query: Record<string, string>) => {
    const search = new URLSearchParams(query).toString();
    return `${base}${path}${search ? `?${search}` : ""}`;
  };
  const request = (op: Operation, kind: string, body: unknown, extra: Partial<Case> = {}): Case =>
    op.method === "GET" || op.method === "DELETE"
      ? { kind, route: `${op.method} ${op.path}`, method: op.method, url: withQuery(pathOf(op), body as Record<string, string>), headers: auth, ...extra }
      : { kind, route: `${op.method} ${op.path}`, method: op.method, url: `${base}${pathOf(op)}`, headers: json, body: JSON.stringify(body), ...extra };

  // First every wrong value for every field of every route, then random rounds of everything.
  for (const op of ops) {
    const hasBody = op.method === "POST" || op.method === "PUT" || op.method === "PATCH";
    for (const [field, schema] of Object.entries(hasBody ? (op.body?.properties ?? {}) : op.query)) {
      for (const value of hasBody ? wrongValues(schema) : wrongQueryValues(schema)) {
        yield request(op, "wrong value", hasBody ? { ...validBody(op.body), [field]: value } : { [field]: value }, { field });
      }
    }
  }
  for (let round = 0; ; round += 1) {
    for (const op of ops) {
      const hasBody = op.method === "POST" || op.method === "PUT" || op.method === "PATCH";
      const fields = hasBody ? (op.body?.properties ?? {}) : op.query;
      const route = `${op.method} ${op.path}`;

      if (op.path.includes("{id}")) {
        const id = random.pick(badIds);
        const kind = "bad id";
        yield hasBody
          ? { kind, route, method: op.method, url: `${base}${pathOf(op, id)}`, headers: json, body: JSON.stringify(validBody(op.body)), ...(id.length > 100 ? { field: "id" } : {}) }
          : { kind, route, method: op.method, url: `${base}${pathOf(op, id)}`, headers: auth, ...(id.length > 100 ? { field: "id" } : {}) };
      }

      const key = random.pick(unknownKeys);
      yield hasBody
        ? { kind: "unknown field", route, method: op.method, url: `${base}${pathOf(op)}`, headers: json, body: JSON.stringify({ ...validBody(op.body), [key]: random.pick([1, "x", null, {}]) }), field: key }
        : { ...request(op, "unknown field", { [key]: "1" }), field: key };

      const names = Object.keys(fields);
      if (names.length > 0) {
        const field = random.pick(names);
        const schema = fields[field]!;
        if (hasBody) {
          yield request(op, "wrong value", { ...validBody(op.body), [field]: random.pick(wrongValues(schema)) }, { field });
        } else {
          yield request(op, "wrong value", { [field]: random.pick(wrongQueryValues(schema)) }, { field });
        }
      }
      if (hasBody && op.body?.required?.length) {
        const field = random.pick(op.body.required);
        const body = validBody(op.body);
        delete body[field];
        yield request(op, "missing field", body, { field });
      }
      if (hasBody) {
        // JSON.parse reads 1e999 as Infinity, which JSON.stringify cannot write.
        const numeric = Object.entries(op.body?.properties ?? {}).find(([, schema]) => schema.type === "integer")?.[0] ?? "n";
        const raw = JSON.stringify({ ...validBody(op.body), [numeric]: 0 }).replace(`"${numeric}":0`, `"${numeric}":${random.pick(["1e999", "-1e999"])}`);
        yield { kind: "infinite number", route, method: op.method, url: `${base}${pathOf(op)}`, headers: json, body: raw, ...(numeric === "n" ? {} : { field: numeric }) };
        yield { kind: "malformed json", route, method: op.method, url: `${base}${pathOf(op)}`, headers: json, body: random.pick(malformedJson), statuses: [400] };
        yield { kind: "not an object", route, method: op.method, url: `${base}${pathOf(op)}`, headers: json, body: random.pick(notObjects), statuses: [400] };
        const contentType = random.pick(wrongContentTypes);
        yield { kind: "wrong content type", route, method: op.method, url: `${base}${pathOf(op)}`, headers: { ...auth, "content-type": contentType }, body: JSON.stringify(validBody(op.body)), statuses: [415] };
        if (round % 4 === 0) {
          const big = random.next() < 0.5 ? JSON.stringify({ ...validBody(op.body), name: "x".repeat(1_200_000) }) : "z".repeat(2 * 1024 * 1024);
          yield { kind: "oversized body", route, method: op.method, url: `${base}${pathOf(op)}`, headers: json, body: big, statuses: [413] };
        }
      }
      const others = allMethods.filter((method) => !ops.some((o) => o.path === op.path && o.method === method));
      if (others.length > 0) {
        const method = random.pick(others);
        yield { kind: "wrong method", method, url: `${base}${pathOf(op)}`, headers: json, ...(method === "GET" || method === "DELETE" ? {} : { body: "{}" }), statuses: [404, 405] };
      }
      yield { kind: "no or bad token", route, method: op.method, url: `${base}${pathOf(op)}`, headers: { "content-type": "application/json", authorization: random.pick(badAuthorizations()) }, ...(hasBody ? { body: JSON.stringify(validBody(op.body)) } : {}), statuses: [401] };
    }
    yield { kind: "unknown path", method: random.pick(allMethods), url: `${base}${random.pick(unknownPaths).replace("{id}", vmId)}`, headers: auth, statuses: [404, 405] };
  }
}

const errorBody = z.strictObject({
  error: z.strictObject({ code: z.string().regex(/^[a-z_]+$/), message: z.string().min(10), details: z.record(z.string(), z.unknown()).optional() }),
});

async function storedCounts() {
  const { db, controllerQueue } = services;
  const jobs = await controllerQueue.getJobCounts();
  const vm = await db.vm.findUniqueOrThrow({ where: { id: vmId }, select: { desiredState: true, generation: true, name: true } });
  const workers = await db.worker.findMany({ select: { id: true, status: true, vcpusFree: true, memoryMiBFree: true } });
  const tenancy = {
    users: await db.user.count(),
    organizations: await db.organization.count(),
    projects: await db.project.findMany({ select: { id: true, name: true, quotaVcpus: true, quotaMemoryMiB: true, quotaVms: true, quotaStateBytes: true } }),
    memberships: await db.membership.findMany({ select: { organizationId: true, userId: true, role: true } }),
    revokedTokens: await db.apiToken.count({ where: { revokedAt: { not: null } } }),
    webhooks: await db.webhook.findMany({ select: { id: true, disabledAt: true } }),
  };
  return { vms: await db.vm.count(), vmEvents: await db.vmEvent.count(), apiTokens: await db.apiToken.count(), jobs: Object.values(jobs).reduce((a, b) => a + b, 0), vm, workers, tenancy };
}

describe("REST fuzz", () => {
  it("refuses 1,600 malformed requests across every route with a 4xx in the error schema, and stores nothing", async () => {
    const ops = operations();
    expect(ops.length).toBeGreaterThanOrEqual(12);
    const before = await storedCounts();
    const problems: string[] = [];
    const byKind = new Map<string, number>();
    const routesHit = new Set<string>();
    let sent = 0;
    for (const c of cases(ops, 20261125)) {
      if (sent >= 1600) break;
      sent += 1;
      byKind.set(c.kind, (byKind.get(c.kind) ?? 0) + 1);
      const headers = new Headers();
      for (const [name, value] of Object.entries(c.headers)) if (value !== "") headers.set(name, value);
      const response = await handleRestRequest(new Request(c.url, { method: c.method, headers, ...(c.body === undefined ? {} : { body: c.body }) }), services);
      if (c.route !== undefined) routesHit.add(c.route);
      const text = await response.text();
      const where = `#${sent} ${c.kind}: ${c.method} ${c.url.slice(0, 120)} ${c.body === undefined ? "" : c.body.slice(0, 80)}`;
      if (response.status >= 500) {
        problems.push(`${where} → ${response.status} ${text.slice(0, 300)}`);
        continue;
      }
      if (c.statuses ? !c.statuses.includes(response.status) : response.status < 400) {
        problems.push(`${where} → ${response.status}, wanted ${c.statuses?.join(" or ") ?? "4xx"}: ${text.slice(0, 300)}`);
        continue;
      }
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        problems.push(`${where} → ${response.status} with a body that is not JSON: ${text.slice(0, 200)}`);
        continue;
      }
      const parsed = errorBody.safeParse(body);
      if (!parsed.success) {
        problems.push(`${where} → ${response.status} body not in the error schema: ${text.slice(0, 300)}`);
        continue;
      }
      const { message, details } = parsed.data.error;
      if (c.field !== undefined && (response.status === 400 || response.status === 422) && !message.includes(c.field) && !JSON.stringify(details ?? {}).includes(c.field)) {
        problems.push(`${where} → ${response.status} does not name the field "${c.field.slice(0, 40)}": ${message.slice(0, 300)}`);
      }
    }
    expect(problems.slice(0, 40)).toEqual([]);
    expect(sent).toBe(1600);
    expect(Object.fromEntries(byKind)).toMatchObject({ "bad id": expect.any(Number), "oversized body": expect.any(Number), "wrong method": expect.any(Number), "malformed json": expect.any(Number) });
    expect([...routesHit].sort()).toEqual(ops.map((op) => `${op.method} ${op.path}`).sort());
    expect(await storedCounts()).toEqual(before);
  });
});
