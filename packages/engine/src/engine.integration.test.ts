// The engine against real QEMU (TCG) and the tiny guest image. Each test gets its own vm id
// and directory under one suite directory; afterAll checks that no QEMU whose command line
// mentions that directory is still alive.
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { once } from "node:events";
import {
  type FSWatcher,
  copyFileSync,
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  watch,
  writeFileSync,
} from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { probeAccelerator } from "./accel-probe.ts";
import { guestMemoryBytes } from "./qemu-argv.ts";
import { childrenOf, memoryFileMapping, processes } from "./testing.ts";
import { Engine } from "./engine.ts";
import { EngineError } from "./errors.ts";
import { type GuestStateSink, guestStateFileSink } from "./guest-state-sink.ts";
import type { GuestStateManifest } from "./guest-state.ts";
import { type GuestImage, loadImage, specForVm } from "./images.ts";
import type { VmSpec } from "./spec.ts";
import type { Vm } from "./vm.ts";

const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const suiteDir = mkdtempSync(path.join(tmpdir(), "ferry-engine-it-"));
const tickLine = /ferry-tick (\d+) uptime=([\d.]+)/;

let image: GuestImage;
let engine: Engine;
let counter = 0;

beforeAll(async () => {
  image = await loadImage(imagesDir, "tiny");
  engine = await Engine.open({ runDir: path.join(suiteDir, "run"), accelerator: "tcg" });
});

afterEach(async () => {
  await engine.shutdown({ graceMs: 0 });
});

afterAll(async () => {
  await engine?.shutdown({ graceMs: 0 });
  expect(qemuProcessesMentioning(suiteDir)).toEqual([]);
  rmSync(suiteDir, { recursive: true, force: true });
});

function newSpec(overrides: Partial<Pick<VmSpec, "memoryMiB" | "cpuModel" | "profile">> = {}, vmDir?: string): VmSpec {
  const id = `it-${process.pid}-${++counter}`;
  const spec = specForVm({
    id,
    vcpus: 1,
    memoryMiB: overrides.memoryMiB ?? 256,
    profile: overrides.profile ?? "standard",
    cpuModel: overrides.cpuModel ?? "qemu64",
    image,
    vmDir: vmDir ?? path.join(suiteDir, id),
  });
  return { ...spec, nics: [] };
}

/** Every live QEMU whose command line contains `text`. */
function qemuProcessesMentioning(text: string): number[] {
  return processes()
    .filter((info) => info.state !== "Z" && info.command.startsWith("qemu-system") && info.command.includes(text))
    .map((info) => info.pid);
}

// Characters the console tests type, as QEMU key codes (US layout).
const keys: Record<string, string[]> = {
  " ": ["spc"],
  ">": ["shift", "dot"],
  "/": ["slash"],
  ";": ["semicolon"],
  "-": ["minus"],
  ".": ["dot"],
  "\n": ["ret"],
};

/** Types on the guest's VGA console through its USB keyboard (QMP send-key). */
async function typeInto(vm: Vm, text: string): Promise<void> {
  for (const char of text) {
    const codes =
      keys[char] ??
      (/^[a-z0-9]$/.test(char) ? [char] : /^[A-Z]$/.test(char) ? ["shift", char.toLowerCase()] : undefined);
    if (!codes) throw new Error(`typeInto cannot type '${char}'`);
    await vm.execute("send-key", { keys: codes.map((data) => ({ type: "qcode", data })), "hold-time": 20 });
  }
}

async function bootedVm(spec: VmSpec): Promise<Vm> {
  const vm = await engine.start(spec, { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 60_000 });
  return vm;
}

async function saveToFile(vm: Vm, file: string): Promise<GuestStateManifest> {
  return vm.saveState(guestStateFileSink(file));
}

async function expectEngineError(promise: Promise<unknown>, code: string): Promise<EngineError> {
  const error = await promise.then(
    () => {
      throw new Error(`expected EngineError ${code}, but it resolved`);
    },
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EngineError);
  expect((error as EngineError).code).toBe(code);
  return error as EngineError;
}

/** The last tick number in a serial log, if any. */
function lastTick(logFile: string): string | undefined {
  return [...readFileSync(logFile, "utf8").matchAll(/ferry-tick (\d+) /g)].at(-1)?.[1];
}

