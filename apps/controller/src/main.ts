// Controller entry point: env → startController; SIGTERM/SIGINT stop it cleanly (exit 0).
import { createDb } from "@ferry/db";
import { pino } from "pino";

import { startController } from "./controller.ts";
import { env } from "./env.ts";
import { engineCpuCheck } from "./placement.ts";

const log = pino({ level: env.FERRY_LOG_LEVEL, base: { app: "controller" } });
const db = createDb(env.FERRY_DATABASE_URL);

const controller = await startController({
  db,
  redisUrl: env.FERRY_REDIS_URL,
  prefix: env.FERRY_QUEUE_PREFIX,
  reconcileIntervalMs: env.FERRY_RECONCILE_INTERVAL_MS,
  workerTimeoutMs: env.FERRY_WORKER_TIMEOUT_MS,
  cpuCheck: engineCpuCheck,
  clusterSecret: env.FERRY_CLUSTER_SECRET,
  webhooks: {
    attempts: env.FERRY_WEBHOOK_ATTEMPTS,
    backoffMs: env.FERRY_WEBHOOK_BACKOFF_MS,
    timeoutMs: env.FERRY_WEBHOOK_TIMEOUT_MS,
    allowPrivateAddresses: env.FERRY_WEBHOOK_PRIVATE_ADDRESSES === "allow",
  },
  migration: {
    downtimeLimitMs: env.FERRY_MIGRATION_DOWNTIME_MS,
    timeoutMs: env.FERRY_MIGRATION_TIMEOUT_MS,
    ...(env.FERRY_MIGRATION_MAX_BANDWIDTH === undefined ? {} : { maxBandwidth: env.FERRY_MIGRATION_MAX_BANDWIDTH }),
  },
  log,
});

let stopping = false;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, "shutting down");
    controller
      .close()
      .then(() => db.$disconnect())
      .then(
        () => process.exit(0),
        (error: unknown) => {
          log.error({ err: error }, "shutdown failed");
          process.exit(1);
        },
      );
  });
}
