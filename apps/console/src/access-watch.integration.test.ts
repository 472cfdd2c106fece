// Taking access away closes open consoles, on real services: PostgreSQL (vm, memberships, API
// tokens, portal sessions), Redis (the portal's revocation announcements), a tiny QEMU guest
// behind the worker's relay, and two gateways: one that re-checks only when told (so a close
// there proves the announcement worked) and one with the default periodic re-check and no
// announcements at all.
import { randomUUID } from "node:crypto";
import { createTestDatabase, createTestProject, createTestVm, createTestWorker, type TestDatabase } from "@ferry/db/testing";
import { type AccessRevokedMessage, redisKeys } from "@ferry/jobs";
import { signConsoleToken } from "@ferry/tokens";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { accessRevokedCloseCode } from "./access-watch.ts";
import type { ConsoleGateway } from "./gateway.ts";
import { portalOrigin, type RelayedGuest, RfbReader, startRelayedGuest, startTestGateway, testServices, waitFor } from "./test-support.ts";

const { databaseServerUrl: serverUrl, redisUrl } = testServices;

const secret = "console-access-test-secret-0123456789";
const prefix = `ferry-test-${randomUUID()}`;
const workerId = "access-test-worker";
const vmId = randomUUID();
const ownerId = "access-test-owner";

let testDb: TestDatabase;
let redis: Redis;
let relayedGuest: RelayedGuest;
let organizationId: string;
let projectId: string;
/** Re-checks only on an announcement (and when a console opens): its periodic check is an hour away. */
const announced = { gateway: undefined as ConsoleGateway | undefined, address: "", logLines: [] as string[] };
/** Re-checks every 5 s, the default, and hears no announcements (they go to another prefix). */
const periodic = { gateway: undefined as ConsoleGateway | undefined, address: "", logLines: [] as string[] };

/** A person in the vm's organization with `role`, an API token with `scopes` and a portal session. */
async function person(role: string, token: { scopes?: string[]; expiresAt?: Date } = {}) {
  const userId = `access-${randomUUID()}`;
  const { db } = testDb;
  await db.user.create({ data: { id: userId, name: "Access Tester", email: `${userId}@example.test` } });
  await db.membership.create({ data: { organizationId, userId, role } });
  const apiToken = await db.apiToken.create({
    data: { userId, projectId, name: "test", tokenHash: randomUUID(), scopes: token.scopes ?? ["vms:read", "console"], expiresAt: token.expiresAt ?? null },
  });
  const session = await db.session.create({ data: { id: randomUUID(), token: randomUUID(), userId, expiresAt: new Date(Date.now() + 3_600_000) } });
  return { userId, apiTokenId: apiToken.id, sessionId: session.id };
}

interface OpenConsole {
  ws: WebSocket;
  rfb: RfbReader;
  closed: Promise<{ code: number; reason: string }>;
}

/**
 * Open a console through `gateway` as the portal would have issued it, and with `greeting` (the
 * default) wait for the guest's RFB version line: a console closed at once may close before the
 * gateway has relayed it.
 */
async function openConsole(gateway: typeof announced, grant: { userId: string; apiTokenId?: string; sessionId?: string }, { greeting = true } = {}): Promise<OpenConsole> {
  const { token } = signConsoleToken({ vmId, ...grant, secret });
  const ws = new WebSocket(`ws://${gateway.address}/console?token=${encodeURIComponent(token)}`, ["binary"], { origin: portalOrigin });
  const rfb = new RfbReader(ws, { timeoutMs: 10_000, pollMs: 200 });
  const closed = new Promise<{ code: number; reason: string }>((resolve) => ws.once("close", (code, reason) => resolve({ code, reason: reason.toString() })));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("unexpected-response", (_req, res) => reject(new Error(`the gateway refused the console: ${res.statusCode}`)));
    ws.once("error", reject);
  });
  if (greeting) expect((await rfb.read(12)).toString("latin1")).toBe("RFB 003.008\n");
  return { ws, rfb, closed };
}

/** The console's close, or a failure naming what was awaited after `timeoutMs`. */
function closeWithin(opened: OpenConsole, timeoutMs: number): Promise<{ code: number; reason: string }> {
  return Promise.race([
    opened.closed,
    new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`the console was still open after ${timeoutMs} ms`)), timeoutMs)),
  ]);
}

/** What the portal's revokeAccess does after committing the change. */
async function announce(message: AccessRevokedMessage): Promise<void> {
  await redis.publish(redisKeys.accessRevoked(prefix), JSON.stringify(message));
}

