// The raw-QEMU baseline the benchmarks measure the engine against: QEMU started from the same
// argv function, driven by a bare QMP connection, no engine code involved.
import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { mkdirSync, rmSync } from "node:fs";
import net from "node:net";
import path from "node:path";
import { type LaunchOptions, type VmSpec, toQemuArgv } from "@ferry/engine";

/** What QMP replies and events carry that the benchmarks read. */
export interface QmpMessage {
  QMP?: unknown;
  return?: unknown;
  error?: { desc: string };
  event?: string;
  data?: { status?: string };
}

export interface RawQemu {
  child: ChildProcess;
  cmd: (execute: string, args?: Record<string, unknown>) => Promise<unknown>;
  event: (name: string, match?: (data: { status?: string }) => boolean) => Promise<QmpMessage>;
  close: () => Promise<void>;
}

const started = new Set<ChildProcess>();

/** Kill every raw QEMU still running, e.g. when a benchmark ends early. */
export function killRawQemus(): void {
  for (const child of started) child.kill("SIGKILL");
}

/**
 * Start QEMU for `spec` in a folder of its own under `root`, optionally incoming from `incoming`
 * and with its RAM in `memoryFile` (see LaunchOptions).
 */
export async function startRawQemu(root: string, spec: VmSpec, incoming?: string, memoryFile?: LaunchOptions["memoryFile"]): Promise<RawQemu> {
  const dir = path.join(root, "raw", `${spec.id}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const qmpSocket = path.join(dir, "qmp.sock");
  // The same migration defaults the engine starts QEMU with: MIGRATION events on, no 128 MiB/s cap.
  const argv = [
    ...toQemuArgv(spec, { accelerator: "tcg", qmpSocket, pidFile: path.join(dir, "qemu.pid"), ...(incoming ? { incoming } : {}), ...(memoryFile ? { memoryFile } : {}) }),
    ...["-global", "migration.x-events=on", "-global", `migration.x-max-bandwidth=${2 ** 40}`],
  ];
  const child = spawn("qemu-system-x86_64", argv, { stdio: "ignore" });
  started.add(child);
  child.once("exit", () => started.delete(child));
  let socket: net.Socket | undefined;
  while (!socket) {
    socket = await new Promise<net.Socket | undefined>((resolve) => {
      const c = net.createConnection(qmpSocket, () => resolve(c));
      c.once("error", () => setTimeout(() => resolve(undefined), 5));
    });
  }
  const waiting: Array<(msg: QmpMessage) => boolean> = [];
  let buffer = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    let i: number;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const msg = JSON.parse(buffer.slice(0, i)) as QmpMessage;
      buffer = buffer.slice(i + 1);
      const index = waiting.findIndex((w) => w(msg));
      if (index >= 0) waiting.splice(index, 1);
    }
  });
  const next = (pred: (msg: QmpMessage) => boolean) => new Promise<QmpMessage>((resolve) => waiting.push((msg) => (pred(msg) ? (resolve(msg), true) : false)));
  await next((m) => "QMP" in m);
  const cmd = async (execute: string, args?: Record<string, unknown>) => {
    const reply = next((m) => "return" in m || "error" in m);
    socket!.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
    const msg = await reply;
    if (msg.error) throw new Error(`${execute}: ${msg.error.desc}`);
    return msg.return;
  };
  await cmd("qmp_capabilities");
  return {
    child,
    cmd,
    event: (name, match = () => true) => next((m) => m.event === name && match(m.data ?? {})),
    close: async () => {
      socket!.destroy();
      child.kill("SIGKILL");
      if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
