// Waiting for a vm to settle after an action: the portal records what is wanted at once, the
// controller and a worker carry it out. The vm has settled when no operation is in flight and
// its state is the one asked for.
import type { FerryApi, Vm } from "./api.ts";
import { CommandError } from "./errors.ts";
import { formatBytes, ProgressLine } from "./output.ts";

const vmPollIntervalMs = 500;

/**
 * Poll `first` with `next` every `intervalMs` until `done` says it has settled, showing
 * `show(current)` on stderr meanwhile. `done` throws when it can never settle; after `timeoutMs`
 * the error is `late(current)`.
 */
export async function pollUntil<T>(
  first: T,
  poll: {
    next: (current: T) => Promise<T>;
    show: (current: T) => [string, number?];
    done: (current: T) => boolean;
    late: (current: T) => CommandError;
    timeoutMs: number;
    intervalMs: number;
  },
  progress = new ProgressLine(),
): Promise<T> {
  const deadline = Date.now() + poll.timeoutMs;
  let current = first;
  try {
    for (;;) {
      progress.show(...poll.show(current));
      if (poll.done(current)) return current;
      if (Date.now() > deadline) throw poll.late(current);
      await new Promise((resolve) => setTimeout(resolve, poll.intervalMs));
      current = await poll.next(current);
    }
  } finally {
    progress.end();
  }
}

/**
 * Poll `vm` until it is in `wanted` with no operation in flight, showing its state changes and
 * progress on stderr. Rejects when it fails, when its wanted state changes under us (a worker
 * refused the action, or someone asked for something else), or after `timeoutMs`.
 */
export function waitUntilSettled(api: FerryApi, vm: Vm, wanted: string, action: string, timeoutMs: number, progress?: ProgressLine): Promise<Vm> {
  return pollUntil(
    vm,
    {
      next: async (current) => {
        try {
          return await api.request<Vm>("GET", `/vms/${current.id}`);
        } catch (error) {
          // A deleted vm may already be gone from the list of vms the portal shows.
          if (wanted === "deleted" && error instanceof CommandError && error.status === 404) return { ...current, state: "deleted", operation: null };
          throw error;
        }
      },
      show: describe,
      done: (current) => {
        if (current.state === "failed") {
          throw new CommandError(
            `vm ${current.name} failed${current.stateReason ? `: ${current.stateReason}` : ""}. See 'ferry vm console-log ${current.name}' and 'ferry vm show ${current.name}'.`,
            "vm_failed",
          );
        }
        if (current.desiredState !== wanted) {
          throw new CommandError(
            `the ${action} of vm ${current.name} did not complete: it is ${current.state} and now wants ${current.desiredState}` +
              `${current.stateReason ? ` (${current.stateReason})` : ""}. Look at 'ferry vm show ${current.name}' and ask again if needed.`,
            "action_not_completed",
          );
        }
        return current.state === wanted && current.operation === null;
      },
      late: (current) =>
        new CommandError(
          `vm ${current.name} is still ${current.state} after ${Math.round(timeoutMs / 1000)} s (wanted: ${wanted}); it may still get there. ` +
            `Follow it with 'ferry vm show ${current.name}', or wait longer with --timeout.`,
          "timeout",
        ),
      timeoutMs,
      intervalMs: vmPollIntervalMs,
    },
    progress,
  );
}

function describe(vm: Vm): [string, number?] {
  const where = vm.workerId ? ` on ${vm.workerId}` : "";
  const why = vm.stateReason ? ` (${vm.stateReason})` : "";
  const line = `vm ${vm.name}: ${vm.state}${where}${why}`;
  if (vm.progress === null || vm.progress.total <= 0) return [line];
  const percent = Math.min(100, (vm.progress.done / vm.progress.total) * 100);
  return [`${line} ${percent.toFixed(0)}% (${formatBytes(vm.progress.done)} of ${formatBytes(vm.progress.total)})`, percent];
}
