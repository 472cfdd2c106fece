// A console that survives a live migration, on real services: two "workers" (an engine and
// a relay each, in this process), a tiny guest live-migrated from one to the other by QEMU,
// PostgreSQL saying where the vm runs, Redis carrying the vmMoved message, and the gateway
// between a websocket client speaking RFB and whichever relay has the vm. View-only consoles
// beside a control one: their keys never reach the guest, before the move or after it.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

import { createTestDatabase, createTestProject, createTestVm, createTestWorker, type TestDatabase } from "@ferry/db/testing";
import { Engine, loadImage, specForVm, type Vm, type VmSpec } from "@ferry/engine";
import { redisKeys } from "@ferry/jobs";
import { signConsoleToken } from "@ferry/tokens";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";

// The worker's relay is the gateway's real peer; apps don't import each other, tests may.
import { startConsoleRelay, type ConsoleRelay } from "../../worker/src/console-relay.ts";
import type { ConsoleGateway } from "./gateway.ts";
import { portalOrigin, RfbReader, startTestGateway, testServices, waitFor } from "./test-support.ts";

const { databaseServerUrl: serverUrl, redisUrl, imagesDir, qemuBinary } = testServices;

const secret = "console-move-test-secret-0123456789abcdef";
const prefix = `ferry-test-${randomUUID()}`;
const vmId = randomUUID();
const userId = `console-move-${vmId}`;

let testDb: TestDatabase;
let redis: Redis;
let dir: string;
let engine: Engine;
const relays: ConsoleRelay[] = [];
const guests = new Map<string, Vm>();
let gateway: ConsoleGateway;
let gatewayAddress: string;
const logLines: string[] = [];

/** The screen size as the server last said it (ServerInit, then DesktopSize rectangles). */
const screenSize = { width: 0, height: 0 };

/** Read one server message; FramebufferUpdates are parsed (raw rectangles and pseudo-encodings only). */
async function readServerMessage(rfb: RfbReader): Promise<{ type: number; rects: { x: number; y: number; w: number; h: number; encoding: number }[] }> {
  const type = (await rfb.read(1))[0]!;
  if (type === 0) {
    const header = await rfb.read(3);
    const count = header.readUInt16BE(1);
    const rects = [];
    for (let i = 0; i < count; i++) {
      const r = await rfb.read(12);
      const rect = { x: r.readUInt16BE(0), y: r.readUInt16BE(2), w: r.readUInt16BE(4), h: r.readUInt16BE(6), encoding: r.readInt32BE(8) };
      if (rect.encoding === 0) await rfb.read(rect.w * rect.h * 4);
      else if (rect.encoding === -239) await rfb.read(rect.w * rect.h * 4 + Math.floor((rect.w + 7) / 8) * rect.h); // cursor
      else if (rect.encoding !== -223 && rect.encoding !== -258 && rect.encoding !== -261 && rect.encoding !== -308) {
        throw new Error(`unexpected encoding ${rect.encoding} in a framebuffer update`);
      }
      if (rect.encoding === -261) await rfb.read(1); // QEMU LED state
      if (rect.encoding === -223) Object.assign(screenSize, { width: rect.w, height: rect.h });
      rects.push(rect);
    }
    return { type, rects };
  }
  if (type === 2) return { type, rects: [] }; // Bell
  throw new Error(`unexpected server message type ${type}`);
}

/** Read server messages until a framebuffer update carrying pixels. */
async function readScreen(rfb: RfbReader) {
  for (let i = 0; i < 10; i++) {
    const message = await readServerMessage(rfb);
    if (message.rects.some((r) => r.encoding === 0)) return message;
  }
  throw new Error("no framebuffer update with pixels in 10 server messages");
}

// XT scancodes of the keys this test types (US layout).
const scancodes: Record<string, [number, boolean]> = {
  " ": [0x39, false], ">": [0x34, true], "/": [0x35, false], "\n": [0x1c, false], "0": [0x0b, false], S: [0x1f, true],
  ...Object.fromEntries(
    Object.entries({ c: 0x2e, d: 0x20, e: 0x12, h: 0x23, i: 0x17, l: 0x26, m: 0x32, n: 0x31, o: 0x18, r: 0x13, t: 0x14, v: 0x2f, w: 0x11, y: 0x15 }).map(([k, v]) => [k, [v, false] as [number, boolean]]),
  ),
};

function keyEvent(code: number, down: boolean): Buffer {
  const message = Buffer.alloc(12);
  message[0] = 255; // QEMU client message
  message[1] = 0; // extended key event: QEMU types by key code (a plain keysym '>' loses its Shift)
  message.writeUInt16BE(down ? 1 : 0, 2);
  message.writeUInt32BE(0, 4);
  message.writeUInt32BE(code, 8);
  return message;
}

