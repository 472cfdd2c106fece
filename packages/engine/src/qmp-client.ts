import { EventEmitter } from "node:events";
import net from "node:net";
import { EngineError } from "./errors.ts";

/** The first message QEMU sends on a QMP socket. */
export interface QmpGreeting {
  QMP: {
    version: { qemu: { major: number; minor: number; micro: number }; package: string };
    capabilities: string[];
  };
}

/** An asynchronous QMP event (STOP, RESUME, MIGRATION, SHUTDOWN, …). */
export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** How long to wait for the socket to accept and for the greeting. */
  connectTimeoutMs?: number;
  /** Default per-command timeout; each command may override it. */
  commandTimeoutMs?: number;
}

interface PendingCommand {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

type QmpReply =
  | { return: unknown; id?: number }
  | { error: { class: string; desc: string }; id?: number };

// @types/node 20.9 has no generic EventEmitter; these overloads type the two events.
export interface QmpClient {
  on(event: "event", listener: (event: QmpEvent) => void): this;
  on(event: "close", listener: () => void): this;
  off(event: "event", listener: (event: QmpEvent) => void): this;
  off(event: "close", listener: () => void): this;
  emit(event: "event", qmpEvent: QmpEvent): boolean;
  emit(event: "close"): boolean;
}

/**
 * A QMP connection to one QEMU process. Use `QmpClient.connect(socketPath)`; it negotiates
 * capabilities before resolving. Emits "event" (QmpEvent) and "close".
 */
export class QmpClient extends EventEmitter {
  readonly greeting: QmpGreeting;
  #socket: net.Socket;
  #buffer = "";
  #nextId = 1;
  #pending = new Map<number, PendingCommand>();
  #closed = false;
  #commandTimeoutMs: number;

  private constructor(socket: net.Socket, greeting: QmpGreeting, commandTimeoutMs: number) {
    super();
    this.#socket = socket;
    this.greeting = greeting;
    this.#commandTimeoutMs = commandTimeoutMs;
  }

