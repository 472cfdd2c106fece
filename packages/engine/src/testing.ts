// Test support for code that reaches a guest's display without the engine (the worker's
// console relay, the console gateway): the tiny image booted straight from QEMU, its VNC on a
// unix socket, nothing else attached. How much of a memory file a QEMU shares with others. And
// the processes of this host as /proc shows them, for tests and benchmarks that look at
// processes they did not spawn (QEMU's exec: children, a helper's zstd, a whole Ferry's).
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";

/** A running tiny guest whose VNC display listens on `vncSocket`. */
export interface VncGuest {
  vncSocket: string;
  /** Kills QEMU, waits for it to exit and removes the guest's folder. */
  stop(): Promise<void>;
}

/** Boots `<imagesDir>/tiny` under TCG in a fresh temporary folder; resolves once QEMU's VNC socket exists. */
export async function startVncGuest(options: { imagesDir: string; qemuBinary: string }): Promise<VncGuest> {
  const dir = mkdtempSync(path.join(tmpdir(), "ferry-vnc-guest-"));
  const imageDir = path.join(options.imagesDir, "tiny");
  const manifest = JSON.parse(readFileSync(path.join(imageDir, "manifest.json"), "utf8")) as Record<string, string>;
  const vncSocket = path.join(dir, "vnc.sock");
  const qemu = spawn(
    options.qemuBinary,
    [
      "-accel", "tcg", "-m", "256", "-nodefaults", "-vga", "std",
      "-kernel", path.join(imageDir, manifest.kernel!),
      "-initrd", path.join(imageDir, manifest.initrd!),
      "-append", manifest.cmdline!,
      "-vnc", `unix:${vncSocket}`,
      "-serial", "null", "-monitor", "none",
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  let stderr = "";
  qemu.stderr!.on("data", (chunk) => (stderr += String(chunk)));
  const stop = async (): Promise<void> => {
    if (qemu.exitCode === null && qemu.signalCode === null) {
      const exited = new Promise((resolve) => qemu.once("exit", resolve));
      qemu.kill("SIGKILL");
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  const deadline = Date.now() + 10_000;
  while (!existsSync(vncSocket)) {
    if (qemu.exitCode !== null || Date.now() > deadline) {
      await stop();
      throw new Error(
        `QEMU (${options.qemuBinary}) did not open its VNC socket ${vncSocket} within 10 s (exit code ${qemu.exitCode}, stderr: ${stderr}). ` +
          "Check the binary and the tiny image under FERRY_IMAGES_DIR.",
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { vncSocket, stop };
}

/**
 * Memory of `file`'s mappings in process `pid` (from /proc/<pid>/smaps), in MiB: pages shared
 * with other processes, its own (copy-on-write) pages, and its proportional share (Pss).
 */
export function memoryFileMapping(pid: number, file: string): { rssMiB: number; pssMiB: number; sharedMiB: number; privateMiB: number } {
  const totals = { Rss: 0, Pss: 0, Shared_Clean: 0, Shared_Dirty: 0, Private_Clean: 0, Private_Dirty: 0 };
  let inFile = false;
  for (const line of readFileSync(`/proc/${pid}/smaps`, "utf8").split("\n")) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) inFile = line.endsWith(` ${file}`);
    const field = /^(\w+):\s+(\d+) kB/.exec(line);
    if (inFile && field && field[1]! in totals) totals[field[1] as keyof typeof totals] += Number(field[2]) / 1024;
  }
  if (totals.Rss === 0) throw new Error(`process ${pid} has no page of ${file} mapped`);
  return {
    rssMiB: totals.Rss,
    pssMiB: totals.Pss,
    sharedMiB: totals.Shared_Clean + totals.Shared_Dirty,
    privateMiB: totals.Private_Clean + totals.Private_Dirty,
  };
}

/** A process as /proc shows it. */
export interface ProcessInfo {
  pid: number;
  parent: number;
  /** one letter: R running, S sleeping, Z zombie (exited, not reaped yet), ... */
  state: string;
  /** CPU time used so far, user + system */
  cpuMs: number;
  /** its command line, arguments separated by spaces */
  command: string;
}

/** Linux's clock tick for /proc/<pid>/stat times (USER_HZ), in ms. */
const clockTickMs = 10;

/** What /proc says of `pid`; undefined once it is gone. */
export function processInfo(pid: number): ProcessInfo | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // After the command name's closing parenthesis (the name may hold one): state, ppid, ..., utime (12th), stime (13th).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const command = readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ").trimEnd();
    return { pid, parent: Number(fields[1]), state: fields[0]!, cpuMs: (Number(fields[11]) + Number(fields[12])) * clockTickMs, command };
  } catch {
    return undefined;
  }
}

/** Every process of this host. */
export function processes(): ProcessInfo[] {
  return readdirSync("/proc").flatMap((name) => (/^\d+$/.test(name) ? (processInfo(Number(name)) ?? []) : []));
}

/** The processes `pid`'s main thread has forked. */
export function childrenOf(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number);
}

/** Whether `pid` has exited: gone, or a zombie its parent has not reaped. */
export function hasExited(pid: number): boolean {
  const info = processInfo(pid);
  return info === undefined || info.state === "Z";
}
