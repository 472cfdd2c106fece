// The fence: a worker cut off from the database must not keep running a guest the controller
// has meanwhile placed on another worker. Two copies of one guest would both write its disk (on
// shared storage, the same file) and both answer on its network. So:
// - cut off for longer than the controller's worker timeout (the controller may have given its
//   vms up by now), the worker pauses its guests (QMP stop);
// - at the first beat that gets through, it kills every guest whose vm the database no longer
//   places here, and continues the others.
import type { Logger } from "pino";

import { type HostedVm, WorkerContext } from "./context.ts";

/** A local guest as the fence sees it: its vm and the newest generation this worker handled. */
export interface LocalGuest {
  vmId: string;
  generation: number;
}

/** A vm row's placement, as the database has it now. */
export interface VmPlacement {
  id: string;
  workerId: string | null;
  generation: number;
}

/**
 * The local guests this worker must kill because the controller gave them up while it was
 * away: the vm row is gone, names another worker (or none), or carries a newer generation.
 */
export function guestsToFence(workerId: string, guests: LocalGuest[], rows: VmPlacement[]): { vmId: string; reason: string }[] {
  const byId = new Map(rows.map((row) => [row.id, row]));
  return guests.flatMap((guest) => {
    const row = byId.get(guest.vmId);
    if (!row) return [{ vmId: guest.vmId, reason: "the vm no longer exists" }];
    if (row.workerId !== workerId) {
      return [{ vmId: guest.vmId, reason: row.workerId === null ? "the vm is placed on no worker now" : `the vm is placed on worker ${row.workerId} now` }];
    }
    if (row.generation > guest.generation) {
      return [{ vmId: guest.vmId, reason: `the vm's generation moved on to ${row.generation} (this guest is generation ${guest.generation})` }];
    }
    return [];
  });
}

export interface Fence {
  /** No beat completed for longer than the worker timeout: pause every running guest. */
  cutOff(): Promise<void>;
  /** A beat completed after a cut-off, or found the row marked offline: kill what moved, continue the rest. */
  back(markedOffline: boolean): Promise<void>;
}

/** The fence over this worker's guests; its steps run one at a time. */
export function createFence(ctx: WorkerContext, log: Logger): Fence {
  const paused = new Set<string>();
  let chain: Promise<unknown> = Promise.resolve();
  const serial = (work: () => Promise<void>): Promise<void> => {
    const next = chain.then(work);
    chain = next.catch((error: unknown) => log.error({ err: error }, "fencing the worker's guests failed"));
    return next;
  };
  const alive = (): HostedVm[] => [...ctx.vms.values()].filter((hosted) => WorkerContext.isAlive(hosted.engineVm));

  return {
    cutOff: () =>
      serial(async () => {
        for (const hosted of alive()) {
          const vm = hosted.engineVm!;
          if (paused.has(hosted.vmId) || (vm.state !== "running" && vm.state !== "booting")) continue;
          try {
            await vm.execute("stop");
            paused.add(hosted.vmId);
            log.warn({ vmId: hosted.vmId }, "no heartbeat got through for longer than the worker timeout: guest paused until one does");
          } catch (error) {
            log.error({ err: error, vmId: hosted.vmId }, "pausing the guest failed");
          }
        }
      }),
    back: (markedOffline) =>
      serial(async () => {
        const guests = alive();
        if (markedOffline && guests.length > 0) {
          const rows = await ctx.options.db.vm.findMany({
            where: { id: { in: guests.map((hosted) => hosted.vmId) } },
            select: { id: true, workerId: true, generation: true },
          });
          for (const { vmId, reason } of guestsToFence(ctx.workerId, guests, rows)) {
            const hosted = ctx.vms.get(vmId)!;
            const vm = hosted.engineVm!;
            // Cleared first: the supervisor reports nothing for it, since the vm's row is the
            // other worker's now. No save either: the controller already gave this guest up.
            hosted.engineVm = undefined;
            paused.delete(vmId);
            log.warn({ vmId, reason }, `the controller counted this worker gone and gave the vm up: guest killed (${reason})`);
            await vm.stop({ graceMs: 0 }).catch((error: unknown) => log.error({ err: error, vmId }, "killing the fenced guest failed"));
            await ctx.options.serial.unfollow(vmId);
          }
        }
        for (const vmId of paused) {
          paused.delete(vmId);
          const vm = ctx.vms.get(vmId)?.engineVm;
          if (!WorkerContext.isAlive(vm)) continue;
          await vm.execute("cont").then(
            () => log.warn({ vmId }, "heartbeat back and the vm still placed here: guest continued"),
            (error: unknown) => log.error({ err: error, vmId }, "continuing the paused guest failed"),
          );
        }
      }),
  };
}
