// The console gateway: browsers open `GET /console?token=…` as a websocket; we check the
// Origin, the signed single-use console token and the vm's placement, dial the vm's worker
// relay, and only then complete the upgrade, so every refusal is a plain HTTP answer with
// a JSON body the portal can show.
//
// 1. HTTP: /healthz and JSON 404s
// 2. Upgrade: checks in order (path, Origin, token, single use, vm, worker relay)
// 3. Moves: a vm live-migrated to another worker takes its open consoles along
// 4. Sessions: heartbeat, access re-checks (access-watch.ts) and shutdown
import http, { STATUS_CODES, type IncomingMessage } from "node:http";
import type net from "node:net";
import type { Duplex } from "node:stream";
import type { Db } from "@ferry/db";
import { redisKeys, vmMovedMessage, type VmState } from "@ferry/jobs";
import { type ConsoleMode, signRelayTicket, TokenError, verifyConsoleToken } from "@ferry/tokens";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import { WebSocketServer } from "ws";
import { watchConsoleAccess } from "./access-watch.ts";
import { ConsoleRefusal, RelayError } from "./errors.ts";
import { dialRelay } from "./relay-dial.ts";
import { ConsoleSession, type Relocate } from "./session.ts";

/** States in which the vm's QEMU is up and its VNC socket answers. */
const consoleStates: readonly VmState[] = ["booting", "running", "rebooting", "migrating"];
/** A redeemed token id is remembered longer than any token lives (60 s). */
const tokenUsedSeconds = 120;

export interface ConsoleGatewayOptions {
  db: Db;
  redis: Redis;
  /** FERRY_QUEUE_PREFIX: namespace of the Redis keys. */
  prefix: string;
  /** FERRY_CLUSTER_SECRET: verifies console tokens, signs relay tickets. */
  secret: string;
  /** Origins (scheme://host[:port]) whose pages may open a console. */
  allowedOrigins: readonly string[];
  log: Logger;
  heartbeatIntervalMs?: number;
  relayTimeoutMs?: number;
  /** How long a session whose worker hung up waits for its vm to show up on another worker. */
  moveTimeoutMs?: number;
  /** How often every open console's access is re-checked; revocations announced on Redis act at once. */
  accessCheckIntervalMs?: number;
}

export interface ConsoleGateway {
  /** Listen on host:port (0 = ephemeral); resolves to the bound `host:port`. */
  listen(port: number, host: string): Promise<string>;
  /** Close every console session and stop listening. */
  close(): Promise<void>;
}

