// The worker's end of the console path. The console gateway dials this TCP server, sends
// one line holding a relay ticket it signed for this worker, and after `OK\n` the
// connection carries raw RFB to and from the vm's QEMU VNC unix socket. QEMU's VNC stays
// on a unix socket (never a TCP port) so only holders of a ticket reach a vm's screen.
import net from "node:net";
import type { Logger } from "pino";
import { TokenError, verifyRelayTicket } from "@ferry/tokens";

/** Longest ticket line accepted, newline included. */
const maxTicketLineBytes = 4096;
/** How long a new connection may take to send its ticket line. */
const ticketDeadlineMs = 5000;
/** Probes a silent gateway so a vanished peer frees its VNC connection. */
const keepAliveDelayMs = 30_000;

export interface ConsoleRelayOptions {
  host: string;
  /** 0 picks a free port; read the result from `address`. */
  port: number;
  secret: string;
  workerId: string;
  /** Path of the vm's QEMU VNC unix socket, or undefined if the vm does not run here. */
  vncSocketFor: (vmId: string) => string | undefined;
  log: Logger;
}

export interface ConsoleRelay {
  /** `host:port` to publish as the worker's `consoleAddress`. */
  address: string;
  /** Stop listening and cut every open console connection. */
  close(): Promise<void>;
}

class RelayRefusal extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** Start the TCP relay the console gateway dials to reach this worker's vm consoles. */
export async function startConsoleRelay(options: ConsoleRelayOptions): Promise<ConsoleRelay> {
  const { log } = options;
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
  };

  const server = net.createServer((gateway) => {
    track(gateway);
    const remote = `${gateway.remoteAddress}:${gateway.remotePort}`;
    gateway.on("error", (error) => log.debug({ remote, err: error.message }, "console relay: gateway socket error"));
    gateway.setNoDelay(true);
    gateway.setKeepAlive(true, keepAliveDelayMs);

    const refuse = (refusal: RelayRefusal, vmId?: string) => {
      log.warn({ remote, vmId, code: refusal.code, reason: refusal.message }, "console relay: connection refused");
      if (gateway.destroyed) return;
      gateway.end(`ERR ${refusal.code}: ${refusal.message.replace(/[\r\n]+/g, " ")}\n`, () => gateway.destroy());
    };

    // latin1 maps bytes to chars one to one, so RFB bytes that follow the ticket survive.
    let received = "";
    const deadline = setTimeout(() => {
      gateway.off("data", onData);
      refuse(new RelayRefusal("timeout", `No ticket line within ${ticketDeadlineMs} ms.`));
    }, ticketDeadlineMs);
    gateway.once("close", () => clearTimeout(deadline));

    const onData = (chunk: Buffer) => {
      received += chunk.toString("latin1");
      const newline = received.indexOf("\n");
      if (newline === -1 && received.length < maxTicketLineBytes) return;
      gateway.off("data", onData);
      gateway.pause();
      clearTimeout(deadline);
      if (newline === -1 || newline + 1 > maxTicketLineBytes) {
        refuse(new RelayRefusal("line_too_long", `The ticket line exceeds ${maxTicketLineBytes} bytes.`));
        return;
      }
      const ticket = received.slice(0, newline).replace(/\r$/, "");
      // Bytes sent after the ticket line already belong to the RFB session.
      attach(ticket, received.slice(newline + 1));
    };
    gateway.on("data", onData);

    const attach = (ticket: string, early: string) => {
      let vmId: string;
      try {
        vmId = verifyRelayTicket(ticket, { secret: options.secret, workerId: options.workerId }).vmId;
      } catch (error) {
        // Anything else (a too-short secret) is a worker misconfiguration: refuse this
        // connection rather than take the worker down with it.
        const refusal =
          error instanceof TokenError
            ? new RelayRefusal(error.code, error.message)
            : new RelayRefusal("internal", `The worker could not check the ticket: ${String(error)}`);
        refuse(refusal);
        return;
      }
      const socketPath = options.vncSocketFor(vmId);
      if (!socketPath) {
        refuse(
          new RelayRefusal(
            "vm_not_here",
            `vm ${vmId} has no console on worker ${options.workerId}; it is not running here. Look up the vm's current worker and dial that one.`,
          ),
          vmId,
        );
        return;
      }
      const vnc = net.connect(socketPath);
      track(vnc);
      let piping = false;
      vnc.once("error", (error) => {
        if (piping) {
          log.info({ remote, vmId, err: error.message }, "console relay: vnc socket error");
          gateway.destroy();
          return;
        }
        refuse(
          new RelayRefusal(
            "vnc_unreachable",
            `Could not connect to vm ${vmId}'s VNC socket ${socketPath}: ${error.message}. The vm may be stopping; try again when it runs.`,
          ),
          vmId,
        );
      });
      gateway.once("close", () => vnc.destroy());
      vnc.once("connect", () => {
        if (gateway.destroyed) {
          vnc.destroy();
          return;
        }
        piping = true;
        vnc.setNoDelay(true);
        vnc.once("close", () => gateway.destroy());
        gateway.write("OK\n");
        if (early.length > 0) vnc.write(early, "latin1");
        gateway.pipe(vnc);
        vnc.pipe(gateway);
        gateway.resume();
        log.info({ remote, vmId }, "console relay: connected");
        gateway.once("close", () => log.info({ remote, vmId }, "console relay: closed"));
      });
    };
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (error) => log.error({ err: error.message }, "console relay: server error"));
  const { port } = server.address() as net.AddressInfo;
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  log.info({ address: `${host}:${port}` }, "console relay: listening");

  let closed: Promise<void> | undefined;
  return {
    address: `${host}:${port}`,
    close: () =>
      (closed ??= new Promise<void>((resolve, reject) => {
        server.close((error) => (error ? reject(error) : resolve()));
        for (const socket of sockets) socket.destroy();
      })),
  };
}
