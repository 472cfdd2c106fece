// Engine benchmark: each figure is the median of RUNS runs, measured through @ferry/engine
// and, in the same run, with raw QEMU driven over a bare QMP socket with equivalent
// arguments. Prints one JSON document. Targets: engine within 10% of raw; live-migration
// downtime of an idle guest ≤ 50 ms.
//
// Runs chain to save boots: a guest is booted once per series, then saved → restored →
// saved again (or migrated back and forth), so each save starts from a live guest.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, watch, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { Engine, guestStateFileSink, loadImage, specForVm, type GuestImage, type VmSpec } from "@ferry/engine";
import { freePort } from "../lib/ferry-cluster.ts";
import { childrenOf, gone } from "../lib/processes.ts";
import { type RawQemu, killRawQemus, startRawQemu } from "../lib/raw-qemu.ts";

// 31 by default: on a shared 2-core host single samples spread widely (an idle guest's live
// migration took 42-256 ms within one run, raw or engine), and medians of 11-15 runs moved by
// up to 20 % between identical runs; a 31-run median (~9 min) came within 5 % of the median
// of all 72 samples a side pooled from four runs, for every figure.
const RUNS = Math.max(5, Number(process.env.FERRY_BENCH_RUNS ?? 31));
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const root = mkdtempSync(path.join(os.tmpdir(), "ferry-bench-engine-"));
const image: GuestImage = await loadImage(imagesDir, "tiny");
const engine = await Engine.open({ runDir: path.join(root, "run"), accelerator: "tcg" });
let vmCounter = 0;

function spec(memoryMiB: number): VmSpec {
  const id = `bench-${++vmCounter}`;
  // The RAM layout a worker's cold boot gives a vm on this QEMU (raw QEMU gets the same argv).
  const memoryLayout = engine.coldBootMemoryLayout;
  return { ...specForVm({ id, vcpus: 1, memoryMiB, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(root, id) }), nics: [], display: null, memoryLayout };
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
  const q = await startRawQemu(root, s);
  await waitForSerialLine(s.serial.logFile, 0, image.bootMarker);
  const ms = now() - t;
  await q.close();
  return ms;
}

// --- save and restore ----------------------------------------------------------------------
// Each series is a booted guest and a step that saves it and restores it in a new process.
// Engine and raw steps alternate, so background load on the host hits both alike.

interface Series<T> {
  step: () => Promise<T>;
  close: () => Promise<void>;
}

