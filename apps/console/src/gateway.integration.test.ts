// The whole console path on real services: PostgreSQL (vm and worker rows), Redis (single
// use), a tiny QEMU guest with its VNC on a unix socket, the worker's relay and the gateway,
// driven by a websocket client that speaks just enough RFB to get a framebuffer update.
import { randomUUID } from "node:crypto";
import { createTestDatabase, createTestProject, createTestVm, createTestWorker, type TestDatabase } from "@ferry/db/testing";
import { redisKeys } from "@ferry/jobs";
import { signConsoleToken } from "@ferry/tokens";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import type { ConsoleGateway } from "./gateway.ts";
import { portalOrigin, type RelayedGuest, RfbReader, startRelayedGuest, startTestGateway, testServices, waitFor } from "./test-support.ts";

const { databaseServerUrl: serverUrl, redisUrl } = testServices;

const secret = "console-gateway-test-secret-0123456789";
const prefix = `ferry-test-${randomUUID()}`;
const workerId = "console-test-worker";
const runningVm = randomUUID();
const stoppedVm = randomUUID();
const userId = "console-test-user";

let testDb: TestDatabase;
let redis: Redis;
let relayedGuest: RelayedGuest;
let gateway: ConsoleGateway;
let gatewayAddress: string;
const logLines: string[] = [];

function tokenFor(vmId: string, options: { ttlSeconds?: number; now?: Date } = {}): { token: string; tokenId: string } {
  return signConsoleToken({ vmId, userId, secret, ...options });
}

function consoleUrl(token: string): string {
  return `ws://${gatewayAddress}/console?token=${encodeURIComponent(token)}`;
}

/** Open a console websocket; resolves with the socket, or with the HTTP refusal. */
function openConsole(
  token: string,
  options: { origin?: string; autoPong?: boolean } = {},
): Promise<{ ws: WebSocket; rfb: RfbReader } | { status: number; body: { error: { code: string; message: string } } }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(consoleUrl(token), ["binary"], {
      origin: "origin" in options ? options.origin : portalOrigin,
      autoPong: options.autoPong ?? true,
    });
    // The RFB greeting can arrive in the same packet as the upgrade answer: read from the start.
    const rfb = new RfbReader(ws, { timeoutMs: 10_000, pollMs: 200 });
    ws.once("open", () => resolve({ ws, rfb }));
    ws.once("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (chunk: Buffer) => (body += chunk.toString()));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(body) }));
    });
    ws.once("error", reject);
  });
}

async function refusal(token: string, origin?: string) {
  const result = await openConsole(token, origin === undefined ? {} : { origin });
  if ("ws" in result) {
    result.ws.close();
    throw new Error("the gateway opened a console it should have refused");
  }
  return result;
}

async function health(): Promise<{ ok: boolean; sessions: number }> {
  const response = await fetch(`http://${gatewayAddress}/healthz`);
  expect(response.status).toBe(200);
  return (await response.json()) as { ok: boolean; sessions: number };
}

beforeAll(async () => {
  testDb = await createTestDatabase(serverUrl);
  redis = new Redis(redisUrl);

  relayedGuest = await startRelayedGuest({ secret, workerId, vmId: runningVm });

  const { db } = testDb;
  await db.user.create({ data: { id: userId, name: "Console Tester", email: "console@example.test" } });
  await createTestWorker(db, workerId, { consoleAddress: relayedGuest.relay.address });
  const { projectId } = await createTestProject(db, userId);
  await createTestVm(db, { ownerId: userId, projectId, id: runningVm, name: "console-running", state: "running", workerId });
  await createTestVm(db, { ownerId: userId, projectId, id: stoppedVm, name: "console-stopped", state: "stopped", desiredState: "stopped" });

  ({ gateway, address: gatewayAddress } = await startTestGateway({ db, redis, prefix, secret, logLines, heartbeatIntervalMs: 300 }));
});

afterAll(async () => {
  try {
    await gateway?.close();
  } finally {
    await relayedGuest?.close();
    if (redis) {
      const keys = await redis.keys(`${prefix}:*`);
      if (keys.length > 0) await redis.del(...keys);
      await redis.quit();
    }
    await testDb?.drop();
  }
});

