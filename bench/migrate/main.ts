// bench/migrate: what a live migration costs the person using the vm. A whole Ferry (two
// workers sharing disk storage) moves a tiny TCG guest back and forth through the REST API
// while a console is open through the gateway, for an idle guest and for one dirtying memory;
// beside it, in the same run, raw QEMU migrating the same guest between two processes.
//
// Per migration:
// - downtime as QEMU reports it (the vm's migration event; raw: query-migrate),
// - downtime as the guest counter shows it: the largest gap between `ferry-tick` lines
//   arriving in the serial stream around the move, minus the usual one-second interval,
// - the console's frame gap: the guest draws a counter on its screen ten times a second, and a
//   websocket RFB client keeps asking the gateway for frames (incremental, as noVNC does, so
//   each frame is a change; BENCH_FRAMES=full for whole frames) during the move; the largest
//   gap between two frames (the longest the screen froze for the person watching), beside
//   the largest gap in the 2 s before the move, and the gap the gateway's re-attach to the
//   destination closed (ended by the whole screen the destination sends),
// - total time: POST /vms/{id}/migrate → the vm reported running on the other worker,
// - raw QEMU only: QEMU's setup time, which under TCG is mostly the first dirty-bitmap sync
//   (page by page with trimmed RAM, see toQemuArgv's memory size: 0.25-1 s; 1-2 ms with exact
//   RAM); QEMU holds its main lock through it, so no console frame leaves the source meanwhile.
//   Both sides get the memory layout a worker's cold boot gives on this QEMU (memoryLayout in the JSON).
//
// Prints one JSON document with medians of BENCH_RUNS (default 5) runs per case.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";

import { Engine, loadImage, specForVm, type Vm, type VmSpec } from "@ferry/engine";
import { Redis } from "ioredis";

import { freePort, median, round, startFerryCluster, type FerryCluster } from "../lib/ferry-cluster.ts";
import { openRfbOverWebSocket, type RfbSession } from "../lib/rfb-ws-client.ts";

const runs = Number(process.env.BENCH_RUNS ?? 5);
/** incremental (what noVNC asks for: frames come as the screen changes) or full (a whole frame per request) */
const frameMode = process.env.BENCH_FRAMES === "full" ? "full" : "incremental";
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
/** Rewrites 16 MiB of the guest's RAM-backed root file system over and over. */
const dirtyCommand = "while true; do dd if=/dev/urandom of=/tmp/dirty bs=1M count=16 2>/dev/null; done &\n";
/**
 * Draws a counter in place on the VGA console ten times a second: what a person watching the
 * console sees change. Every frame the console sends then carries a change, so the longest gap
 * between frames is the longest time the screen froze for the person watching.
 */
const drawCommand = 'i=0; while true; do i=$((i+1)); echo -ne "\\r$i "; sleep 0.1; done\n';

interface ApiVm {
  id: string;
  state: string;
  workerId: string | null;
  stateReason: string | null;
}

