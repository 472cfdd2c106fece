// The gateway's end of the worker relay protocol (see apps/worker/src/console-relay.ts):
// send one ticket line, read one answer line, then the socket carries raw RFB.
import net from "node:net";
import { RelayError } from "./errors.ts";

/** Longest answer line we wait for; the relay's `ERR …` lines are far shorter. */
const maxAnswerBytes = 4096;

function parseAddress(address: string): { host: string; port: number } {
  const match = /^(?:\[([^\]]+)\]|([^:]+)):(\d+)$/.exec(address);
  const port = Number(match?.[3]);
  if (!match || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RelayError(
      "bad_console_address",
      `The worker's console address "${address}" is not host:port. Check FERRY_WORKER_CONSOLE_HOST on that worker.`,
    );
  }
  return { host: match[1] ?? match[2]!, port };
}

/**
 * Dial a worker's VNC relay with `ticket` and resolve once it answered `OK`; the returned
 * socket is paused and holds any RFB bytes that arrived with the answer.
 */
export function dialRelay(options: { address: string; ticket: string; timeoutMs: number }): Promise<net.Socket> {
  const { host, port } = parseAddress(options.address);
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let answer = "";
    const settle = (error?: RelayError) => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("error", onError);
      socket.off("close", onClose);
      if (error) {
        socket.destroy();
        reject(error);
        return;
      }
      resolve(socket);
    };
    const timer = setTimeout(
      () => settle(new RelayError("relay_timeout", `The worker relay at ${options.address} did not answer within ${options.timeoutMs} ms.`)),
      options.timeoutMs,
    );
    const onError = (error: Error) =>
      settle(new RelayError("worker_unreachable", `Could not reach the worker relay at ${options.address}: ${error.message}.`));
    const onClose = () =>
      settle(new RelayError("worker_unreachable", `The worker relay at ${options.address} hung up before answering.`));
    const onData = (chunk: Buffer) => {
      // latin1 maps bytes to chars one to one, so RFB bytes behind the answer survive.
      answer += chunk.toString("latin1");
      const newline = answer.indexOf("\n");
      if (newline === -1) {
        if (answer.length > maxAnswerBytes) {
          settle(new RelayError("relay_protocol", `The worker relay at ${options.address} sent ${answer.length} bytes without an answer line.`));
        }
        return;
      }
      const line = answer.slice(0, newline);
      if (line === "OK") {
        socket.pause();
        const rest = answer.slice(newline + 1);
        if (rest.length > 0) socket.unshift(Buffer.from(rest, "latin1"));
        settle();
        return;
      }
      const refused = /^ERR ([a-z_]+): (.*)$/.exec(line);
      settle(
        refused
          ? new RelayError(refused[1]!, refused[2]!)
          : new RelayError("relay_protocol", `The worker relay at ${options.address} answered ${JSON.stringify(line.slice(0, 200))}.`),
      );
    };
    socket.on("data", onData);
    socket.on("error", onError);
    socket.on("close", onClose);
    socket.once("connect", () => {
      socket.setNoDelay(true);
      socket.write(`${options.ticket}\n`);
    });
  });
}
