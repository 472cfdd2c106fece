// How a vm's state is shown: the state word, whether it is still moving, and why.
import type { VmView } from "../server/routers/vm.ts";

const settledStates: Record<string, string> = { running: "running", stopped: "stopped", suspended: "suspended", deleted: "deleted" };

/** True while the vm is on its way to the state that was asked for. */
export function isBusy(vm: Pick<VmView, "state" | "desiredState">): boolean {
  if (vm.state === "failed") return false;
  return settledStates[vm.state] !== vm.desiredState;
}

const ongoing: Record<string, string> = {
  create: "creating…",
  start: "starting…",
  stop: "stopping…",
  reboot: "rebooting…",
  suspend: "suspending…",
  resume: "resuming…",
  delete: "deleting…",
};

/** "stopping…" for a vm whose stop is under way. */
export function operationLabel(operation: string | null): string {
  return (operation && ongoing[operation]) ?? "working…";
}

export function VmStateBadge({ vm }: { vm: Pick<VmView, "state" | "desiredState" | "stateReason"> }) {
  const busy = isBusy(vm) || !settledStates[vm.state];
  return (
    <span>
      <span className={`state state-${busy && vm.state !== "failed" ? "busy" : vm.state}`} data-testid="vm-state">
        {vm.state}
      </span>
      {vm.stateReason && <span className="reason">{vm.stateReason}</span>}
    </span>
  );
}
