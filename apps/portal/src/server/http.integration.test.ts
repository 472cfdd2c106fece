// The portal's HTTP server on real PostgreSQL and Redis: REST requests are answered on
// node:http without reaching Next, everything else goes to Next, and a REST request's body
// is read from the socket with the same limits as before.
import type { AddressInfo } from "node:net";
import { request as httpRequest } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createPortalServer } from "./http.ts";
import { type Tenant, TestPortal } from "./test-portal.ts";

const portal = new TestPortal();
let tenant: Tenant;
let secret: string;
/** what reached the stand-in for Next */
const nextSaw: string[] = [];
let baseUrl: string;
const server = createPortalServer(
  async (request, response) => {
    nextSaw.push(request.url ?? "");
    response.writeHead(200, { "content-type": "text/plain" }).end("next");
  },
  async () => portal.services,
);

beforeAll(async () => {
  await portal.start();
  tenant = await portal.tenant("http");
  secret = (await portal.token(tenant.owner, tenant.projectId)).secret;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  await portal.stop();
});

describe("the portal's HTTP server", () => {
  it("answers /api/v1 itself and hands every other path to Next", async () => {
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id);
    const list = await fetch(`${baseUrl}/api/v1/vms?limit=5`, { headers: { authorization: `Bearer ${secret}` } });
    expect(list.status).toBe(200);
    expect(list.headers.get("content-type")).toBe("application/json");
    expect(((await list.json()) as { items: { id: string }[] }).items.map((item) => item.id)).toEqual([vm.id]);
    const one = await fetch(`${baseUrl}/api/v1/vms/${vm.id}`, { headers: { authorization: `Bearer ${secret}` } });
    expect(((await one.json()) as { id: string }).id).toBe(vm.id);
    const unknown = await fetch(`${baseUrl}/api/v1/nowhere`, { headers: { authorization: `Bearer ${secret}` } });
    expect(unknown.status).toBe(404);
    expect(await unknown.json()).toEqual({ error: { code: "not_found", message: expect.stringContaining("openapi.json") } });
    expect(nextSaw).toEqual([]);

    for (const path of ["/", "/vms/new", "/api/trpc/vm.list", "/api/v1x", "/api/auth/get-session"]) {
      expect(await (await fetch(`${baseUrl}${path}`)).text()).toBe("next");
    }
    expect(nextSaw).toEqual(["/", "/vms/new", "/api/trpc/vm.list", "/api/v1x", "/api/auth/get-session"]);
  });

  it("reads a create's body from the socket: created once per Idempotency-Key, 201", async () => {
    const send = () =>
      fetch(`${baseUrl}/api/v1/vms`, {
        method: "POST",
        headers: { authorization: `Bearer ${secret}`, "content-type": "application/json", "idempotency-key": "http-create-1" },
        body: JSON.stringify({ name: "over-http", image: "tiny", vcpus: 1, memoryMiB: 256 }),
      });
    const first = await send();
    const again = await send();
    expect([first.status, again.status]).toEqual([201, 201]);
    const [a, b] = (await Promise.all([first.json(), again.json()])) as { id: string }[];
    expect(b!.id).toBe(a!.id);
    expect(await portal.services.db.vm.count({ where: { projectId: tenant.projectId, name: "over-http" } })).toBe(1);
  });

  it("refuses a chunked body over 1 MiB with 413 in the error schema, storing nothing", async () => {
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const sent = httpRequest(`${baseUrl}/api/v1/vms`, { method: "POST", headers: { authorization: `Bearer ${secret}`, "content-type": "application/json" } }, (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk: string) => (body += chunk));
        response.on("end", () => resolve({ status: response.statusCode ?? 0, body }));
      });
      // The server may answer and close before the whole body is written.
      sent.on("error", reject);
      sent.write(`{"name":"${"x".repeat(600_000)}`);
      sent.end(`${"y".repeat(600_000)}"}`);
    });
    expect(answer.status).toBe(413);
    expect(JSON.parse(answer.body)).toEqual({ error: { code: "payload_too_large", message: expect.stringContaining("1048576 bytes") } });
    expect(await portal.services.db.vm.count({ where: { projectId: tenant.projectId, name: { startsWith: "xxx" } } })).toBe(0);
  });

  it("refuses bad queries to the polled reads (GET /vms, /vms/{id}) as trpc-to-openapi refuses them on other routes", async () => {
    // GET /vms and /vms/{id} go to their procedures directly (rest.ts); /vms/{id}/events, with
    // the same id and limit fields, through trpc-to-openapi's handler.
    const vm = await portal.vmRow(tenant.projectId, tenant.owner.id);
    const get = async (path: string, headers: Record<string, string> = { authorization: `Bearer ${secret}` }) => {
      const response = await fetch(`${baseUrl}/api/v1${path}`, { headers });
      return { status: response.status, authenticate: response.headers.get("www-authenticate"), body: (await response.json()) as { error?: { code: string; message: string } } };
    };
    for (const query of ["limit=0", "limit=501", "limit=abc", "limit=", "limit=1.5", "limit=5&limit=6", "colour=red", "constructor=1"]) {
      const polled = await get(`/vms?${query}`);
      const handled = await get(`/vms/${vm.id}/events?${query}`);
      expect({ query, status: polled.status, code: polled.body.error?.code }).toEqual({ query, status: handled.status, code: handled.body.error?.code });
      expect(polled.status, query).toBe(400);
      if (query !== "constructor=1") expect(polled.body.error?.message, query).toContain(query.split("=")[0]!);
    }
    expect((await get(`/vms/${vm.id}?colour=red`)).body.error).toEqual((await get(`/vms/${vm.id}/events?colour=red`)).body.error);
    for (const path of [`/vms/${vm.id}`, "/vms", `/vms/${vm.id}/events`]) {
      expect(await get(path, {}), path).toMatchObject({ status: 401, authenticate: 'Bearer realm="ferry"', body: { error: { code: "unauthenticated" } } });
    }
    const missing = await get("/vms/no-such-vm");
    expect(missing).toMatchObject({ status: 404, body: { error: { code: "vm_not_found" } } });
    expect(missing.body.error).toEqual((await get("/vms/no-such-vm/events")).body.error);
  });

  it("answers 503 in the error schema when the portal's services cannot be reached", async () => {
    const down = createPortalServer(
      async (_request, response) => void response.end("next"),
      () => Promise.reject(new Error("connect ECONNREFUSED 127.0.0.1:5432")),
    );
    await new Promise<void>((resolve) => down.listen(0, "127.0.0.1", resolve));
    try {
      const response = await fetch(`http://127.0.0.1:${(down.address() as AddressInfo).port}/api/v1/vms`);
      expect(response.status).toBe(503);
      expect(await response.json()).toEqual({ error: { code: "unavailable", message: "The portal cannot reach its services: connect ECONNREFUSED 127.0.0.1:5432" } });
    } finally {
      down.closeAllConnections();
      await new Promise((resolve) => down.close(resolve));
    }
  });
});