/** The console still relays the guest: finish the RFB handshake and get a framebuffer update. */
async function stillRelays(opened: OpenConsole): Promise<void> {
  const { ws, rfb } = opened;
  ws.send(Buffer.from("RFB 003.008\n"));
  const [typeCount] = await rfb.read(1);
  await rfb.read(typeCount!);
  ws.send(Buffer.from([1])); // security type None
  expect((await rfb.read(4)).readUInt32BE(0)).toBe(0);
  ws.send(Buffer.from([1])); // ClientInit: shared
  const serverInit = await rfb.read(24);
  await rfb.read(serverInit.readUInt32BE(20));
  const request = Buffer.alloc(10);
  request.writeUInt8(3, 0);
  request.writeUInt16BE(serverInit.readUInt16BE(0), 6);
  request.writeUInt16BE(serverInit.readUInt16BE(2), 8);
  ws.send(request);
  expect((await rfb.read(1)).readUInt8(0)).toBe(0); // FramebufferUpdate
}

beforeAll(async () => {
  testDb = await createTestDatabase(serverUrl);
  redis = new Redis(redisUrl);

  relayedGuest = await startRelayedGuest({ secret, workerId, vmId });

  const { db } = testDb;
  await db.user.create({ data: { id: ownerId, name: "Access Owner", email: "access-owner@example.test" } });
  await createTestWorker(db, workerId, { consoleAddress: relayedGuest.relay.address });
  ({ organizationId, projectId } = await createTestProject(db, ownerId));
  await createTestVm(db, { id: vmId, name: "access-watched", ownerId, projectId, state: "running", workerId });

  const started = await startTestGateway({ db, redis, prefix, secret, logLines: announced.logLines, accessCheckIntervalMs: 3_600_000 });
  Object.assign(announced, started);
  Object.assign(periodic, await startTestGateway({ db, redis, prefix: `${prefix}-quiet`, secret, logLines: periodic.logLines }));
  await waitFor(
    "the gateway to subscribe to revocations",
    async () => ((await redis.pubsub("NUMSUB", redisKeys.accessRevoked(prefix))) as [string, number])[1] === 1,
    5000,
  );
});

