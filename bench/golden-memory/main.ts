// bench/golden-memory: lab clones sharing a golden point's RAM, with raw QEMU only (argv from
// toQemuArgv, a bare QMP socket, no engine code), against clones that each load the whole
// state. What it shows, in order:
//   1. a state saved with `-m` loads into RAM backed by a memory file (memory-backend-file
//      id=pc.ram, share=on): the RAM block keeps its name, so the stream is compatible;
//   2. saved again from there with x-ignore-shared, the state is the devices alone (RAM stays
//      in the file);
//   3. N clones map the file copy-on-write (share=off) and load the devices: load time and
//      memory (smaps_rollup) against N clones loading the whole state; the file is unchanged;
//   4. a clone's RAM is its own: a full save loads into an ordinary QEMU, and a live
//      migration to one works, the counter going on each time.
// BENCH_CLONES: clones per kind (default 4). Prints JSON.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { type GuestImage, type VmSpec, loadImage, specForVm } from "@ferry/engine";
import { freePort, median, round } from "../lib/ferry-cluster.ts";
import { type RawQemu, killRawQemus, startRawQemu } from "../lib/raw-qemu.ts";

const clonesPerKind = Number(process.env.BENCH_CLONES ?? 4);
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const root = mkdtempSync(path.join(os.tmpdir(), "ferry-bench-golden-memory-"));
const image: GuestImage = await loadImage(imagesDir, "tiny");
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
let counter = 0;

/** A vm with its own folder; its disk a new overlay, or a copy of `diskFrom`. */
function newSpec(diskFrom?: string): VmSpec {
  const id = `golden-${++counter}`;
  const spec = { ...specForVm({ id, vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(root, id) }), nics: [], display: null };
  mkdirSync(path.join(root, id), { recursive: true });
  const disk = spec.disks[0]!;
  if (diskFrom) copyFileSync(diskFrom, disk.overlay);
  else execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", disk.base, "-F", "qcow2", disk.overlay]);
  return spec;
}

function lastTick(spec: VmSpec): number {
  const ticks = [...readFileSync(spec.serial.logFile, "utf8").matchAll(/ferry-tick (\d+) /g)];
  return ticks.length === 0 ? -1 : Number(ticks.at(-1)![1]);
}

async function untilTick(spec: VmSpec, above: number, timeoutMs = 60_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tick = lastTick(spec);
    if (tick > above) return tick;
    if (Date.now() > deadline) throw new Error(`vm ${spec.id} printed no tick above ${above} within ${timeoutMs} ms`);
    await sleep(100);
  }
}

const completed = (qemu: RawQemu) => qemu.event("MIGRATION", (data) => ["completed", "failed", "cancelled"].includes(data.status ?? ""));

async function expectCompleted(qemu: RawQemu, what: string): Promise<void> {
  const event = await completed(qemu);
  if (event.data?.status !== "completed") throw new Error(`${what}: migration ${event.data?.status}`);
}

async function ignoreShared(qemu: RawQemu, on: boolean): Promise<void> {
  await qemu.cmd("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: on }] });
}

function memoryOf(qemu: RawQemu): { rss: number; pss: number; private: number } {
  const rollup = readFileSync(`/proc/${qemu.child.pid}/smaps_rollup`, "utf8");
  const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(rollup)![1]) / 1024;
  return { rss: field("Rss"), pss: field("Pss"), private: field("Private_Clean") + field("Private_Dirty") };
}

const sha256 = (file: string) => createHash("sha256").update(new Uint8Array(readFileSync(file))).digest("hex");

