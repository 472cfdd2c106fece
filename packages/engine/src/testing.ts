// Test support for code that reaches a guest's display without the engine (the worker's
// console relay, the console gateway): the tiny image booted straight from QEMU, its VNC on a
// unix socket, nothing else attached. And how much of a memory file a QEMU shares with others.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
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
