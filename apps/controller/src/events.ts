// Applying workers' vm.state events to the database. Delivery is at least once and a vm can
// move between workers, so an event is applied only when it comes from the worker that owns
// the vm now and is not older than the vm's generation. The one exception is `failed`: a
// crash is a fact whatever action is in flight, and the reconcile loop re-drives from there.
import { type Db, Prisma } from "@ferry/db";
import type { VmState, VmStateEvent } from "@ferry/jobs";
import type { Logger } from "pino";

import { type MovedPublisher, commitMigration } from "./migration.ts";
import type { Webhooks } from "./webhooks.ts";

/** States where no action is in flight, so the vm's `operation` is cleared. */
const settledStates: ReadonlySet<VmState> = new Set<VmState>(["pending", "running", "stopped", "suspended", "failed", "deleted"]);

/**
 * `progressed`: applied, but the vm is in the same unsettled state, owner and wanted state as
 * before (bytes done of a suspend or resume): nothing for the reconciler to decide.
 */
export type EventOutcome = "applied" | "progressed" | "ignored";

/** Write one worker event to its vm (state, reason, accelerator, progress), log a VmEvent and tell the project's webhooks. */
export async function applyVmEvent(db: Db, event: VmStateEvent, log: Logger, publish?: MovedPublisher, webhooks?: Webhooks): Promise<EventOutcome> {
  const vm = await db.vm.findUnique({ where: { id: event.vmId } });
  if (!vm) {
    log.info({ vmId: event.vmId, workerId: event.workerId }, "event for an unknown vm ignored");
    return "ignored";
  }
  // The destination of a live migration runs the guest: QEMU completed the move, so the vm's
  // worker changes now, whether or not the source lived to say so (migration.ts, step 4).
  if (publish && vm.state === "migrating" && event.state === "running" && vm.workerId !== null && event.workerId === vm.targetWorkerId) {
    const move = { vmId: vm.id, fromWorkerId: vm.workerId, toWorkerId: event.workerId, detail: "the destination reports the guest running" };
    const committed = await commitMigration(db, publish, move);
    log.info({ ...move, committed }, "destination of a live migration runs the guest");
    return committed ? "applied" : "ignored";
  }
  if (vm.workerId !== event.workerId || vm.state === "deleted") {
    log.info({ vmId: vm.id, from: event.workerId, owner: vm.workerId, state: event.state }, "event from a worker that does not own the vm ignored");
    return "ignored";
  }
  if (event.generation < vm.generation && event.state !== "failed") {
    log.info({ vmId: vm.id, eventGeneration: event.generation, generation: vm.generation, state: event.state }, "stale event ignored");
    return "ignored";
  }

  // A worker that restarted reports its former guests failed. Those guests died with the
  // previous process, which started before the vm's current state was recorded: release
  // the vm from the worker so the reconcile loop can place it again.
  let release = false;
  if (event.state === "failed") {
    const worker = await db.worker.findUnique({ where: { id: event.workerId }, select: { startedAt: true } });
    release = worker !== null && worker.startedAt > vm.stateChangedAt;
  }

  // A suspended vm's guest state is in object storage, not on the worker: its slot is free and
  // a resume may go to any worker.
  if (event.state === "suspended") release = true;
  // A refused action (storage failed, a guest state failed verification) is not retried by
  // the reconcile loop: the wanted state becomes what the vm is, until someone asks again.
  // A guest that powered itself off stays off: the wanted state becomes stopped.
  const settleDesired =
    vm.desiredState !== "deleted" &&
    ((event.refused && (event.state === "running" || event.state === "suspended")) || (event.byGuest && event.state === "stopped"));

  const changed = vm.state !== event.state;
  const at = new Date();
  await db.$transaction([
    db.vm.update({
      where: { id: vm.id },
      data: {
        state: event.state,
        stateReason: event.reason ?? null,
        ...(event.accelerator ? { accelerator: event.accelerator } : {}),
        ...(event.memoryLayout ? { memoryLayout: event.memoryLayout } : {}),
        ...(event.progress ? { progress: event.progress } : {}),
        ...(settledStates.has(event.state) ? { operation: null, progress: Prisma.DbNull } : {}),
        ...(release ? { workerId: null } : {}),
        ...(settleDesired ? { desiredState: event.state } : {}),
        ...(changed ? { stateChangedAt: at } : {}),
      },
    }),
    ...(changed
      ? [
          db.vmEvent.create({
            data: {
              vmId: vm.id,
              at,
              kind: "state",
              message: `${vm.state} → ${event.state} on worker ${event.workerId}${event.reason ? `: ${event.reason}` : ""}`,
            },
          }),
        ]
      : []),
  ]);
  log.info({ vmId: vm.id, workerId: event.workerId, from: vm.state, to: event.state, reason: event.reason, release }, "vm state applied");
  if (changed) await webhooks?.vmChanged(vm, { previousState: vm.state as VmState, state: event.state, reason: event.reason ?? null, at });
  // Progress comes every 250 ms of a suspend or resume, and the events are applied one at a
  // time: a reconcile after each one held up the settled state the person waits for.
  return changed || release || settleDesired || settledStates.has(event.state) ? "applied" : "progressed";
}