interface Sample {
  qemuDowntimeMs: number;
  counterGapMs: number;
  consoleFrameGapMs: number;
  /**
   * when that gap began, in ms after the migrate request: early in the move (once the
   * destination's QEMU is up) it is QEMU's first dirty-bitmap sync on the source, near totalMs
   * the switch to the destination
   */
  consoleFrameGapStartMs: number;
  /** the largest frame gap in the 2 s before the move: what the console does without one */
  consoleFrameGapBeforeMs: number;
  /**
   * the gap the gateway's re-attach closed: from the last frame before the whole screen the
   * destination sends on re-attach to that screen (incremental frames only)
   */
  consoleSwitchGapMs: number;
  /** frames and ticks that arrived in the window the gaps are taken from (too few: no figure) */
  framesInWindow: number;
  ticksInWindow: number;
  totalMs: number;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// XT scancodes (US layout) of what dirtyCommand and drawCommand need; [code, shift].
const scancodes: Record<string, [number, boolean]> = {
  " ": [0x39, false], ";": [0x27, false], "=": [0x0d, false], "/": [0x35, false], ".": [0x34, false], "&": [0x08, true],
  ">": [0x34, true], "\n": [0x1c, false], M: [0x32, true], "0": [0x0b, false], "1": [0x02, false], "2": [0x03, false], "6": [0x07, false],
  "-": [0x0c, false], "+": [0x0d, true], "$": [0x05, true], "(": [0x0a, true], ")": [0x0b, true], '"': [0x28, true], "\\": [0x2b, false],
  ...Object.fromEntries(
    Object.entries({
      a: 0x1e, b: 0x30, c: 0x2e, d: 0x20, e: 0x12, f: 0x21, g: 0x22, h: 0x23, i: 0x17, j: 0x24, k: 0x25, l: 0x26, m: 0x32,
      n: 0x31, o: 0x18, p: 0x19, q: 0x10, r: 0x13, s: 0x1f, t: 0x14, u: 0x16, v: 0x2f, w: 0x11, x: 0x2d, y: 0x15, z: 0x2c,
    }).map(
      ([key, code]) => [key, [code, false] as [number, boolean]],
    ),
  ),
};

/** QEMU extended key events: QEMU types by key code, so Shift works as on a US keyboard. */
async function typeThroughConsole(rfb: RfbSession, text: string): Promise<void> {
  const key = (code: number, down: boolean) => {
    const message = Buffer.alloc(12);
    message[0] = 255;
    message.writeUInt16BE(down ? 1 : 0, 2);
    message.writeUInt32BE(code, 8);
    rfb.send(message);
  };
  // Tell QEMU this client speaks extended key events (pseudo-encoding -258), raw pixels only.
  const encodings = Buffer.alloc(12);
  encodings[0] = 2;
  encodings.writeUInt16BE(2, 2);
  encodings.writeInt32BE(0, 4);
  encodings.writeInt32BE(-258, 8);
  rfb.send(encodings);
  for (const char of text) {
    const [code, shift] = scancodes[char] ?? [0, false];
    if (code === 0) throw new Error(`no scancode for ${JSON.stringify(char)}`);
    if (shift) key(0x2a, true);
    key(code, true);
    key(code, false);
    if (shift) key(0x2a, false);
    // The guest's USB keyboard is polled; a short gap keeps every key.
    await sleep(15);
  }
}

/** Arrival times of `ferry-tick` lines in the vm's serial stream. */
function followTicks(redis: Redis, vmId: string) {
  const reader = redis.duplicate();
  const arrivals: number[] = [];
  let stopped = false;
  let partial = "";
  const done = (async () => {
    let last = "$";
    while (!stopped) {
      const batch = await reader.xread("BLOCK", 100, "STREAMS", `ferry:vm:${vmId}:serial`, last);
      const at = performance.now();
      for (const [, entries] of batch ?? []) {
        for (const [id, fields] of entries) {
          last = id;
          partial += fields[1] ?? "";
          const lines = partial.split("\n");
          partial = lines.pop() ?? "";
          for (const line of lines) if (line.includes("ferry-tick")) arrivals.push(at);
        }
      }
    }
  })();
  return {
    arrivals,
    async stop() {
      stopped = true;
      await done;
      reader.disconnect();
    },
  };
}

/** Frames requested back to back; their arrival times, and those of whole-screen frames. */
function followFrames(rfb: RfbSession) {
  const arrivals: number[] = [];
  const wholeScreens: number[] = [];
  let stopped = false;
  const next = async (incremental: boolean) => {
    const at = await rfb.nextUpdate(incremental);
    arrivals.push(at);
    if (rfb.lastUpdatePixels >= rfb.width * rfb.height) wholeScreens.push(at);
  };
  const done = (async () => {
    await next(false);
    while (!stopped) await next(frameMode === "incremental");
  })();
  return {
    arrivals,
    wholeScreens,
    async stop() {
      stopped = true;
      await done;
    },
  };
}

/** The largest gap between consecutive times inside [from, to], and the time it began. */
const largestGapAt = (times: readonly number[], from: number, to: number): { gap: number; at: number } => {
  const inside = times.filter((t) => t >= from && t <= to);
  let largest = { gap: 0, at: from };
  for (let i = 1; i < inside.length; i += 1) {
    if (inside[i]! - inside[i - 1]! > largest.gap) largest = { gap: inside[i]! - inside[i - 1]!, at: inside[i - 1]! };
  }
  return largest;
};
const largestGap = (times: readonly number[], from: number, to: number): number => largestGapAt(times, from, to).gap;

/** Arrival of the first whole screen after `from` minus that of the frame before it. */
function switchGap(arrivals: readonly number[], wholeScreens: readonly number[], from: number): number {
  if (frameMode !== "incremental") return Number.NaN;
  const screen = wholeScreens.find((t) => t > from);
  const index = screen === undefined ? -1 : arrivals.indexOf(screen);
  if (index < 1) throw new Error("no whole-screen frame after the move: the console was not re-attached (or never changed)");
  return arrivals[index]! - arrivals[index - 1]!;
}

async function waitVm(cluster: FerryCluster, id: string, test: (vm: ApiVm) => boolean, what: string, timeoutMs = 120_000): Promise<ApiVm> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const { body } = await api<ApiVm>(cluster, "GET", `/vms/${id}`);
    if (test(body)) return body;
    if (body.state === "failed") throw new Error(`vm ${id} failed: ${body.stateReason}`);
    if (performance.now() > deadline) throw new Error(`vm ${id} not ${what} after ${timeoutMs} ms (${JSON.stringify(body)})`);
    await sleep(10);
  }
}

