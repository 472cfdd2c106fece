// The gateway as an RFB client of a vm's VNC server, for the handshake only: when a console
// moves to the destination of a live migration, the browser has long finished its own
// handshake, so the gateway does the new one itself (version, security None, ClientInit,
// ServerInit) and the browser never sees it.
import type net from "node:net";

import { RelayError } from "./errors.ts";

/** What the new server's ServerInit said. */
export interface ServerInit {
  width: number;
  height: number;
  name: string;
}

/**
 * Run the client side of the RFB 3.8 handshake on a paused socket (as dialRelay returns it).
 * Resolves once ServerInit is read; bytes after it stay in the socket, which is paused again.
 */
export function handshakeAsClient(socket: net.Socket, timeoutMs: number): Promise<ServerInit> {
  return new Promise((resolve, reject) => {
    let buffered: Buffer = Buffer.alloc(0);
    let step: "version" | "securityTypes" | "securityResult" | "serverInit" = "version";
    const timer = setTimeout(() => finish(new RelayError("relay_timeout", `the VNC server did not finish the RFB handshake within ${timeoutMs} ms`)), timeoutMs);
    const finish = (error?: Error, init?: ServerInit) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onError);
      socket.pause();
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      if (buffered.length > 0) socket.unshift(buffered);
      resolve(init!);
    };
    const onClose = () => finish(new RelayError("worker_unreachable", "the VNC server hung up during the RFB handshake"));
    const onError = (error: Error) => finish(new RelayError("worker_unreachable", `the VNC connection failed during the RFB handshake: ${error.message}`));
    const take = (count: number): Buffer | undefined => {
      if (buffered.length < count) return undefined;
      const out = buffered.subarray(0, count);
      buffered = buffered.subarray(count);
      return out;
    };
    const onData = (chunk: Buffer) => {
      buffered = buffered.length === 0 ? chunk : Buffer.concat([new Uint8Array(buffered), new Uint8Array(chunk)]);
      for (;;) {
        if (step === "version") {
          const version = take(12);
          if (!version) return;
          if (!version.toString("latin1").startsWith("RFB 003.")) {
            finish(new RelayError("relay_protocol", `the VNC server greeted with ${JSON.stringify(version.toString("latin1"))}, not RFB 3.x`));
            return;
          }
          socket.write("RFB 003.008\n");
          step = "securityTypes";
        } else if (step === "securityTypes") {
          if (buffered.length < 1) return;
          const count = buffered[0]!;
          const types = take(1 + count);
          if (!types) return;
          if (count === 0 || !types.subarray(1).includes(1)) {
            finish(new RelayError("relay_protocol", `the VNC server offers security types [${[...types.subarray(1)].join(", ")}], not None (1)`));
            return;
          }
          socket.write(new Uint8Array([1]));
          step = "securityResult";
        } else if (step === "securityResult") {
          const result = take(4);
          if (!result) return;
          if (result.readUInt32BE(0) !== 0) {
            finish(new RelayError("relay_protocol", `the VNC server refused security type None (result ${result.readUInt32BE(0)})`));
            return;
          }
          // shared-flag 1: other viewers of the vm (another browser) keep their connection.
          socket.write(new Uint8Array([1]));
          step = "serverInit";
        } else {
          if (buffered.length < 24) return;
          const nameLength = buffered.readUInt32BE(20);
          const init = take(24 + nameLength);
          if (!init) return;
          finish(undefined, { width: init.readUInt16BE(0), height: init.readUInt16BE(2), name: init.subarray(24).toString("utf8") });
          return;
        }
      }
    };
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.on("error", onError);
    socket.resume();
  });
}
