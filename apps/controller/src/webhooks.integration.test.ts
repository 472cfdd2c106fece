// Webhooks end to end on real services: a controller (real PostgreSQL, Redis, BullMQ) applies
// vm.state events as a worker sends them and POSTs the lifecycle events to an HTTP receiver
// this test runs on 127.0.0.1. No QEMU: the events are what a worker would report.
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import { type IncomingHttpHeaders, type Server, createServer } from "node:http";
import type { AddressInfo } from "node:net";

import type { Db } from "@ferry/db";
import { type TestDatabase, createTestDatabase, createTestProject, createTestVm, createTestWorker } from "@ferry/db/testing";
import { type VmStateEvent, queueNames } from "@ferry/jobs";
import { newWebhookSalt, webhookSigningSecret } from "@ferry/tokens";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { type Controller, startController } from "./controller.ts";
import { engineCpuCheck } from "./placement.ts";
import { testServices } from "./test-cluster.ts";

const clusterSecret = "webhooks-test-cluster-secret-0123456789abcdef";
// The receiver is on 127.0.0.1: this controller may send there (webhook-request.test.ts shows the default refusing).
const settings = { attempts: 4, backoffMs: 200, timeoutMs: 1000, sweepIntervalMs: 500, allowPrivateAddresses: true };
const prefix = `ferry-test-${randomUUID()}`;

/** What the receiver got: one entry per request, by path. */
interface Received {
  at: number;
  headers: IncomingHttpHeaders;
  body: string;
}
const received = new Map<string, Received[]>();
/** How the receiver answers the nth (0-based) request on a path: a status, or never. */
const answers = new Map<string, (n: number) => number | "never">();

let database: TestDatabase;
let db: Db;
let redis: Redis;
let events: Queue;
let inbox: Queue;
let controller: Controller;
let receiver: Server;
let receiverUrl: string;
let ownerId: string;

