// bench/platform: what the platform adds to booting a vm. For each of N tiny TCG vms,
// API create → `running`, and API create → first framebuffer update at a websocket VNC
// client, beside the engine booting the same guest directly (create → boot marker) in the
// same run, interleaved so both see the same machine load. Prints one JSON document.
import { mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { Engine, loadImage, specForVm } from "@ferry/engine";
import { median, round, startFerryCluster } from "../lib/ferry-cluster.ts";
import { openRfbOverWebSocket } from "../lib/rfb-ws-client.ts";

const runs = Number(process.env.BENCH_RUNS ?? 10);
const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";

interface ApiVm {
  id: string;
  state: string;
  stateReason?: string | null;
}

async function engineBoot(engine: Engine, workDir: string, i: number): Promise<number> {
  const image = await loadImage(imagesDir, "tiny");
  const spec = specForVm({
    id: `bench-raw-${i}`,
    vcpus: 1,
    memoryMiB: 256,
    profile: "standard",
    cpuModel: "qemu64",
    image,
    vmDir: join(workDir, `raw-${i}`),
  });
  const started = performance.now();
  const vm = await engine.start(spec, { bootMarker: image.bootMarker });
  await vm.whenState("running", { timeoutMs: 120_000 });
  const elapsed = performance.now() - started;
  await vm.stop({ graceMs: 0 });
  return elapsed;
}

async function platformBoot(cluster: Awaited<ReturnType<typeof startFerryCluster>>, i: number) {
  const started = performance.now();
  const created = await cluster.api<ApiVm>("POST", "/vms", { name: `bench-${i}`, image: "tiny", vcpus: 1, memoryMiB: 256 });
  if (created.status !== 201) throw new Error(`create answered ${created.status}: ${JSON.stringify(created.body)}`);
  const id = created.body.id;
  let runningAt = 0;
  for (;;) {
    const { body } = await cluster.api<ApiVm>("GET", `/vms/${id}`);
    if (body.state === "running") {
      runningAt = performance.now();
      break;
    }
    if (body.state === "failed") throw new Error(`vm ${id} failed: ${body.stateReason}`);
    if (performance.now() - started > 120_000) throw new Error(`vm ${id} not running after 120 s (${body.state})`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  const consoleGrant = await cluster.api<{ url: string }>("POST", `/vms/${id}/console`);
  if (consoleGrant.status !== 200 && consoleGrant.status !== 201) {
    throw new Error(`console answered ${consoleGrant.status}: ${JSON.stringify(consoleGrant.body)}`);
  }
  const rfb = await openRfbOverWebSocket(consoleGrant.body.url, cluster.baseUrl);
  const frameAt = await rfb.nextUpdate(false);
  rfb.close();
  await cluster.api("DELETE", `/vms/${id}`);
  for (;;) {
    const { status, body } = await cluster.api<ApiVm>("GET", `/vms/${id}`);
    if (status === 404 || body.state === "deleted") break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { toRunning: runningAt - started, toFirstFrame: frameAt - started };
}

async function main(): Promise<void> {
  const workDir = mkdtempSync("/tmp/ferry-bench-platform-");
  const cluster = await startFerryCluster();
  const engine = await Engine.open({ runDir: join(workDir, "run"), accelerator: "tcg" });
  const raw: number[] = [];
  const toRunning: number[] = [];
  const toFirstFrame: number[] = [];
  try {
    for (let i = 0; i < runs; i += 1) {
      raw.push(await engineBoot(engine, workDir, i));
      const platform = await platformBoot(cluster, i);
      toRunning.push(platform.toRunning);
      toFirstFrame.push(platform.toFirstFrame);
    }
  } finally {
    await engine.shutdown();
    await cluster.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
  const rawMedian = median(raw);
  const result = {
    bench: "platform",
    runs,
    guest: "tiny, 1 vCPU, 256 MiB, TCG",
    engineBootMs: { median: round(median(raw)), samples: raw.map((v) => round(v)) },
    apiCreateToRunningMs: { median: round(median(toRunning)), samples: toRunning.map((v) => round(v)) },
    apiCreateToFirstFrameMs: { median: round(median(toFirstFrame)), samples: toFirstFrame.map((v) => round(v)) },
    platformOverheadMs: {
      toRunning: round(median(toRunning) - rawMedian),
      toFirstFrame: round(median(toFirstFrame) - rawMedian),
      target: 300,
    },
  };
  console.log(JSON.stringify(result, null, 2));
}

await main();
