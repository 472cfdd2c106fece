// bench/resume: suspend and resume through the API, end to end, with guest states in object
// storage, beside raw QEMU saving the same guest to a local file and restoring it, in the
// same run. For 256 MiB and 1 GiB tiny TCG guests, with the folder driver and the S3 driver
// (s3rver on loopback). Each figure is the median of BENCH_RUNS (≥ 5) runs:
//
// - suspend: POST /vms/{id}/suspend → GET says `suspended` (the state is committed first);
// - resume: POST /vms/{id}/resume → GET says `running` (on whichever worker placement chose);
// - stored bytes: the newest guest state's size (GET /vms/{id}/guest-states);
// - one uncounted suspend/resume cycle comes first in each series (warm-up);
// - raw: `stop` + `migrate exec:zstd -1 > file` until zstd exits; QEMU started with
//   `-incoming exec:zstd -dc file` until `cont`.
//
// The host is shared and its load moves: run i of raw QEMU and run i through the API go back
// to back, so each ratio is also given as the median of the per-run ratios (pairedRatio)
// beside the ratio of the medians.
//
// When the API said `suspended` or `running`: the vm's stateChangedAt, the moment the
// controller wrote that state (every GET from then on answers it), less the moment of the
// call, both on this host's clock. The bench polls GET /vms/{id} every BENCH_POLL_MS (25) to
// find it, so the poll's own delay does not add to the figure, and the GETs do not eat the
// CPU the restore needs: polled back to back (a GET about every 20 ms, when /api/v1 went
// through Next's route handler) the portal took 25-35 % of one of this host's 2 cores. The
// first GET that saw the state is given too (suspendSeenMs, resumeSeenMs).
//
// Targets for 256 MiB with S3: suspend ≤ 1 s and resume ≤ 1 s, each ≤ 3× raw. Prints JSON.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import os from "node:os";
import path from "node:path";

import { type VmSpec, coldBootMemoryLayout, loadImage, specForVm } from "@ferry/engine";
import { startS3TestServer } from "@ferry/storage/testing";

import { type FerryCluster, median, round, startFerryCluster } from "../lib/ferry-cluster.ts";
import { childrenOf, gone } from "../lib/processes.ts";
import { startRawQemu } from "../lib/raw-qemu.ts";

const qemuVersionLine = execFileSync("qemu-system-x86_64", ["--version"], { encoding: "utf8" }).split("\n")[0] ?? "";
const qemuVersion: string =
  /version (\d+\.\d+\.\d+)/.exec(qemuVersionLine)?.[1] ??
  (() => {
    throw new Error(`bench/resume: qemu-system-x86_64 --version printed no version ('${qemuVersionLine}'); run ./infra/ferry.sh setup`);
  })();

const runs = Math.max(5, Number(process.env.BENCH_RUNS ?? 5));
// BENCH_SIZES=256 BENCH_DRIVERS=s3 give a quicker run of the figures the targets are about.
const sizes = (process.env.BENCH_SIZES ?? "256,1024").split(",").map(Number);
const drivers = (process.env.BENCH_DRIVERS ?? "folder,s3").split(",");
const pollMs = Number(process.env.BENCH_POLL_MS ?? 25);
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const root = mkdtempSync(path.join(os.tmpdir(), "ferry-bench-resume-"));
const image = await loadImage(imagesDir, "tiny");
const now = () => performance.now();

interface ApiVm {
  id: string;
  state: string;
  stateReason: string | null;
  workerId: string | null;
  stateChangedAt: string;
}

// ── Through the API ─────────────────────────────────────────────────────────────────────

async function waitFor(cluster: FerryCluster, id: string, state: string, timeoutMs = 120_000): Promise<ApiVm> {
  const started = now();
  for (;;) {
    const { body } = await cluster.api<ApiVm>("GET", `/vms/${id}`);
    if (body.state === state) return body;
    if (body.state === "failed") throw new Error(`vm ${id} failed: ${body.stateReason}`);
    if (now() - started > timeoutMs) throw new Error(`vm ${id} not ${state} after ${timeoutMs} ms (${body.state}: ${body.stateReason})`);
    await new Promise((resolve) => setTimeout(resolve, pollMs));
  }
}

async function call(cluster: FerryCluster, method: string, route: string, body?: unknown): Promise<void> {
  const { status, body: answer } = await cluster.api(method, route, body);
  if (status >= 300) throw new Error(`${method} ${route} answered ${status}: ${JSON.stringify(answer)}`);
}