beforeAll(async () => {
  database = await createTestDatabase(testServices.databaseServerUrl);
  db = database.db;
  ownerId = randomUUID();
  await db.user.create({ data: { id: ownerId, name: "Test", email: `${ownerId}@ferry.test` } });
  for (const id of ["w1", "w2", "w-gone"]) {
    await createTestWorker(db, id, {
      status: id === "w-gone" ? "offline" : "online",
      vcpusTotal: 8,
      memoryMiBTotal: 8192,
      vcpusFree: 8,
      memoryMiBFree: 8192,
    });
  }
  receiver = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on("data", (chunk: Buffer) => chunks.push(chunk));
    request.on("end", () => {
      const path = request.url ?? "/";
      const list = received.get(path) ?? [];
      list.push({ at: Date.now(), headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      received.set(path, list);
      const answer = answers.get(path)?.(list.length - 1) ?? 200;
      if (answer !== "never") response.writeHead(answer, answer >= 300 && answer < 400 ? { location: `${path}-here` } : {}).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
  redis = new Redis(testServices.redisUrl);
  events = new Queue(queueNames.vmEvents, { connection: redis, prefix });
  inbox = new Queue(queueNames.controller, { connection: redis, prefix });
  controller = await startController({
    db,
    redisUrl: testServices.redisUrl,
    prefix,
    // The loop stays out of the way: each applied event reconciles its own vm.
    reconcileIntervalMs: 60_000,
    workerTimeoutMs: 600_000,
    cpuCheck: engineCpuCheck,
    clusterSecret,
    webhooks: settings,
    log: pino({ level: "silent" }),
  });
});

afterAll(async () => {
  await controller?.close();
  await events?.close();
  await inbox?.close();
  receiver?.closeAllConnections();
  await new Promise((resolve) => receiver?.close(resolve));
  if (redis) {
    const keys = await redis.keys(`${prefix}:*`);
    if (keys.length > 0) await redis.del(...keys);
    redis.disconnect();
  }
  await database?.drop();
});

async function until<T>(what: string, probe: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    last = await probe();
    if (last !== undefined && last !== false) return last as T;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/** A webhook as the portal makes one; returns it with the secret its creator was shown. */
async function webhook(projectId: string, path: string, kinds: string[] = []) {
  const row = await db.webhook.create({ data: { projectId, url: `${receiverUrl}${path}`, events: kinds, secretSalt: newWebhookSalt() } });
  return { ...row, secret: webhookSigningSecret(clusterSecret, row.id, row.secretSalt) };
}

async function project(): Promise<string> {
  return (await createTestProject(db, ownerId)).projectId;
}

async function vmIn(projectId: string, state: string, more: { targetWorkerId?: string; workerId?: string | null; desiredState?: string } = {}) {
  return createTestVm(db, { name: `vm-${randomUUID().slice(0, 6)}`, ownerId, projectId, state, workerId: "w1", generation: 1, ...more });
}

/** What a worker sends when the vm changes state. */
async function report(vmId: string, state: VmStateEvent["state"], more: Partial<VmStateEvent> = {}): Promise<void> {
  const event: VmStateEvent = { vmId, workerId: "w1", state, generation: 1, at: new Date().toISOString(), ...more };
  await events.add("vm.state", event);
}

const deliveriesOf = (webhookId: string) => db.webhookDelivery.findMany({ where: { webhookId }, orderBy: { id: "asc" } });

/** A receiver's check, as the README shows it. */
function verifies(header: string | string[] | undefined, body: string, secret: string): boolean {
  if (typeof header !== "string") return false;
  const { t, v1 } = Object.fromEntries(header.split(",").map((part) => part.split("=")));
  const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest("hex");
  const fresh = Math.abs(Date.now() / 1000 - Number(t)) < 300;
  return fresh && typeof v1 === "string" && v1.length === expected.length && timingSafeEqual(Buffer.from(v1), Buffer.from(expected));
}

describe("vm lifecycle webhooks", () => {
  it("a vm state change is POSTed once, signed with the webhook's secret (and not with another)", async () => {
    const projectId = await project();
    const hook = await webhook(projectId, "/signed");
    const other = await webhook(await project(), "/signed-other");
    const vm = await vmIn(projectId, "booting");
    await report(vm.id, "running");

    const [request] = await until("the delivery", async () => received.get("/signed"));
    expect(request?.headers["content-type"]).toBe("application/json");
    expect(request?.headers["ferry-event"]).toBe("vm.running");
    const body = request?.body ?? "";
    const signature = request?.headers["ferry-signature"];
    expect(verifies(signature, body, hook.secret)).toBe(true);
    expect(verifies(signature, body, other.secret)).toBe(false);
    expect(verifies(signature, body.replace("running", "stopped"), hook.secret)).toBe(false);

    const event = JSON.parse(body) as Record<string, unknown>;
    expect(event).toMatchObject({ kind: "vm.running", projectId, vm: { id: vm.id, name: vm.name }, state: "running", previousState: "booting", reason: null });
    expect(event.id).toEqual(expect.any(String));
    const [delivery] = await until("the delivery recorded", async () => {
      const rows = await deliveriesOf(hook.id);
      return rows[0]?.status === "delivered" && rows;
    });
    expect(delivery).toMatchObject({ eventId: event.id, kind: "vm.running", attempts: 1, lastStatusCode: 200, lastError: null });
    expect(delivery?.deliveredAt).toBeInstanceOf(Date);
  });

  it("a receiver that answers 500 twice, then 200, gets three attempts further and further apart, and the delivery is recorded delivered", async () => {
    const projectId = await project();
    answers.set("/flaky", (n) => (n < 2 ? 500 : 200));
    const hook = await webhook(projectId, "/flaky");
    await report((await vmIn(projectId, "booting")).id, "running");

    const [delivery] = await until("the delivery recorded delivered", async () => {
      const rows = await deliveriesOf(hook.id);
      return rows[0]?.status === "delivered" && rows;
    });
    expect(delivery).toMatchObject({ attempts: 3, lastStatusCode: 200, lastError: null });
    const times = (received.get("/flaky") ?? []).map((request) => request.at);
    expect(times).toHaveLength(3);
    const [first = 0, second = 0, third = 0] = times;
    // BullMQ's exponential backoff never retries early: the base, then twice the base.
    expect(second - first).toBeGreaterThanOrEqual(settings.backoffMs);
    expect(third - second).toBeGreaterThanOrEqual(2 * settings.backoffMs);
    // Every attempt carries the same event, signed afresh.
    const bodies = new Set((received.get("/flaky") ?? []).map((request) => request.body));
    expect(bodies.size).toBe(1);
  });

  it("a receiver that always fails is given up after the set number of attempts and the delivery is recorded failed", async () => {
    const projectId = await project();
    answers.set("/down", () => 503);
    const hook = await webhook(projectId, "/down");
    await report((await vmIn(projectId, "booting")).id, "running");

    const [delivery] = await until("the delivery recorded failed", async () => {
      const rows = await deliveriesOf(hook.id);
      return rows[0]?.status === "failed" && rows;
    });
    expect(delivery).toMatchObject({ attempts: settings.attempts, lastStatusCode: 503, lastError: "the receiver answered 503", deliveredAt: null });
    // Longer than the next backoff would be: nothing more is sent.
    await new Promise((resolve) => setTimeout(resolve, 2 ** settings.attempts * settings.backoffMs));
    expect(received.get("/down")).toHaveLength(settings.attempts);
  });

  it("a receiver that does not answer in time is recorded as such; a deleted webhook's pending delivery is not sent again", async () => {
    const projectId = await project();
    answers.set("/silent", () => "never");
    const hook = await webhook(projectId, "/silent");
    await report((await vmIn(projectId, "booting")).id, "running");

    const [attempted] = await until("a timed-out attempt", async () => {
      const rows = await deliveriesOf(hook.id);
      return rows[0]?.attempts === 1 && rows;
    });
    expect(attempted).toMatchObject({ status: "pending", lastStatusCode: null, lastError: `no answer within ${settings.timeoutMs} ms` });
    await db.webhook.update({ where: { id: hook.id }, data: { disabledAt: new Date() } });
    const [given] = await until("the delivery given up", async () => {
      const rows = await deliveriesOf(hook.id);
      return rows[0]?.status === "failed" && rows;
    });
    expect(given).toMatchObject({ attempts: 1, lastError: "the webhook was deleted before this event was delivered" });
    expect(received.get("/silent")).toHaveLength(1);
  });

  it("sends only the kinds a webhook subscribed to, no transitional states, and nothing of another project's vms", async () => {
    const projectId = await project();
    const stoppedOnly = await webhook(projectId, "/stopped-only", ["vm.stopped"]);
    const everyKind = await webhook(projectId, "/every-kind");
    const elsewhere = await webhook(await project(), "/elsewhere");
    const vm = await vmIn(projectId, "booting");
    await report(vm.id, "running");
    await report(vm.id, "stopping");
    await report(vm.id, "stopped", { byGuest: true, reason: "the guest powered itself off" });

    const [delivery] = await until("the vm.stopped delivery", async () => {
      const rows = await deliveriesOf(stoppedOnly.id);
      return rows[0]?.status === "delivered" && rows;
    });
    // Events are applied in order: vm.running was fanned out before vm.stopped was.
    expect(await deliveriesOf(stoppedOnly.id)).toHaveLength(1);
    expect(delivery).toMatchObject({ kind: "vm.stopped" });
    const requests = received.get("/stopped-only") ?? [];
    expect(requests).toHaveLength(1);
    expect(JSON.parse(requests[0]?.body ?? "{}")).toMatchObject({ kind: "vm.stopped", state: "stopped", previousState: "stopping", reason: "the guest powered itself off" });
    const every = await until("both settled states", async () => {
      const rows = await deliveriesOf(everyKind.id);
      return rows.every((row) => row.status === "delivered") && rows.length === 2 && rows;
    });
    expect(every.map((row) => row.kind)).toEqual(["vm.running", "vm.stopped"]);
    expect(received.get("/elsewhere")).toBeUndefined();
    expect(await deliveriesOf(elsewhere.id)).toEqual([]);
  });

  it("a committed live migration is sent as vm.migrated", async () => {
    const projectId = await project();
    const hook = await webhook(projectId, "/migrated", ["vm.migrated"]);
    const vm = await vmIn(projectId, "migrating", { targetWorkerId: "w2" });
    await report(vm.id, "running", { workerId: "w2" });

    const [request] = await until("the vm.migrated delivery", async () => received.get("/migrated"));
    expect(JSON.parse(request?.body ?? "{}")).toMatchObject({ kind: "vm.migrated", vm: { id: vm.id }, state: "running", previousState: "migrating" });
    expect(verifies(request?.headers["ferry-signature"], request?.body ?? "", hook.secret)).toBe(true);
    expect((await db.vm.findUniqueOrThrow({ where: { id: vm.id } })).workerId).toBe("w2");
  });

  it("a redirect is not followed: the attempt is recorded failed with where it pointed", async () => {
    const projectId = await project();
    answers.set("/moved", () => 302);
    const hook = await webhook(projectId, "/moved");
    await report((await vmIn(projectId, "booting")).id, "running");

    const [attempted] = await until("the redirected attempt", async () => {
      const rows = await deliveriesOf(hook.id);
      return (rows[0]?.attempts ?? 0) >= 1 && rows;
    });
    await db.webhook.update({ where: { id: hook.id }, data: { disabledAt: new Date() } });
    expect(attempted).toMatchObject({ lastStatusCode: 302, lastError: expect.stringContaining("a redirect to /moved-here; redirects are not followed") });
    expect(received.get("/moved-here")).toBeUndefined();
  });

  it("states the controller sets itself are sent too: a suspended vm deleted, a vm lost with its worker", async () => {
    const projectId = await project();
    await webhook(projectId, "/marked", ["vm.deleted", "vm.failed"]);
    const suspended = await vmIn(projectId, "suspended", { workerId: null, desiredState: "deleted" });
    const lost = await vmIn(projectId, "running", { workerId: "w-gone", desiredState: "suspended" });
    await inbox.add("vm.reconcile", { vmId: suspended.id });
    await inbox.add("vm.reconcile", { vmId: lost.id });

    const requests = await until("both deliveries", async () => (received.get("/marked")?.length === 2 ? received.get("/marked") : undefined));
    const bodies = requests.map((request) => JSON.parse(request.body) as { vm: { id: string } });
    expect(bodies.find((body) => body.vm.id === suspended.id)).toMatchObject({ kind: "vm.deleted", state: "deleted", previousState: "suspended" });
    expect(bodies.find((body) => body.vm.id === lost.id)).toMatchObject({
      kind: "vm.failed",
      previousState: "running",
      reason: "worker w-gone stopped responding while the vm was running; the guest was lost",
    });
  });

  it("a pending delivery whose job was lost (the controller died in between) is queued again and sent", async () => {
    const projectId = await project();
    const hook = await webhook(projectId, "/lost");
    const event = { id: randomUUID(), kind: "vm.stopped", projectId, vm: { id: "vm-lost", name: "lost" }, state: "stopped", previousState: "running", reason: null, at: new Date().toISOString() };
    await db.webhookDelivery.create({ data: { webhookId: hook.id, eventId: event.id, kind: event.kind, payload: event, createdAt: new Date(Date.now() - 60_000) } });

    const [request] = await until("the swept delivery", async () => received.get("/lost"));
    expect(JSON.parse(request?.body ?? "{}")).toEqual(event);
    await until("the swept delivery recorded", async () => (await deliveriesOf(hook.id))[0]?.status === "delivered");
  });
});
