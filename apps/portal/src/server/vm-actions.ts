// Which actions a person may ask for in which vm state. The controller and workers carry the
// request out; this table only refuses the ones that make no sense, by name, with the way out.
import type { DesiredState } from "@ferry/jobs";

export const vmActions = ["start", "stop", "reboot", "suspend", "resume", "delete"] as const;
export type VmAction = (typeof vmActions)[number];

/** The desired state each action asks for. */
export const desiredStateOf: Record<VmAction, DesiredState> = {
  start: "running",
  stop: "stopped",
  reboot: "running",
  suspend: "suspended",
  resume: "running",
  delete: "deleted",
};

const inFlight = new Set(["pending", "creating", "booting", "stopping", "rebooting", "suspending", "resuming", "migrating"]);

/**
 * Why `action` is refused for a vm in `state` with `desiredState`, as a sentence for the
 * person who asked; null when it may go ahead.
 */
export function refusalOf(action: VmAction, vm: { name: string; state: string; desiredState: string }): string | null {
  const { state } = vm;
  const refuse = (why: string) => `cannot ${action} vm ${vm.name}: ${why}`;
  if (state === "deleting" || state === "deleted" || vm.desiredState === "deleted") {
    return refuse("it is being deleted or already deleted; create a new vm instead");
  }
  if (action === "delete") return null;
  if (action === "stop") {
    if (state === "stopped") return refuse("it is already stopped");
    if (vm.desiredState === "stopped") return refuse(`a stop is already under way (it is ${state}); wait for it to finish`);
    if (state === "suspended") return refuse("it is suspended; resume it first, or delete it");
    return null;
  }
  if (inFlight.has(state)) return refuse(`it is ${state}; wait until that finishes, or stop it`);
  switch (action) {
    case "start":
      if (state === "stopped" || state === "failed") return null;
      if (state === "suspended") return refuse("it is suspended; resume it instead");
      return refuse(`it is already ${state}`);
    case "reboot":
    case "suspend":
      if (state === "running") return null;
      if (state === "suspended") return refuse(action === "suspend" ? "it is already suspended" : "it is suspended; resume it first");
      return refuse(`it is ${state}; start it first`);
    case "resume":
      if (state === "suspended") return null;
      if (state === "running") return refuse("it is already running");
      return refuse(`it is ${state}, not suspended; start it instead`);
  }
}
