import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { QmpClient } from "./qmp-client.ts";

// A QMP peer speaking the wire protocol over a real unix socket. Each test scripts how it
// answers; `onCommand` sees every command the client sends and may write anything back.
interface Peer {
  socketPath: string;
  commands: Array<{ execute: string; id: number; arguments?: unknown }>;
  connection: () => net.Socket;
  close: () => Promise<void>;
}

const greeting = {
  QMP: { version: { qemu: { major: 7, minor: 2, micro: 22 }, package: "Debian" }, capabilities: ["oob"] },
};

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ferry-qmp-"));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

async function startPeer(
  onCommand: (socket: net.Socket, command: { execute: string; id: number }) => void,
  sendGreeting: (socket: net.Socket) => void = (s) => s.write(`${JSON.stringify(greeting)}\r\n`),
): Promise<Peer> {
  const socketPath = path.join(dir, "qmp.sock");
  const commands: Peer["commands"] = [];
  let current: net.Socket | undefined;
  const server = net.createServer((socket) => {
    current = socket;
    let buffer = "";
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      let newline: number;
      while ((newline = buffer.indexOf("\n")) >= 0) {
        const command = JSON.parse(buffer.slice(0, newline));
        buffer = buffer.slice(newline + 1);
        commands.push(command);
        if (command.execute === "qmp_capabilities") {
          socket.write(`${JSON.stringify({ return: {}, id: command.id })}\r\n`);
        } else {
          onCommand(socket, command);
        }
      }
    });
    socket.on("error", () => {});
    sendGreeting(socket);
  });
  await new Promise<void>((resolve) => server.listen(socketPath, resolve));
  return {
    socketPath,
    commands,
    connection: () => {
      if (!current) throw new Error("no client connected to the test peer");
      return current;
    },
    close: () =>
      new Promise<void>((resolve) => {
        current?.destroy();
        server.close(() => resolve());
      }),
  };
}

const event = (name: string, data: Record<string, unknown> = {}) =>
  JSON.stringify({ event: name, data, timestamp: { seconds: 1, microseconds: 2 } });

async function rejection(promise: Promise<unknown>): Promise<EngineError> {
  const error = await promise.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EngineError);
  return error as EngineError;
}

