// The contract between portal, controller and workers: queue names, job payloads and the
// Redis keys they share. Delivery is at least once, so every payload carries what a
// receiver needs to recognise a stale or duplicated job (the vm's generation).
import { z } from "zod";

export { type LabClassLimits, type LabSeatClock, type LabSeatTime, labSeatTime } from "./lab-time.ts";

/** Every queue and key lives under this prefix; tests pass their own to stay apart. */
export const defaultPrefix = "ferry";

export const queueNames = {
  /** The controller's inbox: reconcile requests from the portal and the API. */
  controller: "controller",
  /** Worker → controller: vm state changes. */
  vmEvents: "vm-events",
  /** One queue per worker: the jobs placed on it. */
  worker: (workerId: string) => `worker-${workerId}`,
  /** Controllers → projects' receivers: webhook deliveries, job name "webhook.deliver". */
  webhooks: "webhooks",
} as const;

export const vmStates = [
  "pending",
  "creating",
  "booting",
  "running",
  "stopping",
  "stopped",
  "rebooting",
  "suspending",
  "suspended",
  "resuming",
  "migrating",
  "failed",
  "deleting",
  "deleted",
] as const;
export type VmState = (typeof vmStates)[number];

export const desiredStates = ["running", "stopped", "suspended", "deleted"] as const;
export type DesiredState = (typeof desiredStates)[number];

export const hardwareProfiles = ["standard", "compat"] as const;

/** The engine's memory layouts: the guest's RAM is memoryMiB exactly, or 8 KiB less (TCG on QEMU < 9). */
export const memoryLayouts = ["exact", "trimmed-8k"] as const;

/** controller queue, job name "vm.reconcile" */
export const reconcileJob = z.object({ vmId: z.string() });
export type ReconcileJob = z.infer<typeof reconcileJob>;

/** What a worker needs to run a vm; it builds the engine spec from this and its own paths. */
export const vmDefinition = z.object({
  vmId: z.string(),
  image: z.string(),
  vcpus: z.number().int().positive(),
  memoryMiB: z.number().int().positive(),
  profile: z.enum(hardwareProfiles),
  cpuModel: z.string(),
  /** as the vm's last cold boot chose it; a restore or an incoming migration must use it (unset: not recorded yet) */
  memoryLayout: z.enum(memoryLayouts).optional(),
});
export type VmDefinition = z.infer<typeof vmDefinition>;

/** worker queue job names, each with `vmJob` as payload */
export const workerJobNames = [
  "vm.start",
  "vm.stop",
  "vm.reboot",
  "vm.suspend",
  "vm.resume",
  "vm.delete",
  "vm.receive",
  "vm.migrate",
  "vm.discard",
  "vm.publish",
  "vm.reset",
] as const;
export type WorkerJobName = (typeof workerJobNames)[number];

/** vm.publish: copy the suspended vm's guest state `stateId` as lab template version `versionId`'s golden point. */
export const publishRequest = z.object({ versionId: z.string(), stateId: z.string() });
export type PublishRequest = z.infer<typeof publishRequest>;

export const vmJob = z.object({
  vm: vmDefinition,
  /** the vm's generation when the job was sent; a worker ignores jobs older than what it ran */
  generation: z.number().int().nonnegative(),
  /** Live migration jobs only: vm.receive (destination), vm.migrate (source), vm.discard (destination). */
  migration: z
    .object({
      /** which migration of the vm this job belongs to; vm.discard only stops that one's QEMU */
      migrationId: z.string(),
      sourceWorkerId: z.string(),
      targetWorkerId: z.string(),
      /** vm.migrate: the destination's listening QEMU, as vm.receive returned it */
      uri: z.string().optional(),
      downtimeLimitMs: z.number().int().positive(),
      timeoutMs: z.number().int().positive(),
      /** bytes per second the migration may use; unset: as fast as the link carries it */
      maxBandwidth: z.number().int().positive().optional(),
    })
    .optional(),
  /** vm.publish only. */
  publish: publishRequest.optional(),
});
export type VmJob = z.infer<typeof vmJob>;

/** What vm.receive returns: where the destination QEMU waits for the guest. */
export const receiveResult = z.object({ uri: z.string() });
export type ReceiveResult = z.infer<typeof receiveResult>;

/** What vm.migrate returns: QEMU's figures, or why the guest stayed on the source. */
export const migrateResult = z.discriminatedUnion("ok", [
  z.object({ ok: z.literal(true), downtimeMs: z.number(), totalTimeMs: z.number(), bytesSent: z.number() }),
  z.object({ ok: z.literal(false), reason: z.string() }),
]);
export type MigrateResult = z.infer<typeof migrateResult>;

