import { execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CompressorHelper } from "./compressor.ts";
import { childrenOf, hasExited, processes } from "./testing.ts";

let dir: string;
const helpers: CompressorHelper[] = [];
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "ferry-compressor-"));
});
afterEach(() => {
  for (const helper of helpers.splice(0)) helper.close();
  rmSync(dir, { recursive: true, force: true });
});

function helperFor(command: string, args: string[]): CompressorHelper {
  const helper = new CompressorHelper(command, args);
  helpers.push(helper);
  return helper;
}

function connect(socketPath: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.createConnection(socketPath, () => resolve(socket));
    socket.once("error", reject);
  });
}

/** Pids whose command line contains `marker`, with their parent pids. */
function processesWith(marker: string): Array<{ pid: number; parent: number }> {
  return processes()
    .filter((info) => info.command.includes(marker))
    .map(({ pid, parent }) => ({ pid, parent }));
}

async function gone(pid: number, withinMs: number): Promise<boolean> {
  for (const deadline = Date.now() + withinMs; Date.now() < deadline; ) {
    if (hasExited(pid)) return true;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return false;
}

describe("CompressorHelper", () => {
  it("hands the connection to the save's socket to zstd, which writes the file and reports exit 0", async () => {
    const socketPath = path.join(dir, "state-out.sock");
    const file = path.join(dir, "state-out.zst");
    const compression = helperFor("zstd", ["-1", "-T2", "-q", "-c"]).listen(socketPath, file);
    await compression.listening;
    const qemu = await connect(socketPath);
    await compression.started;
    const stream = Buffer.alloc(3 * 1024 * 1024, "guest memory ");
    qemu.end(stream);
    expect(await compression.exit).toBe(0);
    expect(execFileSync("zstd", ["-d", "-q", "-c", file], { maxBuffer: 2 * stream.length }).equals(stream)).toBe(true);
    // Accepted once: the helper stopped listening, which removes the socket.
    expect(existsSync(socketPath)).toBe(false);
  });

  it("starts the compressor from its own small process, not from the caller's", async () => {
    const marker = `ferry-compressor-test-${process.pid}-${Date.now()}`;
    const socketPath = path.join(dir, "state-out.sock");
    // `sh -c cat <marker>`: a compressor that copies its input and carries the marker in its command line.
    const compression = helperFor("sh", ["-c", "cat", marker]).listen(socketPath, path.join(dir, "out"));
    await compression.listening;
    const qemu = await connect(socketPath);
    await compression.started;
    const [compressor] = processesWith(marker);
    expect(compressor).toBeDefined();
    expect(compressor!.parent).not.toBe(process.pid);
    expect(readFileSync(`/proc/${compressor!.parent}/cmdline`, "utf8").split("\0").slice(0, 2)).toEqual([process.execPath, "-e"]);
    qemu.end("bytes");
    expect(await compression.exit).toBe(0);
    expect(readFileSync(path.join(dir, "out"), "utf8")).toBe("bytes");
  });

  it("a save cancelled before QEMU connected stops listening; a compressor that cannot start reports -1", async () => {
    const helper = helperFor("zstd", ["-1", "-q", "-c"]);
    const socketPath = path.join(dir, "state-out.sock");
    const cancelled = helper.listen(socketPath, path.join(dir, "out.zst"));
    await cancelled.listening;
    cancelled.kill();
    expect(await cancelled.exit).toBe(-1);
    await expect(cancelled.started).rejects.toThrow(/cancelled before QEMU connected/);
    expect(existsSync(socketPath)).toBe(false);

    const missing = helperFor("/nonexistent/zstd", []).listen(path.join(dir, "other.sock"), path.join(dir, "other.zst"));
    await missing.listening;
    (await connect(path.join(dir, "other.sock"))).end();
    expect(await missing.exit).toBe(-1);
  });

  it("a save under way when the helper dies sees exit -1, and the next save gets a new helper", async () => {
    const helper = helperFor("zstd", ["-1", "-q", "-c"]);
    const first = helper.listen(path.join(dir, "first.sock"), path.join(dir, "first.zst"));
    await first.listening;
    helper.close();
    expect(await first.exit).toBe(-1);
    await expect(first.started).rejects.toThrow(/helper process is gone/);

    const second = helper.listen(path.join(dir, "second.sock"), path.join(dir, "second.zst"));
    await second.listening;
    (await connect(path.join(dir, "second.sock"))).end("again");
    expect(await second.exit).toBe(0);
  });

  it("the helper does not outlive the process that started it", async () => {
    const module = path.join(path.dirname(fileURLToPath(import.meta.url)), "compressor.ts");
    // The worker dies while a save waits for QEMU: the helper's listening socket must not keep it alive.
    const socketPath = path.join(dir, "state-out.sock");
    const script = `import { CompressorHelper } from ${JSON.stringify(module)}; await new CompressorHelper("zstd", []).listen(${JSON.stringify(socketPath)}, ${JSON.stringify(path.join(dir, "out.zst"))}).listening; console.log("ready"); setInterval(() => {}, 1000);`;
    const worker = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      await once(worker.stdout!, "data");
      let helperPids: number[] = [];
      for (let attempt = 0; attempt < 100 && helperPids.length === 0; attempt++) {
        helperPids = childrenOf(worker.pid!);
        if (helperPids.length === 0) await new Promise((resolve) => setTimeout(resolve, 20));
      }
      expect(helperPids).toHaveLength(1);
      worker.kill("SIGKILL");
      expect(await gone(helperPids[0]!, 5000)).toBe(true);
    } finally {
      worker.kill("SIGKILL");
    }
  });
});