async function main(): Promise<void> {
  const golden = newSpec();
  const booted = await startRawQemu(root, golden);
  await untilTick(golden, 2);
  await booted.cmd("stop");
  const fullState = path.join(root, "full.state");
  let started = performance.now();
  const saved = completed(booted);
  await booted.cmd("migrate", { uri: `exec:cat > ${fullState}` });
  await saved;
  const fullSaveMs = performance.now() - started;
  await booted.close();

  // 1 + 2: the whole state into a shared memory file, then the devices alone.
  const memoryFile = path.join(root, "memory.ram");
  const devicesState = path.join(root, "devices.state");
  const splitter = await startRawQemu(root, newSpec(golden.disks[0]!.overlay), `exec:cat ${fullState}`, { path: memoryFile, shared: true });
  await expectCompleted(splitter, "loading the -m state into a shared memory file");
  await ignoreShared(splitter, true);
  started = performance.now();
  const split = completed(splitter);
  await splitter.cmd("migrate", { uri: `exec:cat > ${devicesState}` });
  await split;
  const devicesSaveMs = performance.now() - started;
  await splitter.close();
  const memoryHash = sha256(memoryFile);

  // 3: clones of each kind, started side by side.
  const sharedClones = await Promise.all(
    Array.from({ length: clonesPerKind }, async () => {
      const spec = newSpec(golden.disks[0]!.overlay);
      const qemu = await startRawQemu(root, spec, "defer", { path: memoryFile, shared: false });
      const loadStarted = performance.now();
      await ignoreShared(qemu, true);
      const loaded = completed(qemu);
      await qemu.cmd("migrate-incoming", { uri: `exec:cat ${devicesState}` });
      await loaded;
      await ignoreShared(qemu, false);
      await qemu.cmd("cont");
      return { spec, qemu, loadMs: performance.now() - loadStarted };
    }),
  );
  const privateClones = await Promise.all(
    Array.from({ length: clonesPerKind }, async () => {
      const spec = newSpec(golden.disks[0]!.overlay);
      const qemu = await startRawQemu(root, spec, "defer");
      const loadStarted = performance.now();
      const loaded = completed(qemu);
      await qemu.cmd("migrate-incoming", { uri: `exec:cat ${fullState}` });
      await loaded;
      await qemu.cmd("cont");
      return { spec, qemu, loadMs: performance.now() - loadStarted };
    }),
  );
  const goldenTick = lastTick(golden);
  for (const clone of [...sharedClones, ...privateClones]) {
    const tick = await untilTick(clone.spec, goldenTick);
    if (tick > goldenTick + 10 || readFileSync(clone.spec.serial.logFile, "utf8").includes(image.bootMarker)) {
      throw new Error(`clone ${clone.spec.id} did not continue the golden point (tick ${tick}, golden ${goldenTick})`);
    }
  }
  await sleep(5000);
  const summary = (clones: typeof sharedClones) => {
    const memory = clones.map((clone) => memoryOf(clone.qemu));
    return {
      medianLoadMs: round(median(clones.map((clone) => clone.loadMs))),
      medianRssMiB: round(median(memory.map((m) => m.rss))),
      medianPssMiB: round(median(memory.map((m) => m.pss))),
      medianPrivateMiB: round(median(memory.map((m) => m.private))),
    };
  };
  const memory = { sharedMemoryFile: summary(sharedClones), wholeState: summary(privateClones) };
  const memoryFileUnchanged = sha256(memoryFile) === memoryHash;
  await Promise.all(privateClones.map((clone) => clone.qemu.close()));

  // 4: a shared clone saved whole and loaded into an ordinary QEMU; another live-migrated to one.
  const [first, second] = sharedClones as [(typeof sharedClones)[0], (typeof sharedClones)[0]];
  await first.qemu.cmd("stop");
  const cloneState = path.join(root, "clone.state");
  const cloneSaved = completed(first.qemu);
  await first.qemu.cmd("migrate", { uri: `exec:cat > ${cloneState}` });
  await cloneSaved;
  const stoppedAt = lastTick(first.spec);
  await first.qemu.close();
  const resumed = await startRawQemu(root, first.spec, `exec:cat ${cloneState}`);
  await expectCompleted(resumed, "loading a clone's whole state into an ordinary QEMU");
  await resumed.cmd("cont");
  const resumedTick = await untilTick(first.spec, stoppedAt);
  await resumed.close();

  const port = await freePort();
  const destination = { ...second.spec, serial: { logFile: path.join(root, `${second.spec.id}-destination.log`) } };
  const incoming = await startRawQemu(root, destination, `tcp:127.0.0.1:${port}`);
  const arrived = completed(incoming);
  const migrated = completed(second.qemu);
  await second.qemu.cmd("migrate", { uri: `tcp:127.0.0.1:${port}` });
  await migrated;
  if ((await arrived).data?.status !== "completed") throw new Error("the clone's live migration did not arrive");
  const movedAt = lastTick(second.spec);
  await incoming.cmd("cont").catch(() => undefined);
  const migratedTick = await untilTick(destination, -1);
  await Promise.all([incoming.close(), ...sharedClones.slice(1).map((clone) => clone.qemu.close())]);

  console.log(
    JSON.stringify(
      {
        benchmark: "golden-memory",
        guest: "tiny, 1 vCPU, 256 MiB, TCG, raw QEMU",
        clonesPerKind,
        goldenPoint: {
          wholeStateBytes: statSync(fullState).size,
          wholeStateSaveMs: round(fullSaveMs),
          devicesStateBytes: statSync(devicesState).size,
          devicesSaveMs: round(devicesSaveMs),
          memoryFileBytes: statSync(memoryFile).size,
          memoryFileAllocatedBytes: statSync(memoryFile).blocks * 512,
        },
        clones: memory,
        memoryFileUnchanged,
        cloneSuspendResume: { tickAtSave: stoppedAt, firstTickAfter: resumedTick },
        cloneLiveMigration: { tickAtMove: movedAt, firstTickOnDestination: migratedTick },
      },
      null,
      2,
    ),
  );
}

try {
  await main();
} finally {
  killRawQemus();
  rmSync(root, { recursive: true, force: true });
}