describe("console gateway", () => {
  it("answers /healthz", async () => {
    expect(await health()).toEqual({ ok: true, sessions: 0 });
  });

  it("opens a vm's console: RFB greeting, handshake, framebuffer update", async () => {
    const { token, tokenId } = tokenFor(runningVm);
    const opened = await openConsole(token);
    if (!("ws" in opened)) throw new Error(`refused: ${JSON.stringify(opened.body)}`);
    const { ws, rfb } = opened;
    expect(ws.protocol).toBe("binary");

    expect((await rfb.read(12)).toString("latin1")).toBe("RFB 003.008\n");
    ws.send(Buffer.from("RFB 003.008\n"));
    const [typeCount, firstType] = await rfb.read(2);
    expect(typeCount).toBeGreaterThan(0);
    expect([firstType, ...(await rfb.read(typeCount! - 1))]).toContain(1);
    ws.send(Buffer.from([1])); // security type None
    expect((await rfb.read(4)).readUInt32BE(0)).toBe(0); // SecurityResult OK
    ws.send(Buffer.from([1])); // ClientInit: shared
    const serverInit = await rfb.read(24);
    const width = serverInit.readUInt16BE(0);
    const height = serverInit.readUInt16BE(2);
    expect([width, height]).toEqual([720, 400]);
    await rfb.read(serverInit.readUInt32BE(20)); // desktop name
    const request = Buffer.alloc(10);
    request.writeUInt8(3, 0); // FramebufferUpdateRequest, non-incremental, whole screen
    request.writeUInt16BE(width, 6);
    request.writeUInt16BE(height, 8);
    ws.send(request);
    const update = await rfb.read(4);
    expect(update.readUInt8(0)).toBe(0); // FramebufferUpdate
    expect(update.readUInt16BE(2)).toBeGreaterThan(0); // rectangles

    expect((await health()).sessions).toBe(1);
    expect(await redis.exists(redisKeys.consoleTokenUsed(prefix, tokenId))).toBe(1);
    const closed = new Promise((resolve) => ws.once("close", resolve));
    ws.close();
    await closed;
    await waitFor("the session to end", () => logLines.some((line) => line.includes(tokenId) && line.includes("session closed")), 5000);
    expect((await health()).sessions).toBe(0);
  });

  it("refuses a token used a second time with 401", async () => {
    const { token } = tokenFor(runningVm);
    const first = await openConsole(token);
    if (!("ws" in first)) throw new Error(`refused: ${JSON.stringify(first.body)}`);
    first.ws.close();
    const second = await refusal(token);
    expect(second.status).toBe(401);
    expect(second.body.error.code).toBe("token_used");
  });

  it("refuses an expired token with 401", async () => {
    const { token } = tokenFor(runningVm, { ttlSeconds: 5, now: new Date(Date.now() - 10_000) });
    const refused = await refusal(token);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("expired");
  });

  it("refuses a forged signature with 401", async () => {
    const { token } = tokenFor(runningVm);
    const forged = `${token.split(".")[0]}.${Buffer.alloc(32, 1).toString("base64url")}`;
    const refused = await refusal(forged);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("bad_signature");
  });

  it("refuses a token whose vm id was changed with 401", async () => {
    const { token } = tokenFor(stoppedVm);
    const [encoded, signature] = token.split(".");
    const payload = JSON.parse(Buffer.from(encoded!, "base64url").toString()) as { vm: string };
    payload.vm = runningVm;
    const tampered = `${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${signature}`;
    const refused = await refusal(tampered);
    expect(refused.status).toBe(401);
    expect(refused.body.error.code).toBe("bad_signature");
  });

  it("refuses a page from another origin, or none, with 403", async () => {
    for (const origin of ["http://evil.test", ""]) {
      const refused = await refusal(tokenFor(runningVm).token, origin);
      expect(refused.status).toBe(403);
      expect(refused.body.error.code).toBe("origin_not_allowed");
    }
  });

  it("refuses a vm that is not running with 409", async () => {
    const refused = await refusal(tokenFor(stoppedVm).token);
    expect(refused.status).toBe(409);
    expect(refused.body.error).toEqual({
      code: "vm_not_running",
      message: `vm ${stoppedVm} is stopped; start it, then open the console again.`,
    });
  });

  it("refuses an unknown vm with 404", async () => {
    const refused = await refusal(tokenFor(randomUUID()).token);
    expect(refused.status).toBe(404);
    expect(refused.body.error.code).toBe("vm_not_found");
  });

  it("logs each refusal with reason, token id and remote address, never the token", async () => {
    const { token, tokenId } = tokenFor(stoppedVm);
    await refusal(token);
    const entry = logLines.map((line) => JSON.parse(line) as Record<string, unknown>).find((line) => line.tokenId === tokenId);
    expect(entry).toMatchObject({ code: "vm_not_running", status: 409, vmId: stoppedVm, msg: "console: upgrade refused" });
    expect(entry?.remote).toMatch(/^127\.0\.0\.1:\d+$/);
    const signature = token.split(".")[1]!;
    expect(logLines.some((line) => line.includes(signature))).toBe(false);
  });

  it("cuts a browser that stops answering heartbeat pings", async () => {
    const opened = await openConsole(tokenFor(runningVm).token, { autoPong: false });
    if (!("ws" in opened)) throw new Error(`refused: ${JSON.stringify(opened.body)}`);
    const closed = await new Promise<number>((resolve) => opened.ws.once("close", resolve));
    expect(closed).toBe(1006);
    await waitFor("the session to end", async () => (await health()).sessions === 0, 5000);
  });

  it("closes the browser when the worker relay goes away", async () => {
    const opened = await openConsole(tokenFor(runningVm).token);
    if (!("ws" in opened)) throw new Error(`refused: ${JSON.stringify(opened.body)}`);
    expect((await opened.rfb.read(12)).toString("latin1")).toBe("RFB 003.008\n");
    const closed = new Promise<number>((resolve) => opened.ws.once("close", resolve));
    await relayedGuest.relay.close();
    expect(await closed).toBe(1000);
    expect((await health()).sessions).toBe(0);
  });
});
