// Vm lifecycle events as signed webhooks. Read in order:
// 1. fan-out: a vm's state change (a worker's report applied in events.ts, a state the
//    reconciler sets itself, a committed live migration) becomes one WebhookDelivery row per
//    subscribed webhook of its project, and one job per row on the shared `webhooks` queue
//    (job id = row id, so adding a job twice sends it once)
// 2. delivery: any controller takes the job and POSTs the event, signed; BullMQ's attempts and
//    exponential backoff retry a non-2xx answer, a redirect, a timeout or a private address
//    (webhook-request.ts); every attempt is written to the row, so the project can list what
//    happened
// 3. sweep: rows still pending long after they were made lost their job (the controller died
//    between the row and the job): they are queued again
import { randomUUID } from "node:crypto";

import { type Db, Prisma } from "@ferry/db";
import { type VmState, type WebhookEventKind, isWebhookEventKind, queueNames, webhookDeliveryJob } from "@ferry/jobs";
import { webhookSignature, webhookSignatureHeader, webhookSigningSecret } from "@ferry/tokens";
import { type Job, type JobsOptions, Queue, UnrecoverableError, Worker as QueueWorker } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

import { postWebhook } from "./webhook-request.ts";

export interface WebhookSettings {
  /** attempts per delivery before it is recorded failed (FERRY_WEBHOOK_ATTEMPTS) */
  attempts: number;
  /** the wait before the first retry; each further retry waits twice as long (FERRY_WEBHOOK_BACKOFF_MS) */
  backoffMs: number;
  /** how long a receiver has to answer (FERRY_WEBHOOK_TIMEOUT_MS) */
  timeoutMs: number;
  /** how often pending deliveries without a job are looked for, and how old they must be */
  sweepIntervalMs: number;
  /** send to private, loopback and link-local addresses too (FERRY_WEBHOOK_PRIVATE_ADDRESSES=allow) */
  allowPrivateAddresses: boolean;
}

/** 8 attempts 10 s apart, doubling: the last one about 21 minutes after the event. */
export const defaultWebhookSettings: WebhookSettings = { attempts: 8, backoffMs: 10_000, timeoutMs: 5_000, sweepIntervalMs: 60_000, allowPrivateAddresses: false };

/** The JSON body of every delivery. */
export interface VmLifecycleEvent {
  /** the same in every webhook's delivery of this event, and across retries: receivers dedupe on it */
  id: string;
  kind: WebhookEventKind;
  at: string;
  projectId: string;
  vm: { id: string; name: string };
  state: VmState;
  previousState: VmState;
  reason: string | null;
}

type VmOfChange = { id: string; name: string; projectId: string };

export interface WebhooksOptions {
  db: Db;
  redis: Redis;
  prefix: string;
  /** FERRY_CLUSTER_SECRET: each webhook's signing secret is derived from it */
  clusterSecret: string;
  settings: WebhookSettings;
  log: Logger;
}

const deliverJobName = "webhook.deliver";
/** Longest receiver error kept on a delivery. */
const maxErrorLength = 500;

/** The webhooks of this controller: fans vm changes out to deliveries and sends them. */
export class Webhooks {
  readonly #options: WebhooksOptions;
  readonly #queue: Queue;
  readonly #consumer: QueueWorker;
  readonly #sweep: NodeJS.Timeout;

  constructor(options: WebhooksOptions) {
    this.#options = options;
    const { redis, prefix, log } = options;
    this.#queue = new Queue(queueNames.webhooks, { connection: redis, prefix });
    // Concurrency 8: one slow receiver holds a slot for at most timeoutMs, not the others' deliveries.
    this.#consumer = new QueueWorker(queueNames.webhooks, (job) => this.#deliver(job), { connection: redis, prefix, concurrency: 8 });
    this.#consumer.on("error", (error) => log.error({ err: error }, "webhooks queue error"));
    this.#sweep = setInterval(() => void this.#requeueLost(), options.settings.sweepIntervalMs);
  }

  // -------------------------------------------------------------------------------------
  // 1. fan-out

  /** The vm entered `state` (its row already says so); only settled states are sent. Never throws: the state change stands whatever happens here. */
  async vmChanged(vm: VmOfChange, change: { previousState: VmState; state: VmState; reason: string | null; at: Date }): Promise<void> {
    const kind = `vm.${change.state}`;
    if (isWebhookEventKind(kind)) await this.#emit(vm, { kind, ...change });
  }

