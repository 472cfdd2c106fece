// The controller process without its environment: tests start it in-process with their own
// database, Redis prefix and timings; main.ts starts it from env.
import type { Db } from "@ferry/db";
import { queueNames, reconcileJob, vmStateEvent } from "@ferry/jobs";
import { UnrecoverableError, Worker as QueueWorker } from "bullmq";
import { Redis } from "ioredis";
import type { Logger } from "pino";

import { applyVmEvent } from "./events.ts";
import { MigrationRunner, type MigrationSettings, type MovedPublisher, defaultMigrationSettings, redisMovedPublisher } from "./migration.ts";
import type { CpuCheck } from "./placement.ts";
import { Reconciler } from "./reconciler.ts";
import { type WebhookSettings, Webhooks, defaultWebhookSettings } from "./webhooks.ts";
import { LabClasses } from "./lab-classes.ts";
import { Labs } from "./labs.ts";

export interface ControllerOptions {
  db: Db;
  redisUrl: string;
  prefix: string;
  reconcileIntervalMs: number;
  workerTimeoutMs: number;
  cpuCheck: CpuCheck;
  /** live migration limits (FERRY_MIGRATION_DOWNTIME_MS, FERRY_MIGRATION_TIMEOUT_MS) */
  migration?: MigrationSettings;
  /** FERRY_CLUSTER_SECRET: webhook signing secrets are derived from it */
  clusterSecret: string;
  /** webhook delivery attempts, backoff and timeout (FERRY_WEBHOOK_*) */
  webhooks?: Partial<WebhookSettings>;
  log: Logger;
}

/** A running controller: consumes vm-events and vm.reconcile jobs and runs the reconcile loop. */
export interface Controller {
  reconciler: Reconciler;
  /** the live migrations this controller runs (tests change their settings) */
  migrations: MigrationRunner;
  /** Stop consuming and wait for the work in flight; the caller closes `db`. */
  close(): Promise<void>;
}

/** Start the controller's consumers and its reconcile loop. */
export async function startController(options: ControllerOptions): Promise<Controller> {
  const { db, prefix, log } = options;
  // BullMQ workers block on Redis, so they need maxRetriesPerRequest: null.
  const redis = new Redis(options.redisUrl, { maxRetriesPerRequest: null });
  const webhooks = new Webhooks({ db, redis, prefix, clusterSecret: options.clusterSecret, settings: { ...defaultWebhookSettings, ...options.webhooks }, log });
  const movedOnRedis = redisMovedPublisher(redis, prefix);
  // A committed move is announced to the console gateways and to the project's webhooks.
  const publish: MovedPublisher = async (message) => {
    await movedOnRedis(message);
    await webhooks.vmMigrated(message.vmId);
  };
  const migrations = new MigrationRunner({
    db,
    redis,
    prefix,
    workerTimeoutMs: options.workerTimeoutMs,
    settings: options.migration ?? defaultMigrationSettings,
    publish,
    log,
  });
  const reconciler = new Reconciler({
    db,
    redis,
    prefix,
    workerTimeoutMs: options.workerTimeoutMs,
    cpuCheck: options.cpuCheck,
    migrations,
    webhooks,
    log,
  });
  const labs = new Labs({ db, redis, prefix, workerTimeoutMs: options.workerTimeoutMs, log });
  const labClasses = new LabClasses({ db, reconcileVm: (vmId) => reconciler.reconcileVm(vmId), log });

  const inbox = new QueueWorker(
    queueNames.controller,
    async (job) => {
      const parsed = reconcileJob.safeParse(job.data);
      if (job.name !== "vm.reconcile" || !parsed.success) {
        throw new UnrecoverableError(`controller job ${job.name} (${job.id}) is not a vm.reconcile {vmId}: ${JSON.stringify(job.data)}; fix the sender`);
      }
      await reconciler.reconcileVm(parsed.data.vmId);
    },
    { connection: redis, prefix, concurrency: 4 },
  );

  // Concurrency 1: a vm's events are applied in the order its worker sent them.
  const events = new QueueWorker(
    queueNames.vmEvents,
    async (job) => {
      const parsed = vmStateEvent.safeParse(job.data);
      if (job.name !== "vm.state" || !parsed.success) {
        throw new UnrecoverableError(`vm-events job ${job.name} (${job.id}) is not a vm.state event: ${JSON.stringify(job.data)}; fix the sender`);
      }
      const outcome = await applyVmEvent(db, parsed.data, log, publish, webhooks);
      if (outcome === "applied") await reconciler.reconcileVm(parsed.data.vmId);
    },
    { connection: redis, prefix, concurrency: 1 },
  );
  for (const consumer of [inbox, events]) {
    consumer.on("failed", (job, error) => log.error({ err: error, job: job?.name, jobId: job?.id }, "controller job failed"));
    consumer.on("error", (error) => log.error({ err: error }, "controller queue error"));
  }

  let pass: Promise<void> | undefined;
  const loop = setInterval(() => {
    if (pass) return;
    pass = reconciler
      .reconcileAll()
      .then(() => labs.reconcileAll())
      .then(() => labClasses.reconcileAll())
      .catch((error: unknown) => log.error({ err: error }, "reconcile pass failed; retrying next interval"))
      .finally(() => {
        pass = undefined;
      });
  }, options.reconcileIntervalMs);

  log.info({ prefix, reconcileIntervalMs: options.reconcileIntervalMs, workerTimeoutMs: options.workerTimeoutMs }, "controller started");
  return {
    reconciler,
    migrations,
    async close() {
      clearInterval(loop);
      await Promise.all([inbox.close(), events.close()]);
      await pass;
      await reconciler.close();
      await labs.close();
      await migrations.close();
      await webhooks.close();
      redis.disconnect();
    },
  };
}