/** The API, retried once when the portal closed a kept-alive connection under us. */
async function api<T>(cluster: FerryCluster, method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> {
  try {
    return await cluster.api<T>(method, path, body);
  } catch (error) {
    if (!(error instanceof TypeError)) throw error;
    await sleep(100);
    return cluster.api<T>(method, path, body);
  }
}

async function qemuDowntime(cluster: FerryCluster, id: string, migrationsSoFar: number): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt += 1) {
    const { body } = await api<{ items: { kind: string; message: string }[] }>(cluster, "GET", `/vms/${id}/events?limit=200`);
    const figures = body.items.filter((e) => e.kind === "migration").flatMap((e) => {
      const match = /QEMU reports (\d+) ms downtime/.exec(e.message);
      return match ? [Number(match[1])] : [];
    });
    if (figures.length > migrationsSoFar) return figures.at(-1)!;
    await sleep(50);
  }
  throw new Error(`vm ${id}: no QEMU figures for migration ${migrationsSoFar + 1} in its events`);
}

async function platformRuns(cluster: FerryCluster, redis: Redis, dirty: boolean): Promise<Sample[]> {
  const created = await cluster.api<ApiVm>("POST", "/vms", { name: `bench-migrate-${dirty ? "dirty" : "idle"}`, image: "tiny", vcpus: 1, memoryMiB: 256 });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
  const id = created.body.id;
  await waitVm(cluster, id, (vm) => vm.state === "running", "running");
  const ticks = followTicks(redis, id);
  while (ticks.arrivals.length < 2) await sleep(100);
  const grant = await cluster.api<{ url: string }>("POST", `/vms/${id}/console`);
  const rfb = await openRfbOverWebSocket(grant.body.url, cluster.baseUrl);
  if (dirty) await typeThroughConsole(rfb, dirtyCommand);
  await typeThroughConsole(rfb, drawCommand);
  await sleep(3000);
  const frames = followFrames(rfb);
  const samples: Sample[] = [];
  try {
    for (let i = 0; i < runs; i += 1) {
      const before = await waitVm(cluster, id, (vm) => vm.state === "running", "running");
      await sleep(2500); // a couple of ticks and frames before the move
      const started = performance.now();
      const asked = await api<ApiVm>(cluster, "POST", `/vms/${id}/migrate`, {});
      if (asked.status !== 200) throw new Error(`migrate answered ${asked.status}: ${JSON.stringify(asked.body)}`);
      const after = await waitVm(cluster, id, (vm) => vm.state !== "migrating", "done migrating");
      const finished = performance.now();
      if (after.workerId === before.workerId) throw new Error(`migration ${i + 1} did not move vm ${id}: ${after.stateReason}`);
      await sleep(2500); // ticks and frames after the move
      const window: [number, number] = [started - 2000, finished + 2000];
      const tickGap = largestGap(ticks.arrivals, ...window);
      const frameGap = largestGapAt(frames.arrivals, ...window);
      samples.push({
        qemuDowntimeMs: await qemuDowntime(cluster, id, i),
        // Ticks come once a second: what the move added is the largest gap beyond that.
        counterGapMs: Math.max(0, tickGap - 1000),
        consoleFrameGapMs: frameGap.gap,
        consoleFrameGapStartMs: frameGap.at - started,
        consoleFrameGapBeforeMs: largestGap(frames.arrivals, started - 2000, started),
        consoleSwitchGapMs: switchGap(frames.arrivals, frames.wholeScreens, started),
        framesInWindow: frames.arrivals.filter((t) => t >= window[0] && t <= window[1]).length,
        ticksInWindow: ticks.arrivals.filter((t) => t >= window[0] && t <= window[1]).length,
        totalMs: finished - started,
      });
    }
  } finally {
    // Closing the console first ends a request still waiting for a frame.
    rfb.close();
    await frames.stop().catch(() => undefined);
    await ticks.stop();
    await cluster.api("DELETE", `/vms/${id}`);
  }
  return samples;
}

