// Worker entry point: env → startWorker; SIGTERM/SIGINT shut it down cleanly (exit 0).
import { pino } from "pino";

import { env, storageConfigOf } from "./env.ts";
import { startWorker } from "./worker-process.ts";

const log = pino({ level: env.FERRY_LOG_LEVEL, base: { app: "worker", workerId: env.FERRY_WORKER_ID } });

const worker = await startWorker({
  workerId: env.FERRY_WORKER_ID,
  stateDir: env.FERRY_WORKER_STATE_DIR,
  databaseUrl: env.FERRY_DATABASE_URL,
  redisUrl: env.FERRY_REDIS_URL,
  prefix: env.FERRY_QUEUE_PREFIX,
  clusterSecret: env.FERRY_CLUSTER_SECRET,
  vcpus: env.FERRY_WORKER_VCPUS,
  memoryMiB: env.FERRY_WORKER_MEMORY_MIB,
  consoleHost: env.FERRY_WORKER_CONSOLE_HOST,
  consolePort: env.FERRY_WORKER_CONSOLE_PORT,
  imagesDir: env.FERRY_IMAGES_DIR,
  qemuBinary: env.FERRY_QEMU_BINARY,
  accelerator: env.FERRY_ACCELERATOR,
  ...(env.FERRY_TCG_TB_SIZE_MIB === undefined ? {} : { tcgTranslationCacheMiB: env.FERRY_TCG_TB_SIZE_MIB }),
  storage: storageConfigOf(env),
  clusterId: env.FERRY_CLUSTER_ID,
  guestStatesKeep: env.FERRY_GUEST_STATES_KEEP,
  guestStateSweepMs: env.FERRY_GUEST_STATE_SWEEP_MS,
  guestStateOrphanAgeMs: env.FERRY_GUEST_STATE_ORPHAN_AGE_MS,
  ...(env.FERRY_WORKER_SHARED_STORAGE === undefined ? {} : { sharedStorage: env.FERRY_WORKER_SHARED_STORAGE }),
  migrationHost: env.FERRY_WORKER_MIGRATION_HOST ?? env.FERRY_WORKER_CONSOLE_HOST,
  workerTimeoutMs: env.FERRY_WORKER_TIMEOUT_MS,
  log,
});

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    worker.shutdown().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, "shutdown failed");
        process.exit(1);
      },
    );
  });
}
