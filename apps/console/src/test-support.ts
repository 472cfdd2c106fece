// Support for the console integration tests: the services they run on, the gateway under test,
// a websocket reader for the RFB stream it relays, and a tiny guest behind the worker's relay.
import { startVncGuest } from "@ferry/engine/testing";
import { pino } from "pino";
import type { WebSocket } from "ws";

// The worker's relay is the gateway's real peer; apps don't import each other, tests may.
import { startConsoleRelay, type ConsoleRelay } from "../../worker/src/console-relay.ts";

import { type ConsoleGateway, type ConsoleGatewayOptions, createConsoleGateway } from "./gateway.ts";

/** The database server, Redis, images and QEMU the tests use: CI's, else this machine's. */
export const testServices = {
  databaseServerUrl: process.env.FERRY_TEST_DATABASE_URL ?? "postgresql://postgres@127.0.0.1:5440/postgres",
  redisUrl: process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390",
  imagesDir: process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images",
  qemuBinary: process.env.FERRY_QEMU_BINARY ?? "qemu-system-x86_64",
};

/** The origin the tests' gateway allows, as the portal's pages would send it. */
export const portalOrigin = "http://portal.test:3000";

/** Starts a gateway on a free loopback port that allows the portal's origin; its log lines go to `logLines`. */
export async function startTestGateway(
  options: Omit<ConsoleGatewayOptions, "allowedOrigins" | "log"> & { logLines: string[] },
): Promise<{ gateway: ConsoleGateway; address: string }> {
  const { logLines, ...gatewayOptions } = options;
  const gateway = createConsoleGateway({
    ...gatewayOptions,
    allowedOrigins: [portalOrigin],
    log: pino({ level: "info" }, { write: (line: string) => void logLines.push(line) }),
  });
  return { gateway, address: await gateway.listen(0, "127.0.0.1") };
}

/** Polls `check` every 50 ms until it is true; throws after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Reads exact byte counts from the RFB stream arriving in websocket frames. */
export class RfbReader {
  private buffered = Buffer.alloc(0);
  private waiting: (() => void) | undefined;
  /** `timeoutMs` is how long a read waits by default; `pollMs` how often a waiting read looks again. */
  constructor(
    ws: WebSocket,
    private readonly options: { timeoutMs: number; pollMs: number },
  ) {
    ws.on("message", (data: Buffer) => {
      this.buffered = Buffer.concat([new Uint8Array(this.buffered), new Uint8Array(data)]);
      this.waiting?.();
    });
  }
  async read(count: number, timeoutMs = this.options.timeoutMs): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buffered.length < count) {
      if (Date.now() > deadline) throw new Error(`RFB: wanted ${count} bytes, have ${this.buffered.length}`);
      await new Promise<void>((resolve) => {
        this.waiting = resolve;
        setTimeout(resolve, this.options.pollMs);
      });
    }
    const out = this.buffered.subarray(0, count);
    this.buffered = this.buffered.subarray(count);
    return out;
  }
}

/** A tiny guest behind a worker's relay; `close` stops both. */
export interface RelayedGuest {
  relay: ConsoleRelay;
  close(): Promise<void>;
}

/** Starts a tiny guest and worker `workerId`'s relay, which serves its display as vm `vmId`. */
export async function startRelayedGuest(options: { secret: string; workerId: string; vmId: string }): Promise<RelayedGuest> {
  const guest = await startVncGuest(testServices);
  try {
    const relay = await startConsoleRelay({
      host: "127.0.0.1",
      port: 0,
      secret: options.secret,
      workerId: options.workerId,
      vncSocketFor: (id) => (id === options.vmId ? guest.vncSocket : undefined),
      log: pino({ level: "silent" }),
    });
    return {
      relay,
      async close() {
        try {
          await relay.close();
        } finally {
          await guest.stop();
        }
      },
    };
  } catch (error) {
    await guest.stop();
    throw error;
  }
}