async function rawGuest(s: VmSpec): Promise<RawQemu> {
  mkdirSync(path.dirname(s.disks[0]!.overlay), { recursive: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", s.disks[0]!.base, "-F", "qcow2", s.disks[0]!.overlay]);
  writeFileSync(s.serial.logFile, "");
  const q = await startRawQemu(root, s);
  await waitForSerialLine(s.serial.logFile, 0, "ferry-tick 1 ");
  return q;
}

async function engineGuest(s: VmSpec) {
  const vm = await engine.start(s, { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 60_000 });
  await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
  return vm;
}

interface SaveRestore {
  saveMs: number;
  bytes: number;
  restoreMs: number;
  /** Engine runs: CPU this Node process spent in saveState and in Engine.restore (zstd and QEMU not included). */
  saveNodeCpuMs?: number;
  restoreNodeCpuMs?: number;
}

// A busy host stretches every wall-clock figure; the CPU the engine spends in this process
// on an operation is hardly affected by it, and is what the engine adds to QEMU and zstd.
function nodeCpuMsSince(start: NodeJS.CpuUsage): number {
  const used = process.cpuUsage(start);
  return (used.user + used.system) / 1000;
}

async function saveRestoreEngine(memoryMiB: number): Promise<Series<SaveRestore>> {
  const base = spec(memoryMiB);
  let vm = await engineGuest(base);
  let run = 0;
  return {
    step: async () => {
      const file = path.join(root, `${base.id}-${run++}.zst`);
      let t = now();
      let cpu = process.cpuUsage();
      const manifest = await vm.saveState(guestStateFileSink(file));
      const saveMs = now() - t;
      const saveNodeCpuMs = nodeCpuMsSince(cpu);
      await vm.stop({ graceMs: 0 });
      t = now();
      cpu = process.cpuUsage();
      vm = await engine.restore(base, { file }, manifest);
      const restoreMs = now() - t;
      const restoreNodeCpuMs = nodeCpuMsSince(cpu);
      rmSync(file);
      // Let the restored guest run a moment, as a user's would, before the next save.
      await vm.waitForSerial(/ferry-tick /, { timeoutMs: 10_000 });
      return { saveMs, bytes: manifest.streamBytes, restoreMs, saveNodeCpuMs, restoreNodeCpuMs };
    },
    close: () => vm.stop({ graceMs: 0 }),
  };
}

async function saveRestoreRaw(memoryMiB: number): Promise<Series<SaveRestore>> {
  const base = spec(memoryMiB);
  let q = await rawGuest(base);
  let run = 0;
  return {
    step: async () => {
      const file = path.join(root, `${base.id}-raw-${run++}.zst`);
      let t = now();
      await q.cmd("stop");
      const done = q.event("MIGRATION", (d) => d.status === "completed" || d.status === "failed");
      await q.cmd("migrate", { uri: `exec:zstd -1 -T2 -q > ${file}` });
      const compressor = childrenOf(q.child.pid!);
      await done;
      // The save is done when zstd has written the last byte and exited, as the engine's is
      // when its sink finished: QEMU reports completed while zstd may still be compressing.
      await Promise.all(compressor.map(gone));
      const saveMs = now() - t;
      execFileSync("zstd", ["-t", "-q", file]);
      await q.close();
      const bytes = sizeOf(file);
      t = now();
      q = await startRawQemu(root, base, `exec:zstd -dc ${file}`);
      // The load starts with QEMU, before QMP is connected: it may be over already.
      const loaded = q.event("MIGRATION", (d) => d.status === "completed");
      if (((await q.cmd("query-migrate")) as { status?: string }).status !== "completed") await loaded;
      await q.cmd("cont");
      const restoreMs = now() - t;
      rmSync(file);
      await waitForSerialLine(base.serial.logFile, sizeOf(base.serial.logFile), "ferry-tick ");
      return { saveMs, bytes, restoreMs };
    },
    close: () => q.close(),
  };
}

// --- live migration ------------------------------------------------------------------------

interface Migration {
  downtimeMs: number;
  totalTimeMs: number;
  setupTimeMs: number;
}

async function migrateEngine(): Promise<Series<Migration>> {
  const base = spec(256);
  let vm = await engineGuest(base);
  let run = 0;
  return {
    step: async () => {
      const port = await freePort();
      const dst = await engine.prepareIncoming(withSerial(base, `m${run++}`), { listen: { kind: "tcp", host: "127.0.0.1", port } });
      const figures = await vm.liveMigrate(`tcp:127.0.0.1:${port}`, { downtimeLimitMs: 50, timeoutMs: 60_000 });
      await dst.whenState("running", { timeoutMs: 30_000 });
      vm = dst;
      return { downtimeMs: figures.downtimeMs, totalTimeMs: figures.totalTimeMs, setupTimeMs: figures.setupTimeMs ?? 0 };
    },
    close: () => vm.stop({ graceMs: 0 }),
  };
}

async function migrateRaw(): Promise<Series<Migration>> {
  const base = spec(256);
  let q = await rawGuest(base);
  let run = 0;
  return {
    step: async () => {
      const port = await freePort();
      const dst = await startRawQemu(root, withSerial(base, `raw-m${run++}`), `tcp:127.0.0.1:${port}`);
      const dstDone = dst.event("MIGRATION", (d) => d.status === "completed");
      await q.cmd("migrate-set-parameters", { "downtime-limit": 50, "max-bandwidth": 2 ** 40 });
      const done = q.event("MIGRATION", (d) => d.status === "completed" || d.status === "failed");
      await q.cmd("migrate", { uri: `tcp:127.0.0.1:${port}` });
      await done;
      // The figures are final once the source is in postmigrate (QEMU 7.2, QEMU-NOTES).
      while (((await q.cmd("query-status")) as { status?: string }).status !== "postmigrate");
      const info = (await q.cmd("query-migrate")) as { downtime: number; "total-time": number; "setup-time": number };
      await dstDone;
      await q.close();
      q = dst;
      return { downtimeMs: info.downtime, totalTimeMs: info["total-time"], setupTimeMs: info["setup-time"] };
    },
    close: () => q.close(),
  };
}

async function alternate<T>(engineSeries: Series<T>, rawSeries: Series<T>): Promise<{ engine: T[]; raw: T[] }> {
  const results = { engine: [] as T[], raw: [] as T[] };
  try {
    // One round first that is not counted: a guest's first move is not like the others (moving a
    // guest that booted in its QEMU took ~400 ms on QEMU 10, engine or raw at either end, and
    // ~80-100 ms once it had arrived by migration; the benchmark's first migration took 3-11x
    // the median). Then each side goes first in every other round: with the engine always
    // first, its migrations kept one phase against the periodic work beside them (the guests'
    // ticks, the host's reclaim of freed memory) and were skewed as a group (engine/raw median
    // 1.12-1.87 on this host; 0.8 with raw first).
    await engineSeries.step();
    await rawSeries.step();
    for (let run = 0; run < RUNS; run++) {
      if (run % 2 === 0) {
        results.engine.push(await engineSeries.step());
        results.raw.push(await rawSeries.step());
      } else {
        results.raw.push(await rawSeries.step());
        results.engine.push(await engineSeries.step());
      }
    }
  } finally {
    await engineSeries.close();
    await rawSeries.close();
  }
  return results;
}

// --- report --------------------------------------------------------------------------------

const ratio = (engineValue: number, rawValue: number) => (rawValue > 0 ? Math.round((engineValue / rawValue) * 100) / 100 : null);
// On a busy host one run can take twice another; engine run i and raw run i ran back to back,
// so the median of their ratios (pairedRatio) and the ratio of the fastest runs (bestRatio)
// are shown beside the ratio of the medians.
const compare = (engineRuns: number[], rawRuns: number[]) => {
  const e = median(engineRuns);
  const r = median(rawRuns);
  return {
    engineMs: round(e),
    rawMs: round(r),
    ratio: ratio(e, r),
    pairedRatio: ratio(median(engineRuns.map((x, i) => x / rawRuns[i]!)), 1),
    bestRatio: ratio(Math.min(...engineRuns), Math.min(...rawRuns)),
    engineRuns: engineRuns.map(round),
    rawRuns: rawRuns.map(round),
  };
};

try {
  const started = now();
  const bootEngineRuns: number[] = [];
  const bootRawRuns: number[] = [];
  for (let run = 0; run < RUNS; run++) {
    bootEngineRuns.push(await bootEngine());
    bootRawRuns.push(await bootRaw());
  }

  const guestState: Record<string, unknown> = {};
  for (const memoryMiB of [256, 1024]) {
    const { engine: e, raw: r } = await alternate(await saveRestoreEngine(memoryMiB), await saveRestoreRaw(memoryMiB));
    guestState[`${memoryMiB}MiB`] = {
      save: {
        ...compare(e.map((x) => x.saveMs), r.map((x) => x.saveMs)),
        engineBytes: median(e.map((x) => x.bytes)),
        rawBytes: median(r.map((x) => x.bytes)),
        engineNodeCpuMs: round(median(e.map((x) => x.saveNodeCpuMs ?? 0))),
      },
      restore: {
        ...compare(e.map((x) => x.restoreMs), r.map((x) => x.restoreMs)),
        engineNodeCpuMs: round(median(e.map((x) => x.restoreNodeCpuMs ?? 0))),
      },
    };
  }

  const { engine: me, raw: mr } = await alternate(await migrateEngine(), await migrateRaw());
  const downtime = compare(me.map((x) => x.downtimeMs), mr.map((x) => x.downtimeMs));

  const report = {
    benchmark: "engine",
    runs: RUNS,
    statistic: "median",
    host: { cpus: os.cpus().length, kernel: os.release(), qemu: engine.qemuVersion, accelerator: "tcg", memoryLayout: engine.coldBootMemoryLayout },
    notes: [
      "save: both clocks stop when the compressed stream is complete on disk (raw: QEMU's exec: zstd has exited and the file passes zstd -t; engine: saveState resolved, the sink finished)",
      "restore: both clocks run from spawning QEMU (engine: Engine.restore call) to the cont reply (the guest runs)",
      "raw QEMU gets the engine's migration defaults on its command line (x-events=on, no bandwidth cap)",
      "engineNodeCpuMs: CPU the engine used in the benchmark's own process (hashing, feeding the sink, QMP, spawning a restore's QEMU and zstd), which host load hardly changes; a save's zstd is started by the engine's compressor helper (a separate small node process, ~1 ms of fork per save), not counted here, as QEMU's fork of the raw side's shell and zstd is not",
      "raw save uses QEMU 7.2's usual exec: transport (a 64 KiB pipe into zstd -1 -T2); the engine has QEMU write a unix socket on which its compressor helper hands the connection to zstd, which alone (zstd writing the file, no hashing, zstd then spawned by the benchmark's own process) measured 0.88-0.95x the exec: save on this host",
      "save/restore and migration runs alternate engine and raw (engine first in even rounds, raw first in odd ones) after one uncounted round, with one guest of each alive throughout",
      "live migration: totalTime (setup + copy + downtime) and setupTime are QEMU's own query-migrate figures",
    ],
    bootToMarker: compare(bootEngineRuns, bootRawRuns),
    guestState,
    liveMigration: {
      guest: "tiny, 256 MiB, idle, loopback tcp, downtime-limit 50 ms",
      downtime,
      totalTime: compare(me.map((x) => x.totalTimeMs), mr.map((x) => x.totalTimeMs)),
      // Often 0-2 ms (QEMU 10 with an exact -m), so medians alone: a ratio of those says nothing.
      setupTime: { engineMs: median(me.map((x) => x.setupTimeMs)), rawMs: median(mr.map((x) => x.setupTimeMs)) },
    },
    targets: { engineWithinOfRaw: 1.1, liveMigrationDowntimeMs: 50, downtimeMet: downtime.engineMs <= 50 },
    wallClockS: Math.round((now() - started) / 1000),
  };
  console.log(JSON.stringify(report, null, 2));
} finally {
  await engine.shutdown({ graceMs: 0 });
  killRawQemus();
  rmSync(root, { recursive: true, force: true });
}
