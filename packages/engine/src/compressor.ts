// Runs the zstd a save streams through, from a small helper process rather than from the worker
// itself. Node's spawn forks the calling process, and a fork takes time in proportion to the
// memory whose page tables it copies (measured on Node 20: 1 ms at 46 MB resident, 14 ms at
// 256 MB, 43 ms at 892 MB), with Node's thread blocked; during a save QEMU waits on a full socket
// for zstd all that while. The helper stays at ~40 MB and its forks take ~1 ms.
//
// The helper listens on the save's socket itself: QEMU's connection is accepted and handed to
// zstd there, with no round trip through the worker. The worker hears when zstd runs and how it
// exited. The helper exits with the worker (its IPC channel closes); a zstd it started reads
// QEMU, which dies with the worker too (pdeathsig), so it ends at that EOF.
import { type ChildProcess, spawn } from "node:child_process";

/** A compressor waiting for QEMU's connection on a socket, then running. */
export interface Compression {
  /** Resolves once the socket is listening; rejects if it cannot be. */
  listening: Promise<void>;
  /** Resolves once QEMU connected and zstd runs; rejects if it never will (cancelled, no listener, helper gone). */
  started: Promise<void>;
  /** zstd's exit code; -1 if it never ran or the helper died. */
  exit: Promise<number | null>;
  /** Stops listening and kills zstd. */
  kill(): void;
}

type HelperMessage = { id: number; listening: true } | { id: number; started: true } | { id: number; exit: number | null; error?: string };

// Plain CommonJS run with `node -e`: no loader and none of the worker's modules.
const helperSource = `
const { spawn } = require("node:child_process");
const { closeSync, openSync } = require("node:fs");
const net = require("node:net");
const saves = new Map();
process.on("disconnect", () => process.exit(0));
process.on("message", (message) => {
  if (message.kill !== undefined) {
    const save = saves.get(message.kill);
    if (!save) return;
    save.server.close();
    if (save.child) save.child.kill("SIGKILL");
    else save.exit(-1, "the save was cancelled before QEMU connected");
    return;
  }
  const { id, socketPath, command, args, file } = message;
  let settled = false;
  const exit = (code, error) => {
    if (settled) return;
    settled = true;
    saves.delete(id);
    process.send({ id, exit: code, error });
  };
  const server = net.createServer();
  const save = { server, child: undefined, exit };
  saves.set(id, save);
  server.once("error", (error) => exit(-1, error.message));
  server.once("connection", (input) => {
    server.close();
    try {
      const output = openSync(file, "w");
      try {
        save.child = spawn(command, args, { stdio: [input, output, "ignore"] });
      } finally {
        closeSync(output);
        input.destroy();
      }
    } catch (error) {
      input.destroy();
      exit(-1, error.message);
      return;
    }
    save.child.once("error", (error) => exit(-1, error.message));
    save.child.once("close", (code) => exit(code));
    process.send({ id, started: true });
  });
  server.listen(socketPath, () => process.send({ id, listening: true }));
});
`;

interface Waiting {
  listening: () => void;
  started: () => void;
  exited: (code: number | null, error?: string) => void;
}

export class CompressorHelper {
  readonly command: string;
  readonly args: readonly string[];
  #helper: ChildProcess | undefined;
  #nextId = 1;
  #waiting = new Map<number, Waiting>();

  constructor(command: string, args: readonly string[]) {
    this.command = command;
    this.args = args;
  }

  /** Starts the helper now, so that the first save does not wait for Node to boot (~40 ms). */
  warm(): void {
    this.#running();
  }

  /** Listens on `socketPath`; QEMU's connection there becomes the stdin of the compressor, whose stdout is `file`. */
  listen(socketPath: string, file: string): Compression {
    const helper = this.#running();
    const id = this.#nextId++;
    const listening = deferred();
    const started = deferred();
    let exited!: (code: number | null) => void;
    const exit = new Promise<number | null>((resolve) => (exited = resolve));
    const waiting: Waiting = {
      listening: listening.resolve,
      started: started.resolve,
      exited: (code, error) => {
        const reason = new Error(`${this.command} did not start for the save on ${socketPath}: ${error ?? "its helper process is gone"}`);
        // No effect on those that already resolved.
        listening.reject(reason);
        started.reject(reason);
        exited(code);
      },
    };
    this.#waiting.set(id, waiting);
    // A save under way keeps the worker alive until it hears how zstd ended.
    helper.channel?.ref();
    helper.send({ id, socketPath, command: this.command, args: this.args, file });
    return {
      listening: listening.promise,
      started: started.promise,
      exit,
      kill: () => {
        if (helper.connected) helper.send({ kill: id });
      },
    };
  }

  /** Ends the helper; saves still under way see their compressor exit -1. */
  close(): void {
    this.#helper?.kill("SIGKILL");
  }

  #running(): ChildProcess {
    if (this.#helper?.connected) return this.#helper;
    // NODE_OPTIONS may load a TypeScript loader into every node the worker starts; the helper
    // needs none and stays smaller without.
    const helper = spawn(process.execPath, ["-e", helperSource], {
      stdio: ["ignore", "ignore", "ignore", "ipc"],
      env: { ...process.env, NODE_OPTIONS: "" },
    });
    helper.on("message", (message: HelperMessage) => this.#settle(message));
    helper.once("error", () => undefined);
    helper.once("exit", () => {
      if (this.#helper === helper) this.#helper = undefined;
      for (const id of [...this.#waiting.keys()]) this.#settle({ id, exit: -1 });
    });
    // Only a save under way keeps the worker alive through the helper.
    helper.unref();
    helper.channel?.unref();
    this.#helper = helper;
    return helper;
  }

  #settle(message: HelperMessage): void {
    const waiting = this.#waiting.get(message.id);
    if (!waiting) return;
    if ("listening" in message) waiting.listening();
    else if ("started" in message) waiting.started();
    else {
      this.#waiting.delete(message.id);
      if (this.#waiting.size === 0) this.#helper?.channel?.unref();
      waiting.exited(message.exit, message.error);
    }
  }
}

// A promise with its settle functions; its rejection counts as handled (a save awaits it later,
// or not at all once it failed another way).
function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve!: () => void;
  let reject!: (error: Error) => void;
  const promise = new Promise<void>((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}