function type(ws: WebSocket, text: string): void {
  for (const char of text) {
    const [code, shift] = scancodes[char] ?? [0, false];
    if (code === 0) throw new Error(`no scancode for ${JSON.stringify(char)} in this test`);
    if (shift) ws.send(keyEvent(0x2a, true));
    ws.send(keyEvent(code, true));
    ws.send(keyEvent(code, false));
    if (shift) ws.send(keyEvent(0x2a, false));
  }
}

/** A console opened as noVNC opens one: the handshake, encodings, and the first whole screen. */
async function openConsole(mode: "view" | "control"): Promise<{ ws: WebSocket; rfb: RfbReader; closes: number[] }> {
  const token = signConsoleToken({ vmId, userId, mode, secret }).token;
  const ws = new WebSocket(`ws://${gatewayAddress}/console?token=${encodeURIComponent(token)}`, ["binary"], { origin: portalOrigin });
  const rfb = new RfbReader(ws, { timeoutMs: 15_000, pollMs: 100 });
  const closes: number[] = [];
  ws.on("close", (code) => closes.push(code));
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  expect((await rfb.read(12)).toString("latin1")).toBe("RFB 003.008\n");
  ws.send(Buffer.from("RFB 003.008\n", "latin1"));
  const typeCount = (await rfb.read(1))[0]!;
  expect([...(await rfb.read(typeCount))]).toContain(1);
  ws.send(Buffer.from([1]));
  expect((await rfb.read(4)).readUInt32BE(0)).toBe(0);
  ws.send(Buffer.from([1]));
  const init = await rfb.read(24);
  Object.assign(screenSize, { width: init.readUInt16BE(0), height: init.readUInt16BE(2) });
  await rfb.read(init.readUInt32BE(20));
  // Tight (7) and ZRLE (16) are asked for but never used: the gateway keeps their zlib
  // streams out of a session that may move. Raw, QEMU key events, desktop size.
  const encodings = [7, 16, 0, -258, -223];
  const setEncodings = Buffer.alloc(4 + 4 * encodings.length);
  setEncodings[0] = 2;
  setEncodings.writeUInt16BE(encodings.length, 2);
  encodings.forEach((encoding, i) => setEncodings.writeInt32BE(encoding, 4 + 4 * i));
  ws.send(setEncodings);
  // QEMU answers the pseudo-encodings first (key events, desktop size), then the screen.
  const screen = await askForScreen({ ws, rfb });
  expect(screen.rects.some((r) => r.encoding === 0)).toBe(true);
  return { ws, rfb, closes };
}

/**
 * A non-incremental update request, and its answer. QEMU handles one connection's messages in
 * order, so once the screen is back, every key sent before the request has reached the guest.
 */
async function askForScreen(console: { ws: WebSocket; rfb: RfbReader }) {
  const request = Buffer.alloc(10);
  request[0] = 3;
  request.writeUInt16BE(screenSize.width, 6);
  request.writeUInt16BE(screenSize.height, 8);
  console.ws.send(request);
  return readScreen(console.rfb);
}

/** Types `line` through a view-only console, then through the control one, and sees only the latter on the serial port. */
async function typeThroughBoth(viewer: { ws: WebSocket; rfb: RfbReader }, control: { ws: WebSocket }, serialLog: string, words: { viewer: string; control: string }) {
  type(viewer.ws, `echo ${words.viewer} > /dev/ttyS0\n`);
  await askForScreen(viewer);
  type(control.ws, `echo ${words.control} > /dev/ttyS0\n`);
  // Generous: a shared 2-core host under load types slowly; only a typed line that never comes fails.
  await waitFor(`${words.control} on the serial port`, () => readFileSync(serialLog, "utf8").includes(words.control), 60_000);
  expect(readFileSync(serialLog, "utf8")).not.toContain(words.viewer);
}

async function specFor(workerId: string): Promise<VmSpec> {
  const image = await loadImage(imagesDir, "tiny");
  const spec = specForVm({ id: vmId, vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(dir, workerId) });
  // The disk on "shared storage": the same path for both workers.
  return { ...spec, disks: spec.disks.map((disk) => ({ ...disk, overlay: path.join(dir, "shared", `${disk.id}.qcow2`) })) };
}

async function addWorker(db: TestDatabase["db"], workerId: string): Promise<void> {
  const relay = await startConsoleRelay({
    host: "127.0.0.1",
    port: 0,
    secret,
    workerId,
    vncSocketFor: (id) => {
      const guest = guests.get(workerId);
      return id === vmId && guest && guest.state !== "stopped" && guest.state !== "failed" ? (guest.spec.display?.vncSocket ?? undefined) : undefined;
    },
    log: pino({ level: "silent" }),
  });
  relays.push(relay);
  await createTestWorker(db, workerId, { consoleAddress: relay.address });
}