/** A vm through the API, booted and settled; each cycle suspends and resumes it once. */
async function platformGuest(cluster: FerryCluster, memoryMiB: number) {
  const created = await cluster.api<ApiVm>("POST", "/vms", { name: `bench-resume-${memoryMiB}`, image: "tiny", vcpus: 1, memoryMiB });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
  const id = created.body.id;
  await waitFor(cluster, id, "running");
  return {
    async cycle() {
      let t = now();
      let called = Date.now();
      await call(cluster, "POST", `/vms/${id}/suspend`);
      const suspended = await waitFor(cluster, id, "suspended");
      const suspendSeenMs = now() - t;
      const suspendMs = Date.parse(suspended.stateChangedAt) - called;
      const states = await cluster.api<{ items: Array<{ storedBytes: number; current: boolean }> }>("GET", `/vms/${id}/guest-states`);
      t = now();
      called = Date.now();
      await call(cluster, "POST", `/vms/${id}/resume`);
      const running = await waitFor(cluster, id, "running");
      return {
        suspendMs,
        suspendSeenMs,
        resumeMs: Date.parse(running.stateChangedAt) - called,
        resumeSeenMs: now() - t,
        storedBytes: states.body.items.find((s) => s.current)?.storedBytes ?? 0,
        worker: running.workerId ?? "?",
      };
    },
    async close() {
      await call(cluster, "DELETE", `/vms/${id}`);
      await waitFor(cluster, id, "deleted").catch(() => undefined);
    },
  };
}

// ── Raw QEMU to a local file ────────────────────────────────────────────────────────────

/** The same guest under raw QEMU; each cycle saves it to a local file and restores it once. */
async function rawGuest(memoryMiB: number) {
  const spec: VmSpec = {
    ...specForVm({ id: `bench-raw-${memoryMiB}`, vcpus: 1, memoryMiB, profile: "standard", cpuModel: "qemu64", image, vmDir: path.join(root, `raw-${memoryMiB}`) }),
    nics: [],
    display: null,
    // The RAM layout a worker's cold boot gives a vm on this QEMU, so both sides move the same bytes.
    memoryLayout: coldBootMemoryLayout("tcg", qemuVersion),
  };
  mkdirSync(path.dirname(spec.disks[0]!.overlay), { recursive: true });
  execFileSync("qemu-img", ["create", "-q", "-f", "qcow2", "-b", spec.disks[0]!.base, "-F", "qcow2", spec.disks[0]!.overlay]);
  let q = await startRawQemu(root, spec);
  let i = 0;
  return {
    async cycle() {
      const file = path.join(root, `raw-${memoryMiB}-${i++}.zst`);
      let t = now();
      await q.cmd("stop");
      const done = q.event("MIGRATION", (d) => d.status === "completed" || d.status === "failed");
      await q.cmd("migrate", { uri: `exec:zstd -1 -T2 -q > ${file}` });
      const compressor = childrenOf(q.child.pid!);
      await done;
      await Promise.all(compressor.map(gone));
      const saveMs = now() - t;
      const bytes = statSync(file).size;
      await q.close();
      t = now();
      q = await startRawQemu(root, spec, `exec:zstd -dc ${file}`);
      const loaded = q.event("MIGRATION", (d) => d.status === "completed");
      if (((await q.cmd("query-migrate")) as { status?: string }).status !== "completed") await loaded;
      await q.cmd("cont");
      const restoreMs = now() - t;
      rmSync(file);
      return { saveMs, restoreMs, bytes };
    },
    close: () => q.close(),
  };
}

// ── Run ─────────────────────────────────────────────────────────────────────────────────

const summary = (xs: number[]) => ({ median: round(median(xs)), samples: xs.map((x) => round(x)) });
const ratio = (a: number, b: number) => (b > 0 ? round(a / b, 2) : null);
const pairedRatio = (platform: number[], raw: number[]) => ratio(median(platform.map((x, i) => x / raw[i]!)), 1);

