// A minimal RFB 3.8 client over a websocket, enough to time a console: handshake with
// security type None, ask for a full framebuffer update, and report when updates arrive.
import WebSocket from "ws";

export interface RfbSession {
  width: number;
  height: number;
  /** Resolves with the time (performance.now()) the next FramebufferUpdate header arrives. */
  nextUpdate(incremental: boolean): Promise<number>;
  /** Pixels the last FramebufferUpdate covered (width × height for a whole screen). */
  lastUpdatePixels: number;
  /** Send a client message as is (e.g. QEMU extended key events). */
  send(message: Buffer): void;
  close(): void;
}

class ByteQueue {
  #chunks: Buffer[] = [];
  #length = 0;
  #waiter: (() => void) | undefined;
  #error: Error | undefined;

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#length += chunk.length;
    this.#waiter?.();
  }

  fail(error: Error): void {
    this.#error = error;
    this.#waiter?.();
  }

  async read(n: number): Promise<Buffer> {
    while (this.#length < n) {
      if (this.#error) throw this.#error;
      await new Promise<void>((resolve) => (this.#waiter = resolve));
      this.#waiter = undefined;
    }
    const all = Buffer.concat(this.#chunks);
    this.#chunks = [all.subarray(n)];
    this.#length = all.length - n;
    return all.subarray(0, n);
  }
}

export async function openRfbOverWebSocket(url: string, origin: string): Promise<RfbSession> {
  const socket = new WebSocket(url, ["binary"], { headers: { Origin: origin } });
  const bytes = new ByteQueue();
  socket.on("message", (data: Buffer) => bytes.push(data));
  socket.on("close", () => bytes.fail(new Error("console websocket closed")));
  socket.on("unexpected-response", (_request, response) => {
    bytes.fail(new Error(`console gateway refused the websocket: HTTP ${response.statusCode}`));
  });
  socket.on("error", (error) => bytes.fail(error));
  await new Promise<void>((resolve, reject) => {
    socket.once("open", () => resolve());
    socket.once("error", reject);
    socket.once("unexpected-response", (_request, response) =>
      reject(new Error(`console gateway refused the websocket: HTTP ${response.statusCode}`)),
    );
  });

  const version = (await bytes.read(12)).toString("latin1");
  if (!version.startsWith("RFB 003.")) throw new Error(`not an RFB server: ${JSON.stringify(version)}`);
  socket.send(Buffer.from("RFB 003.008\n", "latin1"));
  const count = (await bytes.read(1))[0]!;
  const types = [...(await bytes.read(count))];
  if (!types.includes(1)) throw new Error(`the VNC server offers no security type None (offers ${types.join(",")})`);
  socket.send(Buffer.from([1]));
  const result = (await bytes.read(4)).readUInt32BE(0);
  if (result !== 0) throw new Error(`RFB security handshake failed (${result})`);
  socket.send(Buffer.from([1]));
  const init = await bytes.read(24);
  const width = init.readUInt16BE(0);
  const height = init.readUInt16BE(2);
  await bytes.read(init.readUInt32BE(20));

  // Updates are skipped over by parsing raw-encoded rectangles only: we ask for raw alone.
  const setEncodings = Buffer.alloc(8);
  setEncodings.writeUInt8(2, 0);
  setEncodings.writeUInt16BE(1, 2);
  setEncodings.writeInt32BE(0, 4);
  socket.send(setEncodings);
  const bytesPerPixel = init.readUInt8(4) / 8;

  let reading: Promise<void> = Promise.resolve();
  const session: RfbSession = {
    width,
    height,
    lastUpdatePixels: 0,
    nextUpdate(incremental: boolean): Promise<number> {
      const request = Buffer.alloc(10);
      request.writeUInt8(3, 0);
      request.writeUInt8(incremental ? 1 : 0, 1);
      request.writeUInt16BE(width, 6);
      request.writeUInt16BE(height, 8);
      socket.send(request);
      const arrival = reading.then(async () => {
        for (;;) {
          const type = (await bytes.read(1))[0]!;
          if (type === 0) {
            const at = performance.now();
            const header = await bytes.read(3);
            const rects = header.readUInt16BE(1);
            let pixels = 0;
            for (let i = 0; i < rects; i += 1) {
              const rect = await bytes.read(12);
              const encoding = rect.readInt32BE(8);
              if (encoding !== 0) continue;
              pixels += rect.readUInt16BE(4) * rect.readUInt16BE(6);
              await bytes.read(rect.readUInt16BE(4) * rect.readUInt16BE(6) * bytesPerPixel);
            }
            session.lastUpdatePixels = pixels;
            return at;
          }
          if (type === 2) continue; // Bell
          if (type === 1) {
            const header = await bytes.read(5);
            await bytes.read(header.readUInt16BE(3) * 6);
            continue;
          }
          if (type === 3) {
            const header = await bytes.read(7);
            await bytes.read(header.readUInt32BE(3));
            continue;
          }
          throw new Error(`unexpected RFB server message type ${type}`);
        }
      });
      reading = arrival.then(
        () => undefined,
        () => undefined,
      );
      return arrival;
    },
    send(message: Buffer): void {
      socket.send(message);
    },
    close(): void {
      socket.close();
    },
  };
  return session;
}
