// The worker's heartbeat: its Worker row, upserted every couple of seconds. The controller
// places vms from these rows and counts a worker as gone when they stop coming.
import type { Db } from "@ferry/db";
import type { Logger } from "pino";

import type { Fence } from "./fence.ts";

/** What a worker tells the controller about itself; fixed for the life of the process. */
export interface WorkerInfo {
  id: string;
  hostname: string;
  consoleAddress: string;
  vcpusTotal: number;
  memoryMiBTotal: number;
  accelerator: "kvm" | "tcg";
  cpu: { vendor: string; modelName: string; flags: string[] };
  qemuVersion: string;
  startedAt: Date;
  /** FERRY_WORKER_SHARED_STORAGE: workers naming the same folder can live-migrate between them */
  sharedStorage: string | null;
  migrationHost: string;
}

export interface Heartbeat {
  /** Upsert the Worker row now. */
  beat(): Promise<void>;
  /** Keep heartbeating but take no new vms (status draining), e.g. while shutting down. */
  drain(): Promise<void>;
  /** Stop beating and mark the worker offline. */
  stop(): Promise<void>;
}

/** Start heartbeating every `intervalMs`; `used()` is the capacity the worker's vms hold. */
export async function startHeartbeat(options: {
  db: Db;
  info: WorkerInfo;
  used: () => { vcpus: number; memoryMiB: number };
  intervalMs: number;
  /** FERRY_WORKER_TIMEOUT_MS: the controller counts the worker gone after this long without a beat */
  workerTimeoutMs: number;
  /** what to do about guests when beats stop getting through, and when they get through again */
  fence: Fence;
  log: Logger;
}): Promise<Heartbeat> {
  const { db, info, log, fence } = options;
  let status: "online" | "draining" = "online";
  // When the newest beat that reached the database started: the controller compares the
  // lastHeartbeatAt it wrote against its timeout, so the worker counts from the same instant.
  let lastBeatAt = Date.now();
  let cutOff = false;
  let givenUp = false;
  const beat = async () => {
    const startedAt = new Date();
    const used = options.used();
    const row = {
      hostname: info.hostname,
      consoleAddress: info.consoleAddress,
      vcpusTotal: info.vcpusTotal,
      memoryMiBTotal: info.memoryMiBTotal,
      vcpusFree: Math.max(info.vcpusTotal - used.vcpus, 0),
      memoryMiBFree: Math.max(info.memoryMiBTotal - used.memoryMiB, 0),
      accelerator: info.accelerator,
      cpuVendor: info.cpu.vendor,
      cpuModelName: info.cpu.modelName,
      cpuFlags: info.cpu.flags,
      qemuVersion: info.qemuVersion,
      sharedStorage: info.sharedStorage,
      migrationHost: info.migrationHost,
      startedAt: info.startedAt,
      lastHeartbeatAt: startedAt,
    };
    // An admin's drain (POST /workers/{id}/drain) sets status "draining" in the row: a beat
    // keeps it, and only brings back online a worker the controller had marked offline.
    await db.worker.upsert({ where: { id: info.id }, create: { id: info.id, ...row, status }, update: status === "draining" ? { ...row, status } : row });
    const markedOffline = status === "online" && (await db.worker.updateMany({ where: { id: info.id, status: "offline" }, data: { status } })).count === 1;
    lastBeatAt = startedAt.getTime();
    if (markedOffline) {
      log.warn("the controller had marked this worker offline; back online, fencing the guests it gave up");
      givenUp = true;
    }
    // Both flags stay set until the fence has run, so a fence that failed runs at the next beat.
    if (givenUp || cutOff) {
      await fence.back(givenUp);
      givenUp = false;
      cutOff = false;
    }
  };

  await beat();
  let inFlight: Promise<void> | undefined;
  const timer = setInterval(() => {
    if (!cutOff && Date.now() - lastBeatAt > options.workerTimeoutMs) {
      cutOff = true;
      log.warn({ lastBeatAt: new Date(lastBeatAt), workerTimeoutMs: options.workerTimeoutMs }, "no heartbeat got through for longer than the worker timeout; pausing guests");
      void fence.cutOff();
    }
    if (inFlight) return;
    inFlight = beat()
      .catch((error: unknown) => log.warn({ err: error }, "heartbeat failed; retrying at the next interval"))
      .finally(() => {
        inFlight = undefined;
      });
  }, options.intervalMs);

  return {
    beat,
    async drain() {
      status = "draining";
      await inFlight;
      await beat();
    },
    async stop() {
      clearInterval(timer);
      await inFlight;
      await db.worker.update({ where: { id: info.id }, data: { status: "offline", vcpusFree: 0, memoryMiBFree: 0 } });
    },
  };
}
