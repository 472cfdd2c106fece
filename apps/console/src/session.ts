// One open console: the browser's websocket joined to an upstream RFB connection (the
// worker relay). The two ends are separate objects on purpose: when a live migration moves
// the vm, the old upstream closes (the source QEMU quits) and the session asks the gateway
// for the destination's relay, does the RFB handshake with it itself, replays what the
// browser negotiated (pixel format, encodings), asks for a full screen, and carries on. The
// browser's websocket stays open throughout: no reconnect, no new token. A view-only session
// filters the browser's messages before they reach any upstream, so it stays view-only after a move.
import type net from "node:net";

import type { ConsoleMode } from "@ferry/tokens";
import type { Logger } from "pino";
import type { RawData, WebSocket } from "ws";

import { handshakeAsClient } from "./rfb-handshake.ts";
import { RfbClientStream, fullUpdateRequest } from "./rfb-client-stream.ts";

/** Stop reading from the vm while this much is still queued for a slow browser. */
const browserHighWater = 1024 * 1024;
/** Browser messages kept while the session moves; older input beyond this is dropped. */
const maxQueuedWhileMoving = 1000;
const handshakeTimeoutMs = 5000;

// @types/node 20.9 declares Buffer in a way TypeScript 5.9 no longer accepts as Uint8Array;
// a view over the same memory satisfies socket.write without copying.
function bytes(data: Uint8Array): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

/**
 * Finds the vm's console on the worker it runs on now, after the session's upstream closed:
 * a relay socket (after OK) on another worker, or undefined when the vm did not move.
 */
export type Relocate = (session: ConsoleSession) => Promise<{ socket: net.Socket; workerId: string } | undefined>;

export class ConsoleSession {
  private upstream: net.Socket | undefined;
  private alive = true;
  private ended = false;
  private readonly client: RfbClientStream;
  /** browser messages waiting for the next upstream (while moving) */
  private queued: Uint8Array[] = [];
  /** how many times the session moved to another worker */
  moves = 0;

  constructor(
    readonly vmId: string,
    readonly tokenId: string,
    /** "view": the browser sees the screen, its keys, pointer and clipboard never reach the vm */
    readonly mode: ConsoleMode,
    /** the worker whose relay the session is attached to */
    public workerId: string,
    private readonly browser: WebSocket,
    upstream: net.Socket,
    private readonly log: Logger,
    private readonly onEnd: (session: ConsoleSession) => void,
    private readonly relocate?: Relocate,
  ) {
    this.client = new RfbClientStream({ viewOnly: mode === "view" });
    browser.on("message", (data, isBinary) => this.fromBrowser(data, isBinary));
    browser.on("pong", () => (this.alive = true));
    browser.on("close", () => this.end("browser closed"));
    browser.on("error", (error) => this.end(`browser error: ${error.message}`));
    this.attach(upstream);
  }

  /** Ping the browser; one that missed the previous ping is gone and gets cut. */
  heartbeat(): void {
    if (!this.alive) {
      this.log.info({ vmId: this.vmId, tokenId: this.tokenId }, "console: browser missed a heartbeat, closing");
      this.browser.terminate();
      return;
    }
    this.alive = false;
    this.browser.ping();
  }

  /** Close both ends, e.g. when the gateway shuts down. */
  end(reason: string, code = 1000): void {
    if (this.ended) return;
    this.ended = true;
    this.upstream?.destroy();
    if (this.browser.readyState === this.browser.OPEN) this.browser.close(code, reason.slice(0, 120));
    else if (this.browser.readyState !== this.browser.CLOSED) this.browser.terminate();
    this.log.info({ vmId: this.vmId, tokenId: this.tokenId, reason }, "console: session closed");
    this.onEnd(this);
  }

  private attach(upstream: net.Socket): void {
    this.upstream = upstream;
    upstream.on("data", (chunk: Buffer) => {
      this.browser.send(chunk, { binary: true }, () => {
        if (upstream.isPaused() && this.browser.bufferedAmount < browserHighWater / 2) upstream.resume();
      });
      if (this.browser.bufferedAmount > browserHighWater) upstream.pause();
    });
    upstream.on("drain", () => this.browser.resume());
    upstream.on("error", (error) => this.log.info({ vmId: this.vmId, workerId: this.workerId, err: error.message }, "console: worker relay connection failed"));
    upstream.on("close", () => {
      if (this.upstream === upstream) void this.upstreamLost();
    });
    upstream.resume();
  }

  /** The worker's side closed: the vm stopped, or it moved to another worker. */
  private async upstreamLost(): Promise<void> {
    this.upstream = undefined;
    if (this.ended) return;
    if (!this.relocate || !this.client.movable) {
      this.end(this.client.opaqueReason ? `vm console closed by the worker (${this.client.opaqueReason})` : "vm console closed by the worker");
      return;
    }
    const started = Date.now();
    let moved;
    try {
      moved = await this.relocate(this);
    } catch (error) {
      this.end(`vm console closed by the worker; finding where the vm runs now failed: ${(error as Error).message}`, 1011);
      return;
    }
    if (this.ended) {
      moved?.socket.destroy();
      return;
    }
    if (!moved) {
      this.end("vm console closed by the worker");
      return;
    }
    try {
      const init = await handshakeAsClient(moved.socket, handshakeTimeoutMs);
      const replay = [this.client.pixelFormat, this.client.encodings, ...this.queued, fullUpdateRequest(init.width, init.height)];
      for (const message of replay) if (message) moved.socket.write(bytes(message));
      this.queued = [];
      const from = this.workerId;
      this.workerId = moved.workerId;
      this.moves += 1;
      this.attach(moved.socket);
      this.log.info({ vmId: this.vmId, tokenId: this.tokenId, from, to: moved.workerId, ms: Date.now() - started }, "console: session moved with the vm");
    } catch (error) {
      this.end(`the vm moved to worker ${moved.workerId} but its console could not be re-attached: ${(error as Error).message}`, 1011);
    }
  }

  private fromBrowser(data: RawData, isBinary: boolean): void {
    if (!isBinary) {
      this.end("RFB travels in binary frames; got a text frame", 1003);
      return;
    }
    const chunks = Array.isArray(data) ? data : [data instanceof ArrayBuffer ? Buffer.from(data) : data];
    for (const chunk of chunks) {
      for (const unit of this.client.push(bytes(chunk))) {
        if (!this.upstream) {
          // Moving: keep input for the new server; an update request is replaced by our full one.
          if (unit[0] !== 3) this.queued.push(unit.slice());
          if (this.queued.length > maxQueuedWhileMoving) this.queued.shift();
          continue;
        }
        if (!this.upstream.write(bytes(unit))) this.browser.pause();
      }
    }
    if (this.client.options.viewOnly && this.client.phase === "opaque") {
      this.end(`view-only console closed: ${this.client.opaqueReason}, so its input cannot be filtered`, 1008);
    }
  }
}
