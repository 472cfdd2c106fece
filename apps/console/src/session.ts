// One open console: the browser's websocket joined to an upstream RFB connection (the
// worker relay). The two ends are separate objects on purpose: a live migration will later
// hand the session a new upstream on another worker while the browser stays connected.
import type net from "node:net";
import type { Logger } from "pino";
import type { RawData, WebSocket } from "ws";

/** Stop reading from the vm while this much is still queued for a slow browser. */
const browserHighWater = 1024 * 1024;

// @types/node 20.9 declares Buffer in a way TypeScript 5.9 no longer accepts as Uint8Array;
// a view over the same memory satisfies socket.write without copying.
function bytes(data: Buffer): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}

export class ConsoleSession {
  private upstream: net.Socket | undefined;
  private alive = true;
  private ended = false;

  constructor(
    readonly vmId: string,
    readonly tokenId: string,
    private readonly browser: WebSocket,
    upstream: net.Socket,
    private readonly log: Logger,
    private readonly onEnd: (session: ConsoleSession) => void,
  ) {
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
    upstream.on("error", (error) => this.end(`worker relay error: ${error.message}`, 1011));
    upstream.on("close", () => this.end("vm console closed by the worker"));
    upstream.resume();
  }

  private fromBrowser(data: RawData, isBinary: boolean): void {
    if (!isBinary) {
      this.end("RFB travels in binary frames; got a text frame", 1003);
      return;
    }
    const chunks = Array.isArray(data) ? data : [data instanceof ArrayBuffer ? Buffer.from(data) : data];
    for (const chunk of chunks) {
      if (this.upstream && !this.upstream.write(bytes(chunk))) this.browser.pause();
    }
  }
}