  /** Connects to a QMP unix socket, reads the greeting and leaves capabilities negotiation mode. */
  static async connect(socketPath: string, options: QmpConnectOptions = {}): Promise<QmpClient> {
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    const { socket, greeting, rest } = await readGreeting(socketPath, connectTimeoutMs);
    const client = new QmpClient(socket, greeting, options.commandTimeoutMs ?? 30_000);
    client.#attach(rest);
    await client.execute("qmp_capabilities", undefined, { timeoutMs: connectTimeoutMs });
    return client;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** QEMU's version as "7.2.22" (from the greeting). */
  get qemuVersion(): string {
    const { major, minor, micro } = this.greeting.QMP.version.qemu;
    return `${major}.${minor}.${micro}`;
  }

  /** Runs one QMP command and resolves with its `return` value. */
  execute<T = unknown>(
    command: string,
    args?: Record<string, unknown>,
    options: { timeoutMs?: number } = {},
  ): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new EngineError("qmp_closed", `QMP command ${command} not sent: the QEMU connection is closed.`),
      );
    }
    const id = this.#nextId++;
    const timeoutMs = options.timeoutMs ?? this.#commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(
          new EngineError(
            "qmp_timeout",
            `QMP command ${command} got no reply within ${timeoutMs} ms; QEMU may be hung — stop the vm.`,
            { command, timeoutMs },
          ),
        );
      }, timeoutMs);
      this.#pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const message: Record<string, unknown> = { execute: command, id };
      if (args !== undefined) message.arguments = args;
      this.#socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /**
   * Resolves on the next event named `name` (and matching `filter`). Call it BEFORE the
   * command that causes the event, or the event may pass unseen.
   */
  waitForEvent(
    name: string,
    options: { timeoutMs: number; filter?: (event: QmpEvent) => boolean },
  ): Promise<QmpEvent> {
    if (this.#closed) {
      return Promise.reject(
        new EngineError("qmp_closed", `cannot wait for QMP event ${name}: the QEMU connection is closed.`),
      );
    }
    return new Promise<QmpEvent>((resolve, reject) => {
      const onEvent = (event: QmpEvent) => {
        if (event.event !== name || (options.filter && !options.filter(event))) return;
        cleanup();
        resolve(event);
      };
      const onClose = () => {
        cleanup();
        reject(
          new EngineError("qmp_closed", `QEMU closed its QMP connection while we waited for event ${name}.`),
        );
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new EngineError("qmp_timeout", `QMP event ${name} did not arrive within ${options.timeoutMs} ms.`, {
            event: name,
            timeoutMs: options.timeoutMs,
          }),
        );
      }, options.timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("event", onEvent);
        this.off("close", onClose);
      };
      this.on("event", onEvent);
      this.on("close", onClose);
    });
  }

  /** Closes the connection; pending commands fail with qmp_closed. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      this.#socket.once("close", () => resolve());
      this.#socket.destroy();
    });
  }

  #attach(rest: string): void {
    this.#socket.setEncoding("utf8");
    this.#socket.on("data", (chunk: string) => this.#onData(chunk));
    // Errors (ECONNRESET when QEMU dies) are followed by "close", which does the work.
    this.#socket.on("error", () => {});
    this.#socket.on("close", () => this.#onClose());
    if (rest) this.#onData(rest);
    this.#socket.resume();
  }

  #onData(chunk: string): void {
    this.#buffer += chunk;
    let newline: number;
    while ((newline = this.#buffer.indexOf("\n")) >= 0) {
      const line = this.#buffer.slice(0, newline).trim();
      this.#buffer = this.#buffer.slice(newline + 1);
      if (line) this.#onMessage(line);
    }
  }

  #onMessage(line: string): void {
    let message: Record<string, unknown>;
    try {
      message = JSON.parse(line) as Record<string, unknown>;
    } catch {
      // QEMU only writes JSON on this socket; a broken line means a broken peer, and the
      // pending commands will time out with a clear error.
      return;
    }
    if (typeof message.event === "string") {
      this.emit("event", message as unknown as QmpEvent);
      return;
    }
    const reply = message as QmpReply;
    if (typeof reply.id !== "number") return;
    const pending = this.#pending.get(reply.id);
    if (!pending) return;
    this.#pending.delete(reply.id);
    clearTimeout(pending.timer);
    if ("error" in reply) {
      pending.reject(
        new EngineError("qmp_error", `${pending.command} failed: ${reply.error.desc}`, {
          command: pending.command,
          class: reply.error.class,
        }),
      );
    } else {
      pending.resolve(reply.return);
    }
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const [id, pending] of this.#pending) {
      clearTimeout(pending.timer);
      this.#pending.delete(id);
      pending.reject(
        new EngineError(
          "qmp_closed",
          `QMP command ${pending.command} lost: QEMU closed the connection before replying (it probably exited).`,
          { command: pending.command },
        ),
      );
    }
    this.emit("close");
  }
}

function readGreeting(
  socketPath: string,
  timeoutMs: number,
): Promise<{ socket: net.Socket; greeting: QmpGreeting; rest: string }> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath);
    socket.setEncoding("utf8");
    let buffer = "";
    const timer = setTimeout(() => {
      fail(
        new EngineError(
          "qmp_timeout",
          `QEMU sent no QMP greeting on ${socketPath} within ${timeoutMs} ms.`,
          { socketPath, timeoutMs },
        ),
      );
    }, timeoutMs);
    const fail = (error: Error) => {
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.destroy();
      reject(error);
    };
    socket.on("error", (error: NodeJS.ErrnoException) => {
      fail(
        new EngineError("qmp_closed", `cannot connect to QMP socket ${socketPath}: ${error.code ?? error.message}.`, {
          socketPath,
          errno: error.code,
        }),
      );
    });
    socket.on("close", () => {
      fail(new EngineError("qmp_closed", `QEMU closed QMP socket ${socketPath} before its greeting.`));
    });
    socket.on("data", (chunk: string) => {
      buffer += chunk;
      const newline = buffer.indexOf("\n");
      if (newline < 0) return;
      let greeting: QmpGreeting;
      try {
        greeting = JSON.parse(buffer.slice(0, newline)) as QmpGreeting;
      } catch {
        fail(new EngineError("qmp_error", `QMP greeting on ${socketPath} is not JSON: ${buffer.slice(0, 200)}`));
        return;
      }
      if (!greeting.QMP) {
        fail(new EngineError("qmp_error", `QMP socket ${socketPath} sent no greeting: ${buffer.slice(0, 200)}`));
        return;
      }
      clearTimeout(timer);
      socket.removeAllListeners();
      socket.pause();
      resolve({ socket, greeting, rest: buffer.slice(newline + 1) });
    });
  });
}