/** Published on `redisKeys.vmMoved` in the step that moves a vm to another worker. */
export const vmMovedMessage = z.object({ vmId: z.string(), fromWorkerId: z.string(), toWorkerId: z.string() });
export type VmMovedMessage = z.infer<typeof vmMovedMessage>;

/** Stable BullMQ job id, so a duplicate send of the same action is dropped by the queue. */
export function workerJobId(name: WorkerJobName, vmId: string, generation: number): string {
  return `${name}.${vmId}.${generation}`;
}

/** vm-events queue, job name "vm.state" */
export const vmStateEvent = z.object({
  vmId: z.string(),
  workerId: z.string(),
  state: z.enum(vmStates),
  generation: z.number().int().nonnegative(),
  reason: z.string().optional(),
  accelerator: z.enum(["kvm", "tcg"]).optional(),
  /** the memory layout the vm's QEMU runs with, recorded on the vm */
  memoryLayout: z.enum(memoryLayouts).optional(),
  progress: z.object({ done: z.number(), total: z.number() }).optional(),
  /**
   * The worker could not carry out the requested action (a suspend whose storage failed, a
   * resume whose guest state failed verification) and the vm stays in `state`: the desired
   * state follows it, so the action is not retried until someone asks again.
   */
  refused: z.boolean().optional(),
  /** The guest itself changed state (it powered off): the desired state follows it. */
  byGuest: z.boolean().optional(),
  at: z.string(),
});
export type VmStateEvent = z.infer<typeof vmStateEvent>;

/** webhooks queue, job name "webhook.deliver": send WebhookDelivery `deliveryId` (attempts and backoff are the job's). */
export const webhookDeliveryJob = z.object({ deliveryId: z.string().regex(/^\d+$/) });
export type WebhookDeliveryJob = z.infer<typeof webhookDeliveryJob>;

/**
 * What a webhook may subscribe to: a vm settling in a state, and a vm moved by a live migration.
 * Transitional states (booting, stopping, ...) are not sent: the controller sets most of them
 * itself when it sends the job, so they would arrive for some actions and not others.
 */
export const webhookEventKinds = ["vm.running", "vm.stopped", "vm.suspended", "vm.failed", "vm.deleted", "vm.migrated"] as const;
export type WebhookEventKind = (typeof webhookEventKinds)[number];

export function isWebhookEventKind(kind: string): kind is WebhookEventKind {
  return (webhookEventKinds as readonly string[]).includes(kind);
}

/** Redis keys shared across processes. */
export const redisKeys = {
  /** Stream of serial output chunks (field "data"), appended by the worker running the vm. */
  serialLog: (prefix: string, vmId: string) => `${prefix}:vm:${vmId}:serial`,
  /** Set NX when a console token is redeemed, so it works once. */
  consoleTokenUsed: (prefix: string, tokenId: string) => `${prefix}:console-token:${tokenId}`,
  /** Set NX when a lab student link is opened, so it works once. */
  labLinkUsed: (prefix: string, linkId: string) => `${prefix}:lab-link:${linkId}`,
  /** Pub/sub channel: a live migration moved a vm (VmMovedMessage); console gateways re-attach. */
  vmMoved: (prefix: string) => `${prefix}:vm-moved`,
  /** Pub/sub channel: someone's access was taken away (AccessRevokedMessage); console gateways re-check their sessions. */
  accessRevoked: (prefix: string) => `${prefix}:access-revoked`,
  /** Set, with a TTL of thumbnailTiming.watchSeconds, while a wall shows the vm: workers render thumbnails of watched vms only. */
  vmThumbnailWatched: (prefix: string, vmId: string) => `${prefix}:vm:${vmId}:thumbnail-watched`,
  /** The newest thumbnail of the vm's screen (PNG bytes), kept thumbnailTiming.keepSeconds. */
  vmThumbnail: (prefix: string, vmId: string) => `${prefix}:vm:${vmId}:thumbnail`,
};

/**
 * Thumbnails of vms' screens (the instructor's wall): the portal refreshes a vm's watch each
 * time it serves the vm's thumbnail, a worker renders its watched vms every `intervalMs`, and
 * a thumbnail no longer rendered (the vm stopped, nobody watches) expires after `keepSeconds`.
 */
export const thumbnailTiming = { watchSeconds: 15, intervalMs: 3000, keepSeconds: 10, width: 320 } as const;

/** Published on `redisKeys.accessRevoked` when an API token is revoked or a member removed or demoted. */
export const accessRevokedMessage = z.object({
  userId: z.string().optional(),
  organizationId: z.string().optional(),
  apiTokenId: z.string().optional(),
});
export type AccessRevokedMessage = z.infer<typeof accessRevokedMessage>;

/** How many serial chunks a vm keeps in Redis (older ones are trimmed). */
export const serialLogMaxChunks = 5000;