beforeAll(async () => {
  testDb = await createTestDatabase(serverUrl);
  redis = new Redis(redisUrl);
  dir = mkdtempSync(path.join(tmpdir(), "ferry-console-move-"));
  engine = await Engine.open({ runDir: path.join(dir, "run"), qemuBinary, accelerator: "tcg" });
  const { db } = testDb;
  await db.user.create({ data: { id: userId, name: "Console Mover", email: `${userId}@example.test` } });
  await addWorker(db, "source");
  await addWorker(db, "destination");
  const guest = await engine.start(await specFor("source"), { bootMarker: "FERRY-BOOT-OK" });
  guests.set("source", guest);
  await guest.whenState("running", { timeoutMs: 90_000 });
  // The shell on the console is up once the guest ticks.
  await guest.waitForSerial(/ferry-tick/, { timeoutMs: 30_000 });
  const { projectId } = await createTestProject(db, userId);
  await createTestVm(db, { id: vmId, name: "console-mover", ownerId: userId, projectId, state: "running", workerId: "source" });
  ({ gateway, address: gatewayAddress } = await startTestGateway({ db, redis, prefix, secret, logLines }));
}, 150_000);

afterAll(async () => {
  try {
    await gateway?.close();
    for (const relay of relays) await relay.close();
    await engine?.shutdown({ graceMs: 0 });
  } finally {
    redis?.disconnect();
    await testDb?.drop();
    rmSync(dir, { recursive: true, force: true });
  }
});

describe("a console open across a live migration", () => {
  it("takes keys from a control console and none from a view-only one", async () => {
    const control = await openConsole("control");
    const viewer = await openConsole("view");
    await typeThroughBoth(viewer, control, guests.get("source")!.spec.serial.logFile, { viewer: "viewer", control: "control" });
    expect(logLines.some((line) => line.includes('"mode":"view"') && line.includes("console: session opened"))).toBe(true);
    expect([control.closes, viewer.closes]).toEqual([[], []]);
    control.ws.close();
    viewer.ws.close();
    await waitFor("both consoles closed", async () => ((await (await fetch(`http://${gatewayAddress}/healthz`)).json()) as { sessions: number }).sessions === 0, 5000);
  }, 120_000);

  it("stays connected, gets a full screen from the destination and types into the moved guest", async () => {
    const control = await openConsole("control");
    const viewer = await openConsole("view");

    // The move, as the controller runs it: the vm is migrating, the destination listens, QEMU
    // migrates (the source QEMU quits, its console connection closes), then the commit.
    await testDb.db.vm.update({ where: { id: vmId }, data: { state: "migrating", targetWorkerId: "destination" } });
    const incoming = await engine.prepareIncoming(await specFor("destination"), { listen: { kind: "tcp", host: "127.0.0.1", port: 0 } });
    guests.set("destination", incoming);
    const listening = await incoming.execute<{ "socket-address": { host: string; port: string }[] }>("query-migrate");
    const address = listening["socket-address"][0]!;
    const figures = await guests.get("source")!.liveMigrate(`tcp:${address.host}:${address.port}`, { downtimeLimitMs: 50, timeoutMs: 30_000, autoConverge: true });
    expect(figures.totalTimeMs).toBeGreaterThan(0);
    await incoming.whenState("running", { timeoutMs: 10_000 });
    await testDb.db.vm.update({ where: { id: vmId }, data: { state: "running", workerId: "destination", targetWorkerId: null } });
    await redis.publish(redisKeys.vmMoved(prefix), JSON.stringify({ vmId, fromWorkerId: "source", toWorkerId: "destination" }));

    // The gateway asks the destination for the whole screen, without the browser asking.
    for (const console of [control, viewer]) {
      const after = await readScreen(console.rfb);
      const full = after.rects.find((r) => r.encoding === 0 && r.x === 0 && r.y === 0 && r.w === screenSize.width && r.h === screenSize.height);
      expect(full, JSON.stringify(after.rects)).toBeDefined();
    }
    expect(logLines.filter((line) => line.includes("console: session moved with the vm"))).toHaveLength(2);

    // Typing reaches the moved guest (its shell writes to the serial port on the destination)
    // from the control console, and still not from the view-only one.
    await typeThroughBoth(viewer, control, incoming.spec.serial.logFile, { viewer: "written", control: "moved" });

    const health = (await (await fetch(`http://${gatewayAddress}/healthz`)).json()) as { sessions: number };
    expect(health.sessions).toBe(2);
    expect([control.closes, viewer.closes]).toEqual([[], []]);
    control.ws.close();
    viewer.ws.close();
  }, 120_000);
});
