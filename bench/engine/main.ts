// Engine benchmark: each figure is the median of RUNS runs, measured through @ferry/engine
// and, in the same run, with raw QEMU driven over a bare QMP socket with equivalent
// arguments. Prints one JSON document. Targets: engine within 10% of raw; live-migration
// downtime of an idle guest ≤ 50 ms.
//
// Runs chain to save boots: a guest is booted once per series, then saved → restored →
// saved again (or migrated back and forth), so each save starts from a live guest.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { once } from "node:events";
import { createReadStream, createWriteStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, watch, writeFileSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { Engine, loadImage, specForVm, toQemuArgv, type GuestImage, type VmSpec } from "@ferry/engine";

const RUNS = 5;
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const root = mkdtempSync(path.join(os.tmpdir(), "ferry-bench-engine-"));
const image: GuestImage = await loadImage(imagesDir, "tiny");
const engine = await Engine.open({ runDir: path.join(root, "run"), accelerator: "tcg" });
const rawProcesses = new Set<ChildProcess>();
let vmCounter = 0;

function spec(memoryMiB: number): VmSpec {
  const id = `bench-${++vmCounter}`;
  return { ...specForVm({ id, vcpus: 1, memoryMiB, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(root, id) }), nics: [], display: null };
}

function withSerial(s: VmSpec, suffix: string): VmSpec {
  return { ...s, serial: { logFile: path.join(path.dirname(s.serial.logFile), `serial-${suffix}.log`) } };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
};
const round = (x: number) => Math.round(x * 10) / 10;
const now = () => performance.now();

// --- raw QEMU: spawn and a bare QMP socket --------------------------------------------------

interface RawQemu {
  child: ChildProcess;
  cmd: (execute: string, args?: Record<string, unknown>) => Promise<any>;
  event: (name: string, match?: (data: any) => boolean) => Promise<any>;
  close: () => Promise<void>;
}

async function rawQemu(s: VmSpec, incoming?: string): Promise<RawQemu> {
  const dir = path.join(root, "raw", `${s.id}-${Date.now()}`);
  mkdirSync(dir, { recursive: true });
  const qmpSocket = path.join(dir, "qmp.sock");
  const argv = toQemuArgv(s, { accelerator: "tcg", qmpSocket, pidFile: path.join(dir, "qemu.pid"), ...(incoming ? { incoming } : {}) });
  const child = spawn("qemu-system-x86_64", argv, { stdio: "ignore" });
  rawProcesses.add(child);
  child.once("exit", () => rawProcesses.delete(child));
  let socket: net.Socket | undefined;
  while (!socket) {
    socket = await new Promise<net.Socket | undefined>((resolve) => {
      const c = net.createConnection(qmpSocket, () => resolve(c));
      c.once("error", () => setTimeout(() => resolve(undefined), 5));
    });
  }
  const waiting: Array<(msg: any) => boolean> = [];
  let buffer = "";
  socket.setEncoding("utf8");
  socket.on("data", (chunk: string) => {
    buffer += chunk;
    let i: number;
    while ((i = buffer.indexOf("\n")) >= 0) {
      const msg = JSON.parse(buffer.slice(0, i));
      buffer = buffer.slice(i + 1);
      const idx = waiting.findIndex((w) => w(msg));
      if (idx >= 0) waiting.splice(idx, 1);
    }
  });
  const next = (pred: (msg: any) => boolean) =>
    new Promise<any>((resolve) => waiting.push((msg) => (pred(msg) ? (resolve(msg), true) : false)));
  await next((m) => "QMP" in m);
  const cmd = async (execute: string, args?: Record<string, unknown>) => {
    const reply = next((m) => "return" in m || "error" in m);
    socket!.write(`${JSON.stringify(args ? { execute, arguments: args } : { execute })}\n`);
    const msg = await reply;
    if (msg.error) throw new Error(`${execute}: ${msg.error.desc}`);
    return msg.return;
  };
  await cmd("qmp_capabilities");
  await cmd("migrate-set-capabilities", { capabilities: [{ capability: "events", state: true }] });
  return {
    child,
    cmd,
    event: (name, match = () => true) => next((m) => m.event === name && match(m.data)),
    close: async () => {
      socket!.destroy();
      child.kill("SIGKILL");
      if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function waitForSerialLine(file: string, fromOffset: number, text: string): Promise<void> {
  return new Promise((resolve) => {
    const check = () => {
      const content = readFileSync(file, "utf8").slice(fromOffset);
      if (content.includes(text)) {
        watcher.close();
        resolve();
      }
    };
    const watcher = watch(file, check);
    check();
  });
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

// --- boot ----------------------------------------------------------------------------------

async function bootEngine(): Promise<number> {
  const s = spec(256);
  const t = now();
  const vm = await engine.start(s, { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 60_000 });
  const ms = now() - t;
  await vm.stop({ graceMs: 0 });
  return ms;
}

async function bootRaw(): Promise<number> {
  const s = spec(256);
  const t = now();
  mkdirSync(path.dirname(s.disks[0]!.overlay), { recursive: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", s.disks[0]!.base, "-F", "qcow2", s.disks[0]!.overlay]);
  writeFileSync(s.serial.logFile, "");
  const q = await rawQemu(s);
  await waitForSerialLine(s.serial.logFile, 0, image.bootMarker);
  const ms = now() - t;
  await q.close();
  return ms;
}

// --- save and restore ----------------------------------------------------------------------

async function saveRestoreEngine(memoryMiB: number) {
  const base = spec(memoryMiB);
  let vm = await engine.start(base, { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 60_000 });
  await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
  const save: number[] = [];
  const bytes: number[] = [];
  const restore: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const file = path.join(root, `${base.id}-${run}.zst`);
    let t = now();
    const manifest = await vm.saveState(createWriteStream(file));
    save.push(now() - t);
    bytes.push(manifest.streamBytes);
    await vm.stop({ graceMs: 0 });
    t = now();
    vm = await engine.restore(base, createReadStream(file), manifest);
    restore.push(now() - t);
    rmSync(file);
    // Let the restored guest run a moment, as a user's would, before the next save.
    await vm.waitForSerial(/ferry-tick /, { timeoutMs: 10_000 });
  }
  await vm.stop({ graceMs: 0 });
  return { saveMs: median(save), bytes: median(bytes), restoreMs: median(restore) };
}

async function saveRestoreRaw(memoryMiB: number) {
  const base = spec(memoryMiB);
  mkdirSync(path.dirname(base.disks[0]!.overlay), { recursive: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base.disks[0]!.base, "-F", "qcow2", base.disks[0]!.overlay]);
  writeFileSync(base.serial.logFile, "");
  let q = await rawQemu(base);
  await waitForSerialLine(base.serial.logFile, 0, "ferry-tick 1 ");
  const save: number[] = [];
  const bytes: number[] = [];
  const restore: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const file = path.join(root, `${base.id}-raw-${run}.zst`);
    let t = now();
    const stopped = q.event("STOP");
    await q.cmd("stop");
    await stopped;
    await q.cmd("migrate-set-parameters", { "max-bandwidth": 2 ** 40 });
    const done = q.event("MIGRATION", (d) => d.status === "completed" || d.status === "failed");
    await q.cmd("migrate", { uri: `exec:zstd -1 -T2 -q > ${file}` });
    await done;
    save.push(now() - t);
    bytes.push(sizeOf(file));
    await q.close();
    t = now();
    q = await rawQemu(base, `exec:zstd -dc ${file}`);
    await q.event("MIGRATION", (d) => d.status === "completed");
    await q.cmd("cont");
    restore.push(now() - t);
    rmSync(file);
    const offset = sizeOf(base.serial.logFile);
    await waitForSerialLine(base.serial.logFile, offset, "ferry-tick ");
  }
  await q.close();
  return { saveMs: median(save), bytes: median(bytes), restoreMs: median(restore) };
}

// --- live migration ------------------------------------------------------------------------

async function freePort(): Promise<number> {
  const server = net.createServer().listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

async function migrateEngine() {
  const base = spec(256);
  let vm = await engine.start(base, { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 60_000 });
  await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
  const downtime: number[] = [];
  const total: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const port = await freePort();
    const dst = await engine.prepareIncoming(withSerial(base, `m${run}`), { listen: { kind: "tcp", host: "127.0.0.1", port } });
    const figures = await vm.liveMigrate(`tcp:127.0.0.1:${port}`, { downtimeLimitMs: 50, timeoutMs: 60_000 });
    downtime.push(figures.downtimeMs);
    total.push(figures.totalTimeMs);
    await dst.whenState("running", { timeoutMs: 30_000 });
    vm = dst;
  }
  await vm.stop({ graceMs: 0 });
  return { downtimeMs: median(downtime), totalTimeMs: median(total) };
}

async function migrateRaw() {
  const base = spec(256);
  mkdirSync(path.dirname(base.disks[0]!.overlay), { recursive: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", base.disks[0]!.base, "-F", "qcow2", base.disks[0]!.overlay]);
  writeFileSync(base.serial.logFile, "");
  let q = await rawQemu(base);
  await waitForSerialLine(base.serial.logFile, 0, "ferry-tick 1 ");
  const downtime: number[] = [];
  const total: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    const port = await freePort();
    const dst = await rawQemu(withSerial(base, `raw-m${run}`), `tcp:127.0.0.1:${port}`);
    const dstDone = dst.event("MIGRATION", (d) => d.status === "completed");
    await q.cmd("migrate-set-parameters", { "downtime-limit": 50, "max-bandwidth": 2 ** 40 });
    const done = q.event("MIGRATION", (d) => d.status === "completed" || d.status === "failed");
    await q.cmd("migrate", { uri: `tcp:127.0.0.1:${port}` });
    await done;
    // The figures are final once the source is in postmigrate (QEMU 7.2, QEMU-NOTES).
    while ((await q.cmd("query-status")).status !== "postmigrate");
    const info = await q.cmd("query-migrate");
    downtime.push(info.downtime);
    total.push(info["total-time"]);
    await dstDone;
    await q.close();
    q = dst;
  }
  await q.close();
  return { downtimeMs: median(downtime), totalTimeMs: median(total) };
}

// --- report --------------------------------------------------------------------------------

const ratio = (engineValue: number, rawValue: number) => (rawValue > 0 ? Math.round((engineValue / rawValue) * 100) / 100 : null);

try {
  const started = now();
  const bootEngineRuns: number[] = [];
  const bootRawRuns: number[] = [];
  // Interleaved, so background load on the host hits both sides alike.
  for (let run = 0; run < RUNS; run++) {
    bootEngineRuns.push(await bootEngine());
    bootRawRuns.push(await bootRaw());
  }
  const boot = { engineMs: round(median(bootEngineRuns)), rawMs: round(median(bootRawRuns)) };

  const guestState: Record<string, unknown> = {};
  for (const memoryMiB of [256, 1024]) {
    const e = await saveRestoreEngine(memoryMiB);
    const r = await saveRestoreRaw(memoryMiB);
    guestState[`${memoryMiB}MiB`] = {
      save: { engineMs: round(e.saveMs), rawMs: round(r.saveMs), ratio: ratio(e.saveMs, r.saveMs), engineBytes: e.bytes, rawBytes: r.bytes },
      restore: { engineMs: round(e.restoreMs), rawMs: round(r.restoreMs), ratio: ratio(e.restoreMs, r.restoreMs) },
    };
  }

  const me = await migrateEngine();
  const mr = await migrateRaw();

  const report = {
    benchmark: "engine",
    runs: RUNS,
    statistic: "median",
    host: { cpus: os.cpus().length, kernel: os.release(), qemu: engine.qemuVersion, accelerator: "tcg" },
    bootToMarker: { ...boot, ratio: ratio(boot.engineMs, boot.rawMs) },
    guestState,
    liveMigration: {
      guest: "tiny, 256 MiB, idle, loopback tcp, downtime-limit 50 ms",
      downtime: { engineMs: me.downtimeMs, rawMs: mr.downtimeMs, ratio: ratio(me.downtimeMs, mr.downtimeMs) },
      totalTime: { engineMs: me.totalTimeMs, rawMs: mr.totalTimeMs, ratio: ratio(me.totalTimeMs, mr.totalTimeMs) },
    },
    targets: { engineWithinOfRaw: 1.1, liveMigrationDowntimeMs: 50, downtimeMet: me.downtimeMs <= 50 },
    wallClockS: Math.round((now() - started) / 1000),
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  await engine.shutdown({ graceMs: 0 });
  for (const child of rawProcesses) child.kill("SIGKILL");
  rmSync(root, { recursive: true, force: true });
}
