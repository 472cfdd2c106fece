// Webhooks through the REST API on a real PostgreSQL: who may subscribe, what a URL may be,
// the secret shown once (and derivable only with the cluster secret), deliveries listed page
// by page, deletion, and another tenant's webhooks answered as missing. Sending them is the
// controller's (apps/controller/src/webhooks.integration.test.ts).
import { webhookSigningSecret } from "@ferry/tokens";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type Tenant, TestPortal, refusal } from "./test-portal.ts";

const portal = new TestPortal();
const post = (body: unknown, token: string) => ({ method: "POST", body: JSON.stringify(body), token });

let tenant: Tenant;
let adminToken: string;

beforeAll(async () => {
  await portal.start();
  tenant = await portal.tenant("hooks");
  const admin = await portal.member(tenant, "admin");
  adminToken = (await portal.token(admin, tenant.projectId, { scopes: ["vms:read", "project:admin"] })).secret;
});

afterAll(() => portal.stop());

async function create(body: Record<string, unknown>, token = adminToken) {
  return portal.rest(`/projects/${tenant.projectId}/webhooks`, post({ url: "https://hooks.example.com/ferry", ...body }, token));
}

describe("webhooks API", () => {
  it("a project admin subscribes a URL; the secret is shown once, derived from the cluster secret, and stored nowhere", async () => {
    const response = await create({ events: ["vm.running", "vm.failed", "vm.running"] });
    expect(response.status).toBe(200);
    const created = (await response.json()) as { id: string; secret: string; events: string[]; url: string; disabledAt: string | null };
    expect(created).toMatchObject({ url: "https://hooks.example.com/ferry", events: ["vm.running", "vm.failed"], disabledAt: null });
    const row = await portal.services.db.webhook.findUniqueOrThrow({ where: { id: created.id } });
    expect(created.secret).toBe(webhookSigningSecret(portal.services.settings.clusterSecret, row.id, row.secretSalt));
    expect(JSON.stringify(row)).not.toContain(created.secret.slice(6));

    const list = await portal.rest(`/projects/${tenant.projectId}/webhooks`, { token: adminToken });
    expect(list.status).toBe(200);
    const listed = (await list.json()) as { items: Record<string, unknown>[] };
    expect(listed.items.map((item) => item.id)).toContain(created.id);
    expect(JSON.stringify(listed)).not.toContain(created.secret);

    const audit = await portal.services.db.auditEntry.findFirst({ where: { action: "webhook.create", targetId: created.id } });
    expect(audit).toMatchObject({ projectId: tenant.projectId, outcome: "ok" });
  });

  it("refuses URLs that are not plain http(s), and kinds that do not exist, naming the field", async () => {
    const cases: [unknown, RegExp][] = [
      ["ftp://hooks.example.com/x", /url: must use http or https, not ftp/],
      ["https://user:secret@hooks.example.com/x", /url: must not carry credentials/],
      ["/relative/path", /url: must be an absolute http/],
      ["http://hooks.exa\nmple.com/", /url: must not contain control characters/],
      ["https://hooks.example.com/x#part", /url: must not have a #fragment/],
      [`https://hooks.example.com/${"x".repeat(2000)}`, /url: must be at most 2000 characters/],
      [42, /url:/],
    ];
    for (const [url, message] of cases) {
      const response = await create({ url });
      expect(response.status, String(url)).toBe(400);
      expect(((await response.json()) as { error: { message: string } }).error.message).toMatch(message);
    }
    for (const events of [["vm.exploded"], ["vm.running", "vm.booting"]]) {
      const kind = await create({ events });
      expect(kind.status).toBe(400);
      expect(((await kind.json()) as { error: { message: string } }).error.message).toMatch(/events\.\d/);
    }
    const none = await create({ events: [] });
    expect(((await none.json()) as { error: { message: string } }).error.message).toMatch(/events: name at least one kind, or leave events out/);
    const unknown = await create({ secret: "mine" });
    expect(((await unknown.json()) as { error: { code: string } }).error.code).toBe("unknown_field");
  });

  it("takes a project admin: a member, or a token without project:admin, is refused", async () => {
    const member = await portal.member(tenant, "member");
    expect(await refusal(portal.as(member).webhook.list({ projectId: tenant.projectId }))).toMatchObject({ trpcCode: "FORBIDDEN", message: expect.stringContaining("admin or above") });
    const narrow = await portal.token(tenant.owner, tenant.projectId, { scopes: ["vms:read", "vms:write"] });
    const response = await create({}, narrow.secret);
    expect(response.status).toBe(403);
    expect(((await response.json()) as { error: { message: string } }).error.message).toContain("project:admin");
  });

  it("lists a webhook's deliveries newest first, page by page", async () => {
    const created = (await (await create({})).json()) as { id: string };
    const { db } = portal.services;
    for (const [index, status] of ["delivered", "failed", "pending"].entries()) {
      await db.webhookDelivery.create({
        data: { webhookId: created.id, eventId: `event-${index}`, kind: "vm.running", payload: {}, status, attempts: index + 1, lastStatusCode: status === "failed" ? 500 : 200, lastError: status === "failed" ? "the receiver answered 500" : null },
      });
    }
    const first = (await (await portal.rest(`/webhooks/${created.id}/deliveries?limit=2`, { token: adminToken })).json()) as { items: { eventId: string; status: string }[]; nextCursor: string | null };
    expect(first.items.map((item) => [item.eventId, item.status])).toEqual([
      ["event-2", "pending"],
      ["event-1", "failed"],
    ]);
    expect(first.nextCursor).not.toBeNull();
    const second = (await (await portal.rest(`/webhooks/${created.id}/deliveries?limit=2&cursor=${first.nextCursor}`, { token: adminToken })).json()) as {
      items: { eventId: string; attempts: number }[];
      nextCursor: string | null;
    };
    expect(second).toEqual({ items: [expect.objectContaining({ eventId: "event-0", attempts: 1 })], nextCursor: null });
  });

  it("deleting a webhook stops it: left out of the list, its pending deliveries recorded failed, its deliveries still listed", async () => {
    const created = (await (await create({})).json()) as { id: string };
    await portal.services.db.webhookDelivery.create({ data: { webhookId: created.id, eventId: "e", kind: "vm.stopped", payload: {} } });
    const response = await portal.rest(`/webhooks/${created.id}`, { method: "DELETE", token: adminToken });
    expect(response.status).toBe(200);
    expect(((await response.json()) as { disabledAt: string | null }).disabledAt).not.toBeNull();
    const listed = (await (await portal.rest(`/projects/${tenant.projectId}/webhooks`, { token: adminToken })).json()) as { items: { id: string }[] };
    expect(listed.items.map((item) => item.id)).not.toContain(created.id);
    const deliveries = (await (await portal.rest(`/webhooks/${created.id}/deliveries`, { token: adminToken })).json()) as { items: { status: string; lastError: string }[] };
    expect(deliveries.items).toEqual([expect.objectContaining({ status: "failed", lastError: "the webhook was deleted before this event was delivered" })]);
  });

  it("another tenant's webhook is missing (404) to every route, and nothing of it leaks", async () => {
    const created = (await (await create({})).json()) as { id: string };
    const other = await portal.tenant("outsider");
    const outsider = (await portal.token(other.owner, other.projectId)).secret;
    const answers = [
      await portal.rest(`/webhooks/${created.id}/deliveries`, { token: outsider }),
      await portal.rest(`/webhooks/${created.id}`, { method: "DELETE", token: outsider }),
      await portal.rest(`/projects/${tenant.projectId}/webhooks`, { token: outsider }),
      await portal.rest(`/projects/${tenant.projectId}/webhooks`, post({ url: "https://evil.example.com/" }, outsider)),
    ];
    for (const answer of answers) {
      expect(answer.status).toBe(404);
      expect(await answer.text()).not.toContain("hooks.example.com");
    }
    expect((await portal.services.db.webhook.findUniqueOrThrow({ where: { id: created.id } })).disabledAt).toBeNull();
    expect(await portal.services.db.webhook.count({ where: { url: "https://evil.example.com/" } })).toBe(0);
  });
});