describe("QmpClient", () => {
  it("reads the greeting, negotiates capabilities and reports the QEMU version", async () => {
    const peer = await startPeer(() => {});
    const qmp = await QmpClient.connect(peer.socketPath);
    expect(qmp.qemuVersion).toBe("7.2.22");
    expect(peer.commands.map((c) => c.execute)).toEqual(["qmp_capabilities"]);
    await qmp.close();
    await peer.close();
  });

  it("reassembles a reply split across chunks, including a greeting split mid-JSON", async () => {
    const text = JSON.stringify(greeting);
    const peer = await startPeer(
      (socket, command) => {
        const reply = `${JSON.stringify({ return: { status: "running", running: true }, id: command.id })}\r\n`;
        socket.write(reply.slice(0, 7));
        setTimeout(() => socket.write(reply.slice(7, 20)), 5);
        setTimeout(() => socket.write(reply.slice(20)), 10);
      },
      (socket) => {
        socket.write(text.slice(0, 10));
        setTimeout(() => socket.write(`${text.slice(10)}\r\n`), 10);
      },
    );
    const qmp = await QmpClient.connect(peer.socketPath);
    await expect(qmp.execute("query-status")).resolves.toEqual({ status: "running", running: true });
    await qmp.close();
    await peer.close();
  });

  it("handles several messages in one chunk: events interleaved with replies", async () => {
    const peer = await startPeer((socket, command) => {
      socket.write(
        `${event("STOP")}\r\n${JSON.stringify({ return: {}, id: command.id })}\r\n${event("RESUME")}\r\n`,
      );
    });
    const qmp = await QmpClient.connect(peer.socketPath);
    const seen: string[] = [];
    qmp.on("event", (e) => seen.push(e.event));
    const resumed = qmp.waitForEvent("RESUME", { timeoutMs: 1000 });
    await expect(qmp.execute("stop")).resolves.toEqual({});
    await expect(resumed).resolves.toMatchObject({ event: "RESUME" });
    expect(seen).toEqual(["STOP", "RESUME"]);
    await qmp.close();
    await peer.close();
  });

  it("correlates replies that arrive out of order by id", async () => {
    const held: Array<{ id: number; execute: string }> = [];
    const peer = await startPeer((socket, command) => {
      held.push(command);
      if (held.length === 3) {
        for (const c of held.reverse()) {
          socket.write(`${JSON.stringify({ return: { answer: c.execute }, id: c.id })}\r\n`);
        }
      }
    });
    const qmp = await QmpClient.connect(peer.socketPath);
    const results = await Promise.all([qmp.execute("a"), qmp.execute("b"), qmp.execute("c")]);
    expect(results).toEqual([{ answer: "a" }, { answer: "b" }, { answer: "c" }]);
    await qmp.close();
    await peer.close();
  });

  it("turns a QMP error reply into qmp_error naming the command and QEMU's description", async () => {
    const peer = await startPeer((socket, command) => {
      socket.write(
        `${JSON.stringify({ error: { class: "GenericError", desc: "No such device" }, id: command.id })}\r\n`,
      );
    });
    const qmp = await QmpClient.connect(peer.socketPath);
    const error = await rejection(qmp.execute("device_del", { id: "nic9" }));
    expect(error.code).toBe("qmp_error");
    expect(error.message).toBe("device_del failed: No such device");
    await qmp.close();
    await peer.close();
  });

  it("rejects every pending command with qmp_closed when QEMU goes away mid-command", async () => {
    const peer = await startPeer((socket, command) => {
      if (command.execute === "migrate") socket.destroy();
    });
    const qmp = await QmpClient.connect(peer.socketPath);
    const first = qmp.execute("query-migrate");
    const second = qmp.execute("migrate", { uri: "unix:/x" });
    const waiting = qmp.waitForEvent("MIGRATION", { timeoutMs: 5000 });
    expect((await rejection(first)).code).toBe("qmp_closed");
    expect((await rejection(second)).code).toBe("qmp_closed");
    expect((await rejection(waiting)).code).toBe("qmp_closed");
    expect(qmp.closed).toBe(true);
    expect((await rejection(qmp.execute("cont"))).code).toBe("qmp_closed");
    await peer.close();
  });

  it("times out a command QEMU never answers with qmp_timeout, and ignores the late reply", async () => {
    let late: (() => void) | undefined;
    const peer = await startPeer((socket, command) => {
      if (command.execute === "slow") {
        late = () => socket.write(`${JSON.stringify({ return: "late", id: command.id })}\r\n`);
      } else {
        socket.write(`${JSON.stringify({ return: "fast", id: command.id })}\r\n`);
      }
    });
    const qmp = await QmpClient.connect(peer.socketPath);
    const error = await rejection(qmp.execute("slow", undefined, { timeoutMs: 50 }));
    expect(error.code).toBe("qmp_timeout");
    expect(error.message).toContain("slow");
    late?.();
    await expect(qmp.execute("fast")).resolves.toBe("fast");
    await qmp.close();
    await peer.close();
  });

  it("waitForEvent applies its filter and times out with qmp_timeout", async () => {
    const peer = await startPeer((socket, command) => {
      socket.write(`${JSON.stringify({ return: {}, id: command.id })}\r\n`);
      socket.write(`${event("MIGRATION", { status: "setup" })}\r\n`);
      setTimeout(() => socket.write(`${event("MIGRATION", { status: "completed" })}\r\n`), 10);
    });
    const qmp = await QmpClient.connect(peer.socketPath);
    const completed = qmp.waitForEvent("MIGRATION", {
      timeoutMs: 1000,
      filter: (e) => e.data?.status === "completed",
    });
    await qmp.execute("migrate", { uri: "unix:/x" });
    await expect(completed).resolves.toMatchObject({ data: { status: "completed" } });
    const never = await rejection(qmp.waitForEvent("SHUTDOWN", { timeoutMs: 30 }));
    expect(never.code).toBe("qmp_timeout");
    await qmp.close();
    await peer.close();
  });

  it("fails to connect with qmp_closed when nothing listens on the socket", async () => {
    const error = await rejection(QmpClient.connect(path.join(dir, "absent.sock")));
    expect(error.code).toBe("qmp_closed");
    expect(error.message).toContain("absent.sock");
  });
});
