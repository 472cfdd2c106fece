// Waiting for a vm to settle after an action: the portal records what is wanted at once, the
// controller and a worker carry it out. The vm has settled when no operation is in flight and
// its state is the one asked for.
import type { FerryApi, Vm } from "./api.ts";
import { CommandError } from "./errors.ts";
import { formatBytes, ProgressLine } from "./output.ts";

const pollIntervalMs = 500;

/**
 * Poll `vm` until it is in `wanted` with no operation in flight, showing its state changes and
 * progress on stderr. Rejects when it fails, when its wanted state changes under us (a worker
 * refused the action, or someone asked for something else), or after `timeoutMs`.
 */
export async function waitUntilSettled(api: FerryApi, vm: Vm, wanted: string, action: string, timeoutMs: number, progress = new ProgressLine()): Promise<Vm> {
  const deadline = Date.now() + timeoutMs;
  let current = vm;
  try {
    for (;;) {
      progress.show(...describe(current));
      if (current.state === "failed") {
        throw new CommandError(`vm ${current.name} failed${current.stateReason ? `: ${current.stateReason}` : ""}. See 'ferry vm console-log ${current.name}' and 'ferry vm show ${current.name}'.`, "vm_failed");
      }
      if (current.desiredState !== wanted) {
        throw new CommandError(
          `the ${action} of vm ${current.name} did not complete: it is ${current.state} and now wants ${current.desiredState}` +
            `${current.stateReason ? ` (${current.stateReason})` : ""}. Look at 'ferry vm show ${current.name}' and ask again if needed.`,
          "action_not_completed",
        );
      }
      if (current.state === wanted && current.operation === null) return current;
      if (Date.now() > deadline) {
        throw new CommandError(
          `vm ${current.name} is still ${current.state} after ${Math.round(timeoutMs / 1000)} s (wanted: ${wanted}); it may still get there. ` +
            `Follow it with 'ferry vm show ${current.name}', or wait longer with --timeout.`,
          "timeout",
        );
      }
      await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
      try {
        current = await api.request<Vm>("GET", `/vms/${current.id}`);
      } catch (error) {
        // A deleted vm may already be gone from the list of vms the portal shows.
        if (wanted === "deleted" && error instanceof CommandError && error.status === 404) return { ...current, state: "deleted", operation: null };
        throw error;
      }
    }
  } finally {
    progress.end();
  }
}

function describe(vm: Vm): [string, number?] {
  const where = vm.workerId ? ` on ${vm.workerId}` : "";
  const why = vm.stateReason ? ` (${vm.stateReason})` : "";
  const line = `vm ${vm.name}: ${vm.state}${where}${why}`;
  if (vm.progress === null || vm.progress.total <= 0) return [line];
  const percent = Math.min(100, (vm.progress.done / vm.progress.total) * 100);
  return [`${line} ${percent.toFixed(0)}% (${formatBytes(vm.progress.done)} of ${formatBytes(vm.progress.total)})`, percent];
}