afterAll(async () => {
  try {
    await announced.gateway?.close();
    await periodic.gateway?.close();
  } finally {
    await relayedGuest?.close();
    if (redis) {
      const keys = await redis.keys(`${prefix}*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
    await testDb?.drop();
  }
});

describe("console access watch", () => {
  it("closes a console within 3 s when the API token it was opened with is revoked", async () => {
    const member = await person("member");
    const opened = await openConsole(announced, { userId: member.userId, apiTokenId: member.apiTokenId });
    await testDb.db.apiToken.update({ where: { id: member.apiTokenId }, data: { revokedAt: new Date() } });
    await announce({ apiTokenId: member.apiTokenId });
    expect(await closeWithin(opened, 3000)).toEqual({
      code: accessRevokedCloseCode,
      reason: "access revoked: the API token it was opened with was revoked",
    });
    const entry = announced.logLines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.apiTokenId === member.apiTokenId && line.refusal);
    expect(entry).toMatchObject({ vmId, userId: member.userId, msg: "console: access revoked, closing the console" });
  });

  it("closes a console within 3 s when its person is removed from the vm's organization", async () => {
    const member = await person("admin");
    const opened = await openConsole(announced, { userId: member.userId, sessionId: member.sessionId });
    await testDb.db.membership.delete({ where: { organizationId_userId: { organizationId, userId: member.userId } } });
    await announce({ userId: member.userId, organizationId });
    expect(await closeWithin(opened, 3000)).toEqual({
      code: accessRevokedCloseCode,
      reason: "access revoked: you are no longer a member of the vm's organization",
    });
  });

  it("closes a console within 3 s when its person is demoted to viewer", async () => {
    const member = await person("member");
    const opened = await openConsole(announced, { userId: member.userId, sessionId: member.sessionId });
    await testDb.db.membership.update({ where: { organizationId_userId: { organizationId, userId: member.userId } }, data: { role: "viewer" } });
    await announce({ userId: member.userId, organizationId });
    expect(await closeWithin(opened, 3000)).toEqual({
      code: accessRevokedCloseCode,
      reason: "access revoked: your role in the vm's organization is now viewer; a console takes member or above",
    });
  });

  it("leaves a console open when another token is revoked", async () => {
    const member = await person("member");
    const other = await person("member");
    const kept = await openConsole(announced, { userId: member.userId, apiTokenId: member.apiTokenId });
    const cut = await openConsole(announced, { userId: other.userId, apiTokenId: other.apiTokenId });
    await testDb.db.apiToken.update({ where: { id: other.apiTokenId }, data: { revokedAt: new Date() } });
    await announce({ apiTokenId: other.apiTokenId });
    expect((await closeWithin(cut, 3000)).code).toBe(accessRevokedCloseCode);
    expect(kept.ws.readyState).toBe(WebSocket.OPEN);
    await stillRelays(kept);
    kept.ws.close();
  });

  it("closes a console at once when its API token was revoked between issue and open", async () => {
    const member = await person("member");
    await testDb.db.apiToken.update({ where: { id: member.apiTokenId }, data: { revokedAt: new Date() } });
    // The check made at open races the guest's first bytes: the console may close before them.
    const opened = await openConsole(announced, { userId: member.userId, apiTokenId: member.apiTokenId }, { greeting: false });
    expect(await closeWithin(opened, 3000)).toEqual({
      code: accessRevokedCloseCode,
      reason: "access revoked: the API token it was opened with was revoked",
    });
  });

  it("without announcements, the periodic check closes within ~6 s: token revoked, token expired, member removed, signed out", async () => {
    const { db } = testDb;
    const revoked = await person("member");
    const expiring = await person("member", { expiresAt: new Date(Date.now() + 4000) });
    const removed = await person("member");
    const signedOut = await person("member");
    const untouched = await person("member");
    const consoles = {
      revoked: await openConsole(periodic, { userId: revoked.userId, apiTokenId: revoked.apiTokenId }),
      expiring: await openConsole(periodic, { userId: expiring.userId, apiTokenId: expiring.apiTokenId }),
      removed: await openConsole(periodic, { userId: removed.userId, sessionId: removed.sessionId }),
      signedOut: await openConsole(periodic, { userId: signedOut.userId, sessionId: signedOut.sessionId }),
      untouched: await openConsole(periodic, { userId: untouched.userId, sessionId: untouched.sessionId }),
    };
    await db.apiToken.update({ where: { id: revoked.apiTokenId }, data: { revokedAt: new Date() } });
    await db.membership.delete({ where: { organizationId_userId: { organizationId, userId: removed.userId } } });
    await db.session.delete({ where: { id: signedOut.sessionId } });

    const [revokedClose, expiredClose, removedClose, signedOutClose] = await Promise.all([
      closeWithin(consoles.revoked, 6500),
      closeWithin(consoles.expiring, 4000 + 6500),
      closeWithin(consoles.removed, 6500),
      closeWithin(consoles.signedOut, 6500),
    ]);
    expect(revokedClose).toEqual({ code: accessRevokedCloseCode, reason: "access revoked: the API token it was opened with was revoked" });
    expect(expiredClose.code).toBe(accessRevokedCloseCode);
    expect(expiredClose.reason).toMatch(/^access revoked: the API token it was opened with expired at \d{4}-\d\d-\d\dT/);
    expect(removedClose).toEqual({ code: accessRevokedCloseCode, reason: "access revoked: you are no longer a member of the vm's organization" });
    expect(signedOutClose).toEqual({ code: accessRevokedCloseCode, reason: "access revoked: the portal session it was opened from was signed out" });
    expect(consoles.untouched.ws.readyState).toBe(WebSocket.OPEN);
    await stillRelays(consoles.untouched);
    consoles.untouched.ws.close();
  });
  it("keeps a lab student's console open without membership, and closes it within 3 s when the class ends", async () => {
    const { db } = testDb;
    const studentId = `student-${randomUUID()}`;
    await db.user.create({ data: { id: studentId, name: "Student", email: `${studentId}@school.test` } });
    const session = await db.session.create({ data: { id: randomUUID(), token: randomUUID(), userId: studentId, expiresAt: new Date(Date.now() + 3_600_000) } });
    const template = await db.labTemplate.create({ data: { name: "watched-lab", ownerId, projectId } });
    const version = await db.labTemplateVersion.create({
      data: { templateId: template.id, version: 1, status: "ready", sourceVmId: vmId, image: "tiny", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64" },
    });
    const labClass = await db.labClass.create({
      data: {
        projectId,
        templateId: template.id,
        templateVersionId: version.id,
        name: "watched-class",
        instructorId: ownerId,
        opensAt: new Date(Date.now() - 60_000),
        closesAt: new Date(Date.now() + 3_600_000),
        sessionMinutes: 30,
        totalMinutes: 60,
        status: "started",
        seats: { create: { email: `${studentId}@school.test`, userId: studentId, vmId } },
      },
    });
    const opened = await openConsole(announced, { userId: studentId, sessionId: session.id });
    await announce({ userId: studentId });
    await stillRelays(opened);

    await db.labClass.update({ where: { id: labClass.id }, data: { status: "ended", endedAt: new Date() } });
    await announce({ userId: studentId });
    expect(await closeWithin(opened, 3000)).toEqual({
      code: accessRevokedCloseCode,
      reason: "access revoked: the lab class ended; your vm was suspended and resumes where it was next time",
    });
  });
});