async function rawRuns(engine: Engine, workDir: string, dirty: boolean): Promise<{ qemuDowntimeMs: number; qemuSetupMs: number; totalMs: number }[]> {
  const image = await loadImage(imagesDir, "tiny");
  const spec = (side: number): VmSpec => {
    const base = specForVm({ id: `bench-raw-${dirty ? "dirty" : "idle"}`, vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", image, vmDir: join(workDir, `${dirty ? "dirty" : "idle"}-${side}`) });
    return {
      ...base,
      memoryLayout: engine.coldBootMemoryLayout,
      disks: base.disks.map((disk) => ({ ...disk, overlay: join(workDir, `${dirty ? "dirty" : "idle"}-shared.qcow2`) })),
    };
  };
  let vm: Vm = await engine.start(spec(0), { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 120_000 });
  await vm.waitForSerial(/ferry-tick/, { timeoutMs: 60_000 });
  if (dirty) {
    for (const char of dirtyCommand) {
      const codes = char === " " ? ["spc"] : char === ";" ? ["semicolon"] : char === "=" ? ["equal"] : char === "/" ? ["slash"] : char === "." ? ["dot"]
        : char === "&" ? ["shift", "7"] : char === ">" ? ["shift", "dot"] : char === "\n" ? ["ret"] : char === "M" ? ["shift", "m"] : [char];
      await vm.execute("send-key", { keys: codes.map((data) => ({ type: "qcode", data })), "hold-time": 10 });
    }
    await sleep(3000);
  }
  const samples = [];
  try {
    for (let i = 0; i < runs; i += 1) {
      await sleep(2500);
      const port = await freePort();
      const incoming = await engine.prepareIncoming(spec((i + 1) % 2), { listen: { kind: "tcp", host: "127.0.0.1", port } });
      const figures = await vm.liveMigrate(`tcp:127.0.0.1:${port}`, { downtimeLimitMs: 50, timeoutMs: 60_000, autoConverge: true });
      await incoming.whenState("running", { timeoutMs: 10_000 });
      samples.push({ qemuDowntimeMs: figures.downtimeMs, qemuSetupMs: figures.setupTimeMs ?? Number.NaN, totalMs: figures.totalTimeMs });
      vm = incoming;
    }
  } finally {
    await vm.stop({ graceMs: 0 });
  }
  return samples;
}

function summary(samples: readonly Record<string, number>[]) {
  const keys = Object.keys(samples[0] ?? {});
  return Object.fromEntries(
    keys.map((key) => {
      const values = samples.map((s) => s[key]!);
      return [key, { median: round(median(values)), samples: values.map((v) => round(v)) }];
    }),
  );
}

async function main(): Promise<void> {
  const workDir = mkdtempSync("/tmp/ferry-bench-migrate-");
  const redisPort = await freePort();
  const cluster = await startFerryCluster({ FERRY_REDIS_PORT: String(redisPort), FERRY_MIGRATION_DOWNTIME_MS: "50" });
  const redis = new Redis(`redis://127.0.0.1:${redisPort}`);
  const engine = await Engine.open({ runDir: join(workDir, "run"), accelerator: "tcg" });
  try {
    // Each case is logged to stderr as it finishes, so a later failure keeps the earlier figures.
    const logged = async <T>(name: string, work: Promise<T>): Promise<T> => {
      const samples = await work;
      console.error(JSON.stringify({ case: name, samples }));
      return samples;
    };
    const rawIdle = await logged("raw idle", rawRuns(engine, workDir, false));
    const idle = await logged("platform idle", platformRuns(cluster, redis, false));
    const rawDirty = await logged("raw dirty", rawRuns(engine, workDir, true));
    const dirty = await logged("platform dirty", platformRuns(cluster, redis, true));
    const result = {
      bench: "migrate",
      runs,
      qemuVersion: engine.qemuVersion,
      memoryLayout: engine.coldBootMemoryLayout,
      guest: "tiny, 1 vCPU, 256 MiB, TCG, drawing a counter on its console every 100 ms; FERRY_MIGRATION_DOWNTIME_MS=50, auto-converge",
      consoleFrames: frameMode,
      dirtying: dirtyCommand.trim(),
      drawing: drawCommand.trim(),
      platform: { idle: summary(idle as unknown as Record<string, number>[]), dirty: summary(dirty as unknown as Record<string, number>[]) },
      rawQemu: { idle: summary(rawIdle), dirty: summary(rawDirty) },
      targets: {
        idleDowntimeMs: { target: 50, median: round(median(idle.map((s) => s.qemuDowntimeMs))) },
        consoleFrameGapMs: { target: 300, medianIdle: round(median(idle.map((s) => s.consoleFrameGapMs))), medianDirty: round(median(dirty.map((s) => s.consoleFrameGapMs))) },
        consoleSwitchGapMs: { medianIdle: round(median(idle.map((s) => s.consoleSwitchGapMs))), medianDirty: round(median(dirty.map((s) => s.consoleSwitchGapMs))) },
      },
    };
    console.log(JSON.stringify(result, null, 2));
  } finally {
    redis.disconnect();
    await engine.shutdown({ graceMs: 0 });
    await cluster.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}

await main();