async function freePort(): Promise<number> {
  const server = net.createServer();
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe("Engine with real QEMU", () => {
  it("boots the tiny guest: booting, then running at the boot marker, then disk and ticks", async () => {
    const spec = newSpec();
    const states: string[] = [];
    const vm = await engine.start(spec, { bootMarker: image.bootMarker });
    vm.on("state", (state) => states.push(state));
    expect(vm.state).toBe("booting");
    expect(vm.accelerator).toBe("tcg");
    expect(existsSync(spec.disks[0]!.overlay)).toBe(true);
    await vm.whenState("running", { timeoutMs: 60_000 });
    await vm.waitForSerial(/FERRY-DISK-OK \/dev\/vda/, { timeoutMs: 30_000 });
    const first = await vm.waitForSerial(tickLine, { timeoutMs: 10_000 });
    expect(Number(first[1])).toBe(0);
    await vm.stop({ graceMs: 0 });
    expect(states).toEqual(["running", "stopped"]);
    expect(qemuProcessesMentioning(spec.id)).toEqual([]);
  });

  it("stop presses the ACPI power button and the guest powers itself off, long before the grace runs out", async () => {
    const spec = newSpec();
    // Stopped the moment it is running: the guest prints its boot marker once acpid listens.
    const vm = await bootedVm(spec);
    const started = performance.now();
    await vm.stop({ graceMs: 10_000 });
    const elapsedMs = performance.now() - started;
    expect(vm.stopOutcome).toBe("powered-off");
    expect(vm.state).toBe("stopped");
    expect(elapsedMs).toBeLessThan(5_000);
    // Written by the guest's power-button handler before it unmounts /data and powers off.
    expect(readFileSync(spec.serial.logFile, "utf8")).toContain("FERRY-POWER-OFF");
    expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([]);
  });

  it("a guest that powers itself off ends stopped (action guest-poweroff), not failed", async () => {
    const spec = newSpec();
    const vm = await bootedVm(spec);
    const changes: Array<[string, string]> = [];
    vm.on("state", (state, change) => changes.push([state, change.action]));
    // The console shell reads keys once the first tick has passed (as in the save test).
    await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
    await typeInto(vm, "poweroff -f\n");
    await vm.whenState("stopped", { timeoutMs: 30_000 });
    expect(changes).toEqual([["stopped", "guest-poweroff"]]);
    expect(vm.failure).toBeNull();
    expect(vm.stopOutcome).toBe("powered-off");
    expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([]);
  });

  it("stop with no grace quits QEMU without waiting for the guest", async () => {
    const spec = newSpec();
    const vm = await bootedVm(spec);
    await vm.stop({ graceMs: 0 });
    expect(vm.stopOutcome).toBe("quit");
    expect(readFileSync(spec.serial.logFile, "utf8")).not.toContain("FERRY-POWER-OFF");
  });

  it("saves the guest state and restores it in a new QEMU: ticks and /data carry on", async () => {
    const spec = newSpec();
    const vm = await bootedVm(spec);
    await vm.waitForSerial(/FERRY-DISK-OK/, { timeoutMs: 30_000 });
    await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
    await typeInto(vm, "echo kept-across-restore > /data/f; sync; echo written > /dev/ttyS0\n");
    await vm.waitForSerial(/^written$/, { timeoutMs: 30_000 });
    const before = await vm.waitForSerial(tickLine, { timeoutMs: 10_000, fromOffset: statSync(spec.serial.logFile).size });
    const firstPid = vm.pid;

    const stateFile = path.join(suiteDir, `${spec.id}.state.zst`);
    const manifest = await saveToFile(vm, stateFile);
    expect(vm.state).toBe("suspended");
    expect(manifest).toMatchObject({ format: "ferry-guest-state/1", vmId: spec.id, memoryMiB: 256, cpuModel: "qemu64", profile: "standard@1", machineType: "pc-q35-7.2", accelerator: "tcg", compression: "zstd" });
    expect(manifest.streamBytes).toBe(statSync(stateFile).size);
    await vm.stop({ graceMs: 0 });

    const restored = await engine.restore(spec, { file: stateFile }, manifest);
    expect(restored.state).toBe("running");
    expect(restored.pid).not.toBe(firstPid);
    const after = await restored.waitForSerial(tickLine, { timeoutMs: 10_000 });
    expect(Number(after[1])).toBe(Number(before[1]) + 1);
    expect(Number(after[2])).toBeGreaterThan(Number(before[2]));
    await typeInto(restored, "cat /data/f > /dev/ttyS0\n");
    await restored.waitForSerial(/^kept-across-restore$/, { timeoutMs: 30_000 });
  });

  it("a run folder of 150 characters: the vm boots, saves and restores, its sockets in a short folder removed with it", async () => {
    const longRunDir = path.join(suiteDir, "r".repeat(150 - suiteDir.length - 1));
    expect(longRunDir).toHaveLength(150);
    const longEngine = await Engine.open({ runDir: longRunDir, accelerator: "tcg" });
    try {
      const spec = newSpec();
      const vm = await longEngine.start(spec, { bootMarker: image.bootMarker });
      await vm.whenState("running", { timeoutMs: 60_000 });
      const [processDir] = readdirSync(longRunDir);
      // The socket folder was needed only until QMP connected.
      expect(readdirSync(path.join(longRunDir, String(processDir)))).not.toContain("sockets");
      const before = await vm.waitForSerial(tickLine, { timeoutMs: 30_000 });

      const stateFile = path.join(suiteDir, `${spec.id}.state.zst`);
      const manifest = await saveToFile(vm, stateFile);
      await vm.stop({ graceMs: 0 });

      const restored = await longEngine.restore(spec, { file: stateFile }, manifest);
      const after = await restored.waitForSerial(tickLine, { timeoutMs: 10_000 });
      expect(Number(after[1])).toBeGreaterThan(Number(before[1]));
      await restored.stop({ graceMs: 0 });
      expect(readdirSync(longRunDir)).toEqual([]);
    } finally {
      await longEngine.shutdown({ graceMs: 0 });
    }
  });

  it("a save whose socket QEMU cannot reach fails with save_failed at once, and the guest keeps running", async () => {
    const spec = newSpec();
    const vm = await bootedVm(spec);
    const processDir = path.join(engine.runDir, String(readdirSync(engine.runDir).find((name) => name.startsWith(`${spec.id}-`))));
    // The save's socket is unlinked as soon as it is bound: QEMU's connect then finds nothing.
    let socketDir = "";
    let socketWatcher: FSWatcher | undefined;
    const watcher = watch(processDir, (_, name) => {
      if (name !== "sockets" || socketWatcher) return;
      socketDir = readlinkSync(path.join(processDir, name));
      const unlink = () => rmSync(path.join(socketDir, "state-out.sock"), { force: true });
      socketWatcher = watch(socketDir, unlink);
      // It may be bound already: the save asks QEMU only after three QMP round trips.
      unlink();
    });
    try {
      const error = await expectEngineError(saveToFile(vm, path.join(suiteDir, `${spec.id}.state.zst`)), "save_failed");
      expect(error.message).toContain(`QEMU did not connect to ${path.join(socketDir, "state-out.sock")}`);
    } finally {
      watcher.close();
      socketWatcher?.close();
    }
    expect(existsSync(socketDir)).toBe(false);
    expect(vm.state).toBe("running");
    await vm.waitForSerial(tickLine, { timeoutMs: 10_000, fromOffset: statSync(spec.serial.logFile).size });
  });

  it("a slow sink gets the whole guest state in lent chunks, untouched while lent; a failing sink fails the save and the guest keeps running", async () => {
    const spec = newSpec();
    const vm = await bootedVm(spec);
    await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
    const received: Buffer[] = [];
    const blocks = new Set<ArrayBufferLike>();
    let changedWhileLent = 0;
    let writing = 0;
    let overlapping = 0;
    const sha256 = (bytes: Buffer) => createHash("sha256").update(new Uint8Array(bytes)).digest("hex");
    // Each write 20 ms late: zstd finishes long before this sink, and the next chunk is ready
    // before the previous write is done.
    const slowSink: GuestStateSink = {
      async write(chunk) {
        if (writing++ > 0) overlapping++;
        const before = sha256(chunk);
        received.push(Buffer.from(chunk));
        blocks.add(chunk.buffer);
        await new Promise((resolve) => setTimeout(resolve, 20));
        if (sha256(chunk) !== before) changedWhileLent++;
        writing--;
      },
      end: async () => undefined,
      abort: () => undefined,
    };
    const manifest = await vm.saveState(slowSink);
    const state = Buffer.concat(received);
    expect(state.length).toBe(manifest.streamBytes);
    expect(sha256(state)).toBe(manifest.sha256);
    expect(changedWhileLent).toBe(0);
    // One write at a time: a file sink writes each at the file's current offset, in call order.
    expect(overlapping).toBe(0);
    // The engine reads into the same two blocks throughout, rather than a new one per chunk.
    expect(received.length).toBeGreaterThan(4);
    expect(blocks.size).toBe(2);
    await vm.stop({ graceMs: 0 });

    const restored = await engine.restore(spec, Readable.from([state]), manifest);
    await restored.waitForSerial(tickLine, { timeoutMs: 10_000 });
    let written = 0;
    let aborted: Error | undefined;
    const failingSink: GuestStateSink = {
      async write(chunk) {
        written += chunk.length;
        if (written > 1024 * 1024) throw new Error("no space left on the sink");
      },
      end: async () => undefined,
      abort: (error) => {
        aborted = error;
      },
    };
    const error = await expectEngineError(restored.saveState(failingSink), "save_failed");
    expect(error.message).toContain("no space left on the sink");
    expect(aborted?.message).toContain("no space left on the sink");
    expect(restored.state).toBe("running");
    await restored.waitForSerial(tickLine, { timeoutMs: 10_000, fromOffset: statSync(spec.serial.logFile).size });
    const runDir = path.join(suiteDir, "run");
    expect(readdirSync(runDir, { recursive: true }).filter((entry) => String(entry).endsWith(".zst"))).toEqual([]);
  });

  it("a save that fails while its sink holds a chunk it never gives back stops reading the state file and keeps the guest running", async () => {
    const spec = newSpec();
    const vm = await bootedVm(spec);
    await vm.waitForSerial(/ferry-tick 1 /, { timeoutMs: 30_000 });
    // The sink takes the first chunk and never finishes with it; meanwhile the save's zstd
    // (started by the engine's compressor helper, a child of this process) dies. Should zstd be
    // gone already, the write completes and the save with it, and the test fails below.
    let killed = 0;
    const stalledSink: GuestStateSink = {
      write() {
        const ourChildren = new Set(childrenOf(process.pid));
        for (const info of processes()) {
          if (info.command.startsWith("zstd -1 -T2") && ourChildren.has(info.parent)) {
            process.kill(info.pid, "SIGKILL");
            killed++;
          }
        }
        return killed > 0 ? new Promise<void>(() => undefined) : Promise.resolve();
      },
      end: async () => undefined,
      abort: () => undefined,
    };
    await expectEngineError(vm.saveState(stalledSink), "save_failed");
    expect(killed).toBe(1);
    expect(vm.state).toBe("running");
    // The state file (nameless, open only here) is closed: nothing waits on the stalled write.
    const stateFileOpen = () =>
      readdirSync("/proc/self/fd").some((fd) => {
        try {
          return readlinkSync(`/proc/self/fd/${fd}`).includes("state-out.zst");
        } catch {
          return false;
        }
      });
    for (let attempt = 0; attempt < 100 && stateFileOpen(); attempt++) await new Promise((resolve) => setTimeout(resolve, 20));
    expect(stateFileOpen()).toBe(false);
    await vm.stop({ graceMs: 0 });
  });

  it("live-migrates between two QEMU processes; the counter continues on the destination", async () => {
    // The layout a worker's cold boot gives (exact on QEMU >= 9, also under TCG).
    const source: VmSpec = { ...newSpec(), memoryLayout: engine.coldBootMemoryLayout };
    const vm = await bootedVm(source);
    const lastOnSource = await vm.waitForSerial(/ferry-tick [1-9]\d* /, { timeoutMs: 30_000 });
    // Same disk (shared storage), own serial log and runtime files; the running vm's spec has
    // the memory layout its cold boot chose, which the stream's RAM size must match.
    const destination: VmSpec = { ...vm.spec, serial: { logFile: path.join(suiteDir, `${source.id}-dst-serial.log`) }, display: null };
    const port = await freePort();
    const incoming = await engine.prepareIncoming(destination, { listen: { kind: "tcp", host: "127.0.0.1", port } });
    expect(incoming.state).toBe("resuming");

    const figures = await vm.liveMigrate(`tcp:127.0.0.1:${port}`, { downtimeLimitMs: 50, timeoutMs: 60_000 });
    expect(vm.state).toBe("stopped");
    expect(figures.totalTimeMs).toBeGreaterThan(0);
    expect(figures.bytesSent).toBeGreaterThan(0);
    expect(figures.downtimeMs).toBeLessThan(1000);
    await incoming.whenState("running", { timeoutMs: 30_000 });
    const onDestination = await incoming.waitForSerial(tickLine, { timeoutMs: 10_000 });
    expect(Number(onDestination[1])).toBeGreaterThan(Number(/ferry-tick (\d+)/.exec(lastOnSource[0])![1]));
    expect(readFileSync(destination.serial.logFile, "utf8")).not.toContain("ferry-tick 0 ");
    expect(qemuProcessesMentioning(`guest=${source.id},`)).toEqual([incoming.pid]);
  });

  it("clones share a golden point's memory file: each continues the golden point, keeps its writes to itself, and suspends and migrates like any vm", async () => {
    const golden = newSpec();
    const vm = await bootedVm(golden);
    await vm.waitForSerial(/FERRY-DISK-OK/, { timeoutMs: 30_000 });
    const goldenTick = Number((await vm.waitForSerial(/ferry-tick ([2-9]|\d\d+) /, { timeoutMs: 30_000 }))[1]);
    const stateFile = path.join(suiteDir, `${golden.id}.state.zst`);
    const manifest = await saveToFile(vm, stateFile);
    await vm.stop({ graceMs: 0 });
    // Booted without a layout: what every vm had before layouts were recorded.
    const memoryLayout = engine.accelerator === "tcg" ? "trimmed-8k" : "exact";
    expect(manifest).toMatchObject({ memoryLayout, memoryBytes: guestMemoryBytes(256, memoryLayout) });
    const otherLayout = memoryLayout === "exact" ? "trimmed-8k" : "exact";
    const mismatch = await expectEngineError(engine.restore({ ...golden, memoryLayout: otherLayout }, { file: stateFile }, manifest), "state_mismatch");
    expect(mismatch.message).toContain(`memoryLayout ${memoryLayout} (${manifest.memoryBytes} bytes of RAM) but this vm has ${otherLayout}`);

    // Loaded as the golden vm itself, from a copy of its disk, and never run.
    const shareDir = path.join(suiteDir, `${golden.id}-shared`);
    mkdirSync(shareDir);
    const sharer: VmSpec = {
      ...golden,
      disks: golden.disks.map((disk) => ({ ...disk, overlay: path.join(shareDir, `${disk.id}.qcow2`) })),
      display: null,
      serial: { logFile: path.join(shareDir, "serial.log") },
      parallel: { logFile: path.join(shareDir, "parallel.log") },
    };
    for (const [index, disk] of golden.disks.entries()) copyFileSync(disk.overlay, sharer.disks[index]!.overlay);
    const memoryFile = path.join(shareDir, "memory.ram");
    const devicesFile = path.join(shareDir, "devices.zst");
    const devices = await engine.shareMemory(sharer, { file: stateFile }, manifest, { memoryFile, devices: guestStateFileSink(devicesFile) });
    expect(devices).toMatchObject({ vmId: golden.id, sharedMemory: true, memoryMiB: 256 });
    expect(devices.streamBytes).toBe(statSync(devicesFile).size);
    expect(devices.streamBytes).toBeLessThan(manifest.streamBytes / 10);
    expect(statSync(memoryFile).size).toBe(manifest.memoryBytes);
    expect(readFileSync(sharer.serial.logFile, "utf8")).not.toMatch(tickLine);
    const memoryHash = createHash("sha256").update(new Uint8Array(readFileSync(memoryFile))).digest("hex");

    const cloneSpec = () => {
      const spec = newSpec();
      mkdirSync(path.dirname(spec.disks[0]!.overlay), { recursive: true });
      copyFileSync(golden.disks[0]!.overlay, spec.disks[0]!.overlay);
      return spec;
    };
    const refused = cloneSpec();
    const withoutFile = await expectEngineError(engine.restore(refused, { file: devicesFile }, devices, { cloneOf: golden.id }), "state_mismatch");
    expect(withoutFile.message).toContain("holds its devices alone");
    await expectEngineError(engine.restore(refused, { file: stateFile }, manifest, { cloneOf: golden.id, sharedMemory: memoryFile }), "state_mismatch");
    expect(qemuProcessesMentioning(`guest=${refused.id},`)).toEqual([]);

    const clones = await Promise.all(
      [cloneSpec(), cloneSpec()].map(async (spec) => {
        const clone = await engine.restore(spec, { file: devicesFile }, devices, { cloneOf: golden.id, sharedMemory: memoryFile });
        const tick = Number((await clone.waitForSerial(tickLine, { timeoutMs: 10_000 }))[1]);
        expect(tick).toBeGreaterThan(goldenTick);
        expect(tick).toBeLessThanOrEqual(goldenTick + 10);
        return { spec, clone };
      }),
    );
    const [first, second] = clones as [(typeof clones)[0], (typeof clones)[0]];
    await typeInto(first.clone, "echo only-in-first > /data/own; sync; echo written > /dev/ttyS0\n");
    await first.clone.waitForSerial(/^written$/, { timeoutMs: 30_000 });
    for (const { spec, clone } of clones) {
      expect(readFileSync(spec.serial.logFile, "utf8")).not.toContain(image.bootMarker);
      // The golden RAM the guest reads is one copy in the page cache for both clones; what it
      // wrote is its own (copy-on-write), and never reaches the file.
      const mapping = memoryFileMapping(clone.pid, memoryFile);
      expect(mapping.sharedMiB).toBeGreaterThan(4);
      expect(mapping.pssMiB).toBeLessThan(mapping.rssMiB * 0.75);
      expect(mapping.privateMiB).toBeGreaterThan(0);
      expect(mapping.privateMiB).toBeLessThan(mapping.sharedMiB);
    }
    expect(createHash("sha256").update(new Uint8Array(readFileSync(memoryFile))).digest("hex")).toBe(memoryHash);
    await typeInto(second.clone, "cat /data/own > /dev/ttyS0; echo looked > /dev/ttyS0\n");
    await second.clone.waitForSerial(/^looked$/, { timeoutMs: 30_000 });
    expect(readFileSync(second.spec.serial.logFile, "utf8")).not.toContain("only-in-first\r\n");

    // A clone's RAM is its own from the start: its suspend saves all of it, and it resumes
    // without the memory file, as any vm does.
    const cloneState = path.join(suiteDir, `${first.spec.id}.state.zst`);
    const cloneManifest = await saveToFile(first.clone, cloneState);
    expect(cloneManifest.sharedMemory).toBeUndefined();
    expect(cloneManifest.streamBytes).toBeGreaterThan(devices.streamBytes * 10);
    const stoppedAt = Number(lastTick(first.spec.serial.logFile) ?? -1);
    await first.clone.stop({ graceMs: 0 });
    const resumed = await engine.restore(first.spec, { file: cloneState }, cloneManifest);
    expect(Number((await resumed.waitForSerial(tickLine, { timeoutMs: 10_000 }))[1])).toBe(stoppedAt + 1);
    await typeInto(resumed, "cat /data/own > /dev/ttyS0\n");
    await resumed.waitForSerial(/^only-in-first$/, { timeoutMs: 30_000 });

    // And a live migration carries it whole to a QEMU with ordinary RAM.
    const destination: VmSpec = { ...second.clone.spec, serial: { logFile: path.join(suiteDir, `${second.spec.id}-dst-serial.log`) }, display: null };
    const port = await freePort();
    const incoming = await engine.prepareIncoming(destination, { listen: { kind: "tcp", host: "127.0.0.1", port } });
    await second.clone.liveMigrate(`tcp:127.0.0.1:${port}`, { downtimeLimitMs: 50, timeoutMs: 60_000 });
    await incoming.whenState("running", { timeoutMs: 30_000 });
    await incoming.waitForSerial(tickLine, { timeoutMs: 10_000 });
    expect(readFileSync(`/proc/${incoming.pid}/maps`, "utf8")).not.toContain(memoryFile);
  });

  it("a live migration to nowhere fails with migration_failed and the source keeps running", async () => {
    const vm = await bootedVm(newSpec());
    const port = await freePort();
    const error = await expectEngineError(
      vm.liveMigrate(`tcp:127.0.0.1:${port}`, { downtimeLimitMs: 50, timeoutMs: 10_000 }),
      "migration_failed",
    );
    expect(error.message).toContain("keeps running");
    expect(vm.state).toBe("running");
    const status = await vm.execute<{ status: string }>("query-status");
    expect(status.status).toBe("running");
  });

  it("a QEMU killed with SIGKILL leaves the vm failed with its exit status", async () => {
    const vm = await bootedVm(newSpec());
    const failed = new Promise<void>((resolve) => vm.on("state", (s) => s === "failed" && resolve()));
    process.kill(vm.pid, "SIGKILL");
    await failed;
    expect(vm.state).toBe("failed");
    expect(vm.failure).toMatchObject({ signal: "SIGKILL", exitCode: null });
    expect(vm.failure?.reason).toContain("SIGKILL");
    expect(engine.vms).not.toContain(vm);
  });

  describe("refuses a bad guest state", () => {
    let spec: VmSpec;
    let stateFile: string;
    let manifest: GuestStateManifest;

    beforeAll(async () => {
      spec = newSpec();
      stateFile = path.join(suiteDir, `${spec.id}.state.zst`);
      const vm = await bootedVm(spec);
      manifest = await saveToFile(vm, stateFile);
      await vm.stop({ graceMs: 0 });
    });

    it("the intact state restores from a stream as well as from a file", async () => {
      const vm = await engine.restore(spec, createReadStream(stateFile), manifest);
      expect(vm.state).toBe("running");
      await vm.waitForSerial(tickLine, { timeoutMs: 10_000 });
    });

    it("a truncated or altered file: state_corrupt before QEMU reads it, and no QEMU left behind", async () => {
      const whole = readFileSync(stateFile);
      const truncatedFile = path.join(suiteDir, `${spec.id}.truncated.zst`);
      writeFileSync(truncatedFile, whole.subarray(0, Math.floor(whole.length / 2)));
      const truncated = await expectEngineError(engine.restore(spec, { file: truncatedFile }, manifest), "state_corrupt");
      expect(truncated.message).toContain("truncated");
      const flippedFile = path.join(suiteDir, `${spec.id}.flipped.zst`);
      const flipped = Buffer.from(whole);
      flipped[flipped.length - 1] = flipped[flipped.length - 1]! ^ 0xff;
      writeFileSync(flippedFile, flipped);
      const altered = await expectEngineError(engine.restore(spec, { file: flippedFile }, manifest), "state_corrupt");
      expect(altered.message).toContain("sha256");
      expect(engine.vms).toEqual([]);
      expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([]);
    });

    it("a missing file: restore_failed naming it, before any QEMU starts", async () => {
      const missing = path.join(suiteDir, "no-such-state.zst");
      const error = await expectEngineError(engine.restore(spec, { file: missing }, manifest), "restore_failed");
      expect(error.message).toContain(missing);
      expect(engine.vms).toEqual([]);
    });

    it("truncated: state_corrupt, and no QEMU left behind", async () => {
      const whole = readFileSync(stateFile);
      const truncated = whole.subarray(0, Math.floor(whole.length / 2));
      const error = await expectEngineError(engine.restore(spec, Readable.from([truncated]), manifest), "state_corrupt");
      expect(error.message).toContain("truncated");
      expect(engine.vms).toEqual([]);
      expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([]);
    });

    it("one flipped byte: state_corrupt, and no QEMU left behind", async () => {
      const flipped = Buffer.from(readFileSync(stateFile));
      const at = Math.floor(flipped.length / 3);
      flipped[at] = flipped[at]! ^ 0xff;
      const error = await expectEngineError(engine.restore(spec, Readable.from([flipped]), manifest), "state_corrupt");
      expect(error.message).toContain("sha256");
      expect(engine.vms).toEqual([]);
      expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([]);
    });

    it.each([
      ["memory size", { memoryMiB: 512 }, "memoryMiB 256 but this vm has 512"],
      ["CPU model", { cpuModel: "Skylake-Client" }, "cpuModel qemu64 but this vm has Skylake-Client"],
      ["profile", { profile: "compat" as const }, "profile standard@1 but this vm has compat@1"],
    ])("a different %s: state_mismatch before any QEMU or disk is created", async (_what, overrides, difference) => {
      const vmDir = path.join(suiteDir, `mismatch-${++counter}`);
      const other = { ...newSpec(overrides, vmDir), id: spec.id };
      const error = await expectEngineError(engine.restore(other, Readable.from([readFileSync(stateFile)]), manifest), "state_mismatch");
      expect(error.message).toContain(`guest state was saved with ${difference}`);
      expect(existsSync(other.disks[0]!.overlay)).toBe(false);
      expect(existsSync(vmDir)).toBe(false);
      expect(engine.vms).toEqual([]);
    });

    it("names every difference at once", async () => {
      const other = { ...newSpec({ memoryMiB: 512, cpuModel: "Haswell-noTSX" }), id: spec.id };
      const error = await expectEngineError(engine.restore(other, Readable.from([readFileSync(stateFile)]), manifest), "state_mismatch");
      expect(error.message).toContain("memoryMiB 256 but this vm has 512");
      expect(error.message).toContain("cpuModel qemu64 but this vm has Haswell-noTSX");
    });
  });

  it("a missing QEMU binary is qemu_not_found naming the Debian package", async () => {
    const error = await expectEngineError(
      Engine.open({ runDir: path.join(suiteDir, "run-missing"), accelerator: "tcg", qemuBinary: "/nonexistent/qemu-system-x86_64" }),
      "qemu_not_found",
    );
    expect(error.message).toContain("/nonexistent/qemu-system-x86_64");
    expect(error.message).toContain("qemu-system-x86");
  });

  it("the accelerator probe says tcg on this host and leaves no QEMU behind", async () => {
    const cacheFile = path.join(suiteDir, "accel.json");
    const verdict = await probeAccelerator({ image, cacheFile });
    expect(verdict.accelerator).toBe("tcg");
    expect(verdict.cached).toBe(false);
    expect(verdict.reason).toMatch(/boot marker|MSR|cannot be opened/);
    expect(qemuProcessesMentioning("ferry-accel-probe-")).toEqual([]);
    const again = await probeAccelerator({ image, cacheFile });
    expect(again).toEqual({ ...verdict, cached: true });
  }, 60_000);

  it("the kernel kills QEMU when its worker is SIGKILLed, and Engine.open clears the leftovers", async () => {
    const runDir = path.join(suiteDir, "run-orphan");
    const spec = newSpec();
    const script = path.join(suiteDir, "worker.mts");
    writeFileSync(
      script,
      `import { Engine } from ${JSON.stringify(path.resolve(import.meta.dirname, "engine.ts"))};
const engine = await Engine.open({ runDir: ${JSON.stringify(runDir)}, accelerator: "tcg" });
const vm = await engine.start(${JSON.stringify(spec)});
console.log(vm.pid);
setInterval(() => {}, 1000);
`,
    );
    const worker = spawn(process.execPath, ["--import", "tsx", script], { stdio: ["ignore", "pipe", "inherit"] });
    const [line] = (await once(worker.stdout, "data")) as [Buffer];
    const qemuPid = Number(line.toString().trim());
    expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([qemuPid]);
    const leftovers = readdirSync(runDir);
    expect(leftovers).toHaveLength(1);

    worker.kill("SIGKILL");
    await once(worker, "exit");
    const deadline = Date.now() + 5000;
    while (qemuProcessesMentioning(`guest=${spec.id},`).length > 0 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(qemuProcessesMentioning(`guest=${spec.id},`)).toEqual([]);
    expect(readdirSync(runDir)).toEqual(leftovers);

    const reopened = await Engine.open({ runDir, accelerator: "tcg" });
    expect(readdirSync(runDir)).toEqual([]);
    await reopened.shutdown();
  });

  it("Engine.open kills a QEMU that outlived its worker, found by its pidfile", async () => {
    const runDir = path.join(suiteDir, "run-stale");
    const processDir = path.join(runDir, "stale-vm");
    mkdirSync(processDir, { recursive: true });
    const pidFile = path.join(processDir, "qemu.pid");
    // Started without pdeathsig, as on a host where that did not work.
    const qemu = spawn(
      "qemu-system-x86_64",
      ["-nodefaults", "-accel", "tcg", "-display", "none", "-m", "64M", "-S", "-pidfile", pidFile],
      { stdio: "ignore", detached: true },
    );
    const exited = once(qemu, "exit");
    const deadline = Date.now() + 10_000;
    while (!existsSync(pidFile) || readFileSync(pidFile, "utf8").trim() === "") {
      if (Date.now() > deadline) throw new Error("QEMU wrote no pidfile");
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    expect(Number(readFileSync(pidFile, "utf8"))).toBe(qemu.pid);

    const reopened = await Engine.open({ runDir, accelerator: "tcg" });
    const [, signal] = (await exited) as [number | null, string | null];
    expect(signal).toBe("SIGKILL");
    expect(existsSync(processDir)).toBe(false);
    await reopened.shutdown();
  });
});