  /** A live migration moved the vm to another worker (committed); it runs there. */
  async vmMigrated(vmId: string): Promise<void> {
    const vm = await this.#options.db.vm.findUnique({ where: { id: vmId }, select: { id: true, name: true, projectId: true } }).catch((error: unknown) => {
      this.#options.log.error({ err: error, vmId }, "could not read the migrated vm; its webhooks miss vm.migrated");
      return null;
    });
    if (vm !== null) await this.#emit(vm, { kind: "vm.migrated", previousState: "migrating", state: "running", reason: null, at: new Date() });
  }

  async #emit(vm: VmOfChange, change: { kind: WebhookEventKind; previousState: VmState; state: VmState; reason: string | null; at: Date }): Promise<void> {
    const { db, log } = this.#options;
    try {
      const webhooks = await db.webhook.findMany({
        where: { projectId: vm.projectId, disabledAt: null, OR: [{ events: { isEmpty: true } }, { events: { has: change.kind } }] },
        select: { id: true },
      });
      if (webhooks.length === 0) return;
      const event: VmLifecycleEvent = {
        id: randomUUID(),
        kind: change.kind,
        at: change.at.toISOString(),
        projectId: vm.projectId,
        vm: { id: vm.id, name: vm.name },
        state: change.state,
        previousState: change.previousState,
        reason: change.reason,
      };
      const rows = await db.webhookDelivery.createManyAndReturn({
        data: webhooks.map((webhook) => ({ webhookId: webhook.id, eventId: event.id, kind: event.kind, payload: event as unknown as Prisma.InputJsonObject })),
        select: { id: true },
      });
      await this.#enqueue(rows.map((row) => row.id));
    } catch (error) {
      log.error({ err: error, vmId: vm.id, kind: change.kind }, "could not queue the webhook deliveries of a vm change; pending ones are queued again by the sweep");
    }
  }

  async #enqueue(deliveryIds: bigint[]): Promise<void> {
    const { attempts, backoffMs } = this.#options.settings;
    const opts = (id: bigint): JobsOptions => ({
      jobId: `delivery-${id}`,
      attempts,
      backoff: { type: "exponential", delay: backoffMs },
      removeOnComplete: true,
      removeOnFail: true,
    });
    await this.#queue.addBulk(deliveryIds.map((id) => ({ name: deliverJobName, data: { deliveryId: id.toString() }, opts: opts(id) })));
  }

  // -------------------------------------------------------------------------------------
  // 2. delivery

  async #deliver(job: Job): Promise<void> {
    const { db, clusterSecret, settings, log } = this.#options;
    const parsed = webhookDeliveryJob.safeParse(job.data);
    if (job.name !== deliverJobName || !parsed.success) {
      throw new UnrecoverableError(`webhooks job ${job.name} (${job.id}) is not a ${deliverJobName} {deliveryId}: ${JSON.stringify(job.data)}; fix the sender`);
    }
    const id = BigInt(parsed.data.deliveryId);
    const delivery = await db.webhookDelivery.findUnique({ where: { id }, include: { webhook: true } });
    if (delivery === null || delivery.status !== "pending") return;
    const { webhook } = delivery;
    if (webhook.disabledAt !== null) {
      await db.webhookDelivery.update({ where: { id }, data: { status: "failed", lastError: "the webhook was deleted before this event was delivered" } });
      return;
    }

    const body = JSON.stringify(delivery.payload);
    const secret = webhookSigningSecret(clusterSecret, webhook.id, webhook.secretSalt);
    const headers = {
      "content-type": "application/json",
      "user-agent": "Ferry-Webhooks/1",
      "ferry-event": delivery.kind,
      "ferry-delivery": id.toString(),
      [webhookSignatureHeader]: webhookSignature(secret, Math.floor(Date.now() / 1000), body),
    };
    const answer = await postWebhook(webhook.url, body, headers, settings);

    const attempt = job.attemptsMade + 1;
    const last = attempt >= (job.opts.attempts ?? 1);
    const now = new Date();
    await db.webhookDelivery.update({
      where: { id },
      data: {
        attempts: { increment: 1 },
        lastAttemptAt: now,
        lastStatusCode: answer.status,
        lastError: answer.error?.slice(0, maxErrorLength) ?? null,
        ...(answer.error === null ? { status: "delivered", deliveredAt: now } : last ? { status: "failed" } : {}),
      },
    });
    if (answer.error === null) return;
    log.warn({ deliveryId: id.toString(), webhookId: webhook.id, attempt, last, error: answer.error }, "webhook delivery attempt failed");
    // Throwing hands the retry to BullMQ (attempts, exponential backoff); after the last attempt the row says failed.
    if (!last) throw new Error(`webhook ${webhook.id} delivery ${id} attempt ${attempt}: ${answer.error}; retried after a backoff`);
  }

  // -------------------------------------------------------------------------------------
  // 3. sweep

  async #requeueLost(): Promise<void> {
    const { db, settings, log } = this.#options;
    try {
      const lost = await db.webhookDelivery.findMany({
        where: { status: "pending", createdAt: { lt: new Date(Date.now() - settings.sweepIntervalMs) } },
        select: { id: true },
        orderBy: { createdAt: "asc" },
        take: 500,
      });
      // A delivery whose job still exists (waiting, or in a backoff) is not added twice: same job id.
      if (lost.length > 0) await this.#enqueue(lost.map((row) => row.id));
    } catch (error) {
      log.error({ err: error }, "could not look for webhook deliveries to queue again; retrying next interval");
    }
  }

  /** Stop taking deliveries and wait for the ones in flight. */
  async close(): Promise<void> {
    clearInterval(this.#sweep);
    await this.#consumer.close();
    await this.#queue.close();
  }
}
