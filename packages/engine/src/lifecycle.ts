// The lifecycle of a vm's QEMU process, as a table. A transition not listed is refused by
// name. `stopped` and `failed` are terminal for a process: starting the vm again creates a
// new process, which begins at `creating`.
import { EngineError } from "./errors.ts";

export const vmLifecycleStates = [
  "creating",
  "booting",
  "running",
  "suspending",
  "suspended",
  "resuming",
  "migrating",
  "stopped",
  "failed",
] as const;
export type VmLifecycleState = (typeof vmLifecycleStates)[number];

// `failed` is reachable from every state and is added by canTransition, not listed here.
const transitions: Record<VmLifecycleState, readonly VmLifecycleState[]> = {
  // A new process either boots the guest or loads a guest state (restore, incoming migration).
  creating: ["booting", "resuming", "stopped"],
  booting: ["running", "stopped"],
  // running → booting is a guest reset inside the same process.
  running: ["booting", "suspending", "migrating", "stopped"],
  // suspending → running: the save failed and the guest carries on.
  suspending: ["suspended", "running"],
  // suspended → stopped discards the guest state; suspended → suspending saves the paused
  // guest again (its devices alone, beside a memory file: Engine.shareMemory).
  suspended: ["resuming", "suspending", "stopped"],
  // resuming → suspended: the load failed (the guest state is still there to retry), or the
  // state was loaded to be saved again without running the guest.
  resuming: ["running", "suspended"],
  // migrating → running: the migration failed or was cancelled and the source carries on;
  // migrating → stopped: it completed and the vm now runs on the destination.
  migrating: ["running", "stopped"],
  stopped: [],
  failed: [],
};

// What the caller can do about a refusal, by the state the vm is in.
const nextStep: Record<VmLifecycleState, string> = {
  creating: "wait until it is running",
  booting: "wait until it is running",
  running: "suspend or stop it first",
  suspending: "wait for the suspend to finish",
  suspended: "resume it first",
  resuming: "wait for the resume to finish",
  migrating: "wait for the migration to finish",
  stopped: "start it first",
  failed: "start it again, which creates a new QEMU process",
};

/** Whether a vm's QEMU process may move from one lifecycle state to another. */
export function canTransition(from: VmLifecycleState, to: VmLifecycleState): boolean {
  if (to === "failed") return from !== "failed";
  return transitions[from].includes(to);
}

/** Refuse an action that would make an illegal transition, e.g. "cannot suspend vm 42: it is stopped; start it first". */
export function assertTransition(vmId: string, from: VmLifecycleState, to: VmLifecycleState, action: string): void {
  if (canTransition(from, to)) return;
  throw new EngineError("illegal_transition", `cannot ${action} vm ${vmId}: it is ${from}; ${nextStep[from]}`, {
    vmId,
    from,
    to,
    action,
  });
}