/** Build the gateway's HTTP server; nothing listens until `listen`. */
export function createConsoleGateway(options: ConsoleGatewayOptions): ConsoleGateway {
  const { log } = options;
  const allowedOrigins = new Set(options.allowedOrigins.map(normalizeOrigin));
  const sessions = new Set<ConsoleSession>();
  const access = watchConsoleAccess({ db: options.db, redis: options.redis, prefix: options.prefix, sessions, log, intervalMs: options.accessCheckIntervalMs });
  const wss = new WebSocketServer({
    noServer: true,
    // noVNC offers "binary"; answering with it is what makes the browser side accept us.
    handleProtocols: (protocols) => (protocols.has("binary") ? "binary" : false),
  });

  // 1. HTTP
  const server = http.createServer((req, res) => {
    const { pathname } = new URL(req.url ?? "/", "http://gateway");
    if (req.method === "GET" && pathname === "/healthz") {
      sendJson(res, 200, { ok: true, sessions: sessions.size });
      return;
    }
    if (pathname === "/console") {
      sendJson(res, 426, {
        error: { code: "upgrade_required", message: "Open /console as a websocket (noVNC does this for you)." },
      });
      return;
    }
    sendJson(res, 404, { error: { code: "not_found", message: `No route ${req.method} ${pathname}; try /console or /healthz.` } });
  });

  // 2. Upgrade
  server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const remote = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
    socket.on("error", (error) => log.debug({ remote, err: error.message }, "console: client socket error"));
    const context: UpgradeContext = {};
    openConsole(req, context)
      .then((upstream) => {
        if (socket.destroyed) {
          upstream.destroy();
          log.info({ remote, ...context }, "console: browser left before the upgrade completed");
          return;
        }
        wss.handleUpgrade(req, socket, head, (browser) => {
          const session = new ConsoleSession(
            context.vmId!,
            context.tokenId!,
            context.mode!,
            context.workerId!,
            browser,
            upstream,
            log,
            (ended) => sessions.delete(ended),
            relocate,
          );
          sessions.add(session);
          access.add(session, { vmId: context.vmId!, userId: context.userId!, apiTokenId: context.apiTokenId, sessionId: context.sessionId });
          log.info({ remote, ...context }, "console: session opened");
        });
      })
      .catch((error: unknown) => {
        const refusal =
          error instanceof ConsoleRefusal
            ? error
            : new ConsoleRefusal(500, "internal", `The console gateway failed: ${String(error)}. Try again; if it persists, check the gateway's log.`);
        const entry = { remote, ...context, status: refusal.status, code: refusal.code, reason: refusal.message };
        if (refusal.status >= 500) log.error(entry, "console: upgrade failed");
        else log.warn(entry, "console: upgrade refused");
        refuseUpgrade(socket, refusal);
      });
  });

  async function openConsole(req: IncomingMessage, context: UpgradeContext): Promise<net.Socket> {
    const url = new URL(req.url ?? "/", "http://gateway");
    if (url.pathname !== "/console") {
      throw new ConsoleRefusal(404, "not_found", `No websocket at ${url.pathname}; open /console?token=….`);
    }
    const origin = req.headers.origin;
    if (!origin || !allowedOrigins.has(normalizeOrigin(origin))) {
      throw new ConsoleRefusal(
        403,
        "origin_not_allowed",
        `Origin ${origin ?? "(none)"} may not open consoles. Open the console from the portal, or add the origin to FERRY_ALLOWED_ORIGINS.`,
      );
    }
    const token = url.searchParams.get("token");
    if (!token) {
      throw new ConsoleRefusal(401, "malformed", "No console token in the URL. Open the console from the portal.");
    }
    let claims;
    try {
      claims = verifyConsoleToken(token, { secret: options.secret });
    } catch (error) {
      if (error instanceof TokenError) throw new ConsoleRefusal(401, error.code, error.message);
      throw error;
    }
    context.tokenId = claims.tokenId;
    context.vmId = claims.vmId;
    context.userId = claims.userId;
    context.apiTokenId = claims.apiTokenId;
    context.sessionId = claims.sessionId;
    context.mode = claims.mode;
    const first = await options.redis.set(redisKeys.consoleTokenUsed(options.prefix, claims.tokenId), "1", "EX", tokenUsedSeconds, "NX");
    if (first !== "OK") {
      throw new ConsoleRefusal(401, "token_used", "This console token was already used. Open the console again from the portal.");
    }
    const vm = await options.db.vm.findUnique({
      where: { id: claims.vmId },
      select: { state: true, deletedAt: true, workerId: true, worker: { select: { consoleAddress: true } } },
    });
    if (!vm || vm.deletedAt) {
      throw new ConsoleRefusal(404, "vm_not_found", `vm ${claims.vmId} does not exist (or was deleted).`);
    }
    if (!consoleStates.includes(vm.state as VmState)) {
      throw new ConsoleRefusal(409, "vm_not_running", `vm ${claims.vmId} is ${vm.state}; start it, then open the console again.`);
    }
    if (!vm.workerId || !vm.worker) {
      throw new ConsoleRefusal(409, "vm_not_placed", `vm ${claims.vmId} is ${vm.state} but runs on no worker yet; try again in a moment.`);
    }
    context.workerId = vm.workerId;
    try {
      return await dialRelay({
        address: vm.worker.consoleAddress,
        ticket: signRelayTicket({ vmId: claims.vmId, workerId: vm.workerId, secret: options.secret }),
        timeoutMs: options.relayTimeoutMs ?? 5000,
      });
    } catch (error) {
      if (!(error instanceof RelayError)) throw error;
      // The database said the vm runs there but the worker disagrees: it moved or stopped.
      if (error.code === "vm_not_here") throw new ConsoleRefusal(409, "vm_not_running", `${error.message}`);
      throw new ConsoleRefusal(
        502,
        error.code,
        `Could not open vm ${claims.vmId}'s console on worker ${vm.workerId}: ${error.message} Try again in a moment.`,
      );
    }
  }

  // 3. Moves. The source's QEMU quits as soon as the migration completes, a moment before the
  // controller commits the vm's new worker: the session then waits here, woken by the
  // controller's vmMoved message (or a 100 ms look at the database, should a message be lost).
  const moveWaiters = new Map<string, Set<() => void>>();
  const subscriber = options.redis.duplicate();
  subscriber.on("error", (error) => log.warn({ err: error.message }, "console: vm-moved subscription error"));
  subscriber.on("message", (_channel, text: string) => {
    let message;
    try {
      message = vmMovedMessage.parse(JSON.parse(text));
    } catch {
      log.warn({ text }, "console: unreadable vm-moved message ignored");
      return;
    }
    for (const wake of moveWaiters.get(message.vmId) ?? []) wake();
  });
  const subscribed = subscriber.subscribe(redisKeys.vmMoved(options.prefix)).catch((error: unknown) => {
    log.warn({ err: String(error) }, "console: cannot subscribe to vm-moved messages; moves are found by polling");
  });

  const pause = (vmId: string, ms: number) =>
    new Promise<void>((resolve) => {
      const waiters = moveWaiters.get(vmId) ?? new Set<() => void>();
      moveWaiters.set(vmId, waiters);
      const wake = () => {
        clearTimeout(timer);
        waiters.delete(wake);
        if (waiters.size === 0) moveWaiters.delete(vmId);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      waiters.add(wake);
    });

  const relocate: Relocate = async (session) => {
    const deadline = Date.now() + (options.moveTimeoutMs ?? 90_000);
    let lastError: unknown;
    while (Date.now() < deadline) {
      const vm = await options.db.vm.findUnique({
        where: { id: session.vmId },
        select: { state: true, deletedAt: true, workerId: true, targetWorkerId: true, worker: { select: { consoleAddress: true } } },
      });
      if (!vm || vm.deletedAt) return undefined;
      const moved = vm.workerId !== null && vm.workerId !== session.workerId;
      let destination: { workerId: string; address: string } | undefined;
      if (moved && vm.worker && consoleStates.includes(vm.state as VmState)) {
        destination = { workerId: vm.workerId!, address: vm.worker.consoleAddress };
      } else if (!moved && vm.state === "migrating" && vm.targetWorkerId && vm.targetWorkerId !== session.workerId) {
        // The source QEMU quits once the destination has the guest, a moment before the move
        // is committed: go to the destination now rather than wait for the commit.
        const target = await options.db.worker.findUnique({ where: { id: vm.targetWorkerId }, select: { consoleAddress: true } });
        if (target) destination = { workerId: vm.targetWorkerId, address: target.consoleAddress };
      }
      if (destination) {
        try {
          const socket = await dialRelay({
            address: destination.address,
            ticket: signRelayTicket({ vmId: session.vmId, workerId: destination.workerId, secret: options.secret }),
            timeoutMs: options.relayTimeoutMs ?? 5000,
          });
          return { socket, workerId: destination.workerId };
        } catch (error) {
          lastError = error;
        }
      } else if (!moved && vm.state !== "migrating") {
        // Still on the same worker and not moving: the console closed because the vm stopped.
        return undefined;
      }
      await pause(session.vmId, 100);
    }
    throw new Error(
      `vm ${session.vmId} did not come up on another worker within ${options.moveTimeoutMs ?? 90_000} ms${lastError ? ` (last: ${(lastError as Error).message})` : ""}`,
    );
  };

  // 4. Sessions
  const heartbeat = setInterval(() => {
    for (const session of sessions) session.heartbeat();
  }, options.heartbeatIntervalMs ?? 30_000);
  heartbeat.unref();

  let closing: Promise<void> | undefined;
  return {
    listen: (port, host) =>
      new Promise((resolve, reject) => {
        server.once("error", reject);
        server.listen(port, host, () => {
          server.off("error", reject);
          const bound = server.address() as net.AddressInfo;
          resolve(`${host.includes(":") ? `[${host}]` : host}:${bound.port}`);
        });
      }),
    close: () =>
      (closing ??= new Promise<void>((resolve, reject) => {
        clearInterval(heartbeat);
        for (const session of sessions) session.end("console gateway shutting down", 1001);
        void subscribed.then(() => subscriber.disconnect());
        wss.close();
        server.close((error) => (error ? reject(error) : resolve()));
        server.closeAllConnections();
      }).finally(() => access.close())),
  };
}

/** What an upgrade found out so far, for its log lines: the token's claims, then the vm's worker. */
interface UpgradeContext {
  tokenId?: string;
  vmId?: string;
  workerId?: string;
  userId?: string;
  apiTokenId?: string;
  sessionId?: string;
  mode?: ConsoleMode;
}

function normalizeOrigin(origin: string): string {
  try {
    return new URL(origin).origin;
  } catch {
    return origin;
  }
}

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function refuseUpgrade(socket: Duplex, refusal: ConsoleRefusal): void {
  if (socket.destroyed) return;
  const body = JSON.stringify({ error: { code: refusal.code, message: refusal.message } });
  socket.end(
    `HTTP/1.1 ${refusal.status} ${STATUS_CODES[refusal.status]}\r\n` +
      "Connection: close\r\nContent-Type: application/json\r\n" +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    () => socket.destroy(),
  );
}