/** Raw QEMU and the platform, one cycle each in turn, after both guests booted and settled. */
async function series(cluster: FerryCluster, memoryMiB: number) {
  const raw = await rawGuest(memoryMiB);
  const platform = await platformGuest(cluster, memoryMiB);
  try {
    // Let both guests settle past their boot (the disk mounted, the ticks going).
    await new Promise((resolve) => setTimeout(resolve, 3000));
    // One cycle first, not counted: the first calls after a start warm the portal, the
    // controller and both workers (connections, compiled code paths), which a boot does not.
    await platform.cycle();
    const runsOf = {
      saveMs: [] as number[],
      restoreMs: [] as number[],
      bytes: [] as number[],
      suspendMs: [] as number[],
      suspendSeenMs: [] as number[],
      resumeMs: [] as number[],
      resumeSeenMs: [] as number[],
      storedBytes: [] as number[],
      resumedOn: [] as string[],
    };
    for (let i = 0; i < runs; i += 1) {
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const r = await raw.cycle();
      await new Promise((resolve) => setTimeout(resolve, 1000));
      const p = await platform.cycle();
      runsOf.saveMs.push(r.saveMs);
      runsOf.restoreMs.push(r.restoreMs);
      runsOf.bytes.push(r.bytes);
      runsOf.suspendMs.push(p.suspendMs);
      runsOf.suspendSeenMs.push(p.suspendSeenMs);
      runsOf.resumeMs.push(p.resumeMs);
      runsOf.resumeSeenMs.push(p.resumeSeenMs);
      runsOf.storedBytes.push(p.storedBytes);
      runsOf.resumedOn.push(p.worker);
    }
    return {
      suspendMs: summary(runsOf.suspendMs),
      suspendSeenMs: summary(runsOf.suspendSeenMs),
      resumeMs: summary(runsOf.resumeMs),
      resumeSeenMs: summary(runsOf.resumeSeenMs),
      storedBytes: median(runsOf.storedBytes),
      resumedOn: runsOf.resumedOn,
      raw: { saveMs: summary(runsOf.saveMs), restoreMs: summary(runsOf.restoreMs), bytes: median(runsOf.bytes) },
      vsRaw: {
        suspend: ratio(median(runsOf.suspendMs), median(runsOf.saveMs)),
        resume: ratio(median(runsOf.resumeMs), median(runsOf.restoreMs)),
        suspendPaired: pairedRatio(runsOf.suspendMs, runsOf.saveMs),
        resumePaired: pairedRatio(runsOf.resumeMs, runsOf.restoreMs),
      },
    };
  } finally {
    await platform.close();
    await raw.close();
  }
}

async function driverRun(driver: "folder" | "s3") {
  const s3 = driver === "s3" ? await startS3TestServer() : undefined;
  const env: Record<string, string> = s3
    ? {
        FERRY_STORAGE_DRIVER: "s3",
        FERRY_S3_ENDPOINT: s3.endpoint,
        FERRY_S3_BUCKET: await s3.createBucket(),
        FERRY_S3_ACCESS_KEY_ID: s3.credentials.accessKeyId,
        FERRY_S3_SECRET_ACCESS_KEY: s3.credentials.secretAccessKey,
        FERRY_S3_FORCE_PATH_STYLE: "true",
      }
    : { FERRY_STORAGE_DRIVER: "folder" };
  const cluster = await startFerryCluster(env);
  const results: Record<string, unknown> = {};
  try {
    for (const memoryMiB of sizes) results[`${memoryMiB}MiB`] = await series(cluster, memoryMiB);
  } finally {
    await cluster.stop();
    await s3?.close();
  }
  return results;
}

try {
  const folder = drivers.includes("folder") ? await driverRun("folder") : null;
  const s3 = drivers.includes("s3") ? await driverRun("s3") : null;
  const s3Small = s3?.["256MiB"] as { suspendMs: { median: number }; resumeMs: { median: number }; vsRaw: { suspend: number; resume: number } } | undefined;
  console.log(
    JSON.stringify(
      {
        bench: "resume",
        runs,
        guest: "tiny, 1 vCPU, TCG; suspend = API call → suspended (committed), resume = API call → running",
        qemu: qemuVersionLine,
        memoryLayout: coldBootMemoryLayout("tcg", qemuVersion),
        pollMs,
        folder,
        s3,
        targets: s3Small
          ? {
              "256MiB s3 suspend ≤ 1000 ms": s3Small.suspendMs.median <= 1000,
              "256MiB s3 resume ≤ 1000 ms": s3Small.resumeMs.median <= 1000,
              "256MiB s3 suspend ≤ 3× raw": s3Small.vsRaw.suspend <= 3,
              "256MiB s3 resume ≤ 3× raw": s3Small.vsRaw.resume <= 3,
            }
          : "not measured (BENCH_DRIVERS has no s3)",
      },
      null,
      2,
    ),
  );
} finally {
  rmSync(root, { recursive: true, force: true });
}
