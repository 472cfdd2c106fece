// The reconcile decision table: given a vm's desired and actual state and whether its worker is
// alive, what should the controller do next? Pure, so every rule has a table test; the
// reconciler (reconciler.ts) carries the decision out against the database and the queues.
import type { DesiredState, VmState, WorkerJobName } from "@ferry/jobs";

/** The fields of a Vm row the decision reads. */
export interface VmSnapshot {
  id: string;
  desiredState: DesiredState;
  state: VmState;
  workerId: string | null;
  rebootSeq: number;
  /** the action in flight; the API sets it when a person asks (e.g. "start" on a failed vm) */
  operation: string | null;
  stateChangedAt: Date;
  /** the newest committed guest state (in object storage, resumable on any worker) */
  guestStateId: string | null;
  /** set on a lab clone: the template version whose golden point it continues from */
  sourceTemplateVersionId?: string | null;
}

/** The vm's worker: none assigned, heartbeating, or silent past the timeout (or offline). */
export type WorkerLiveness = "none" | "alive" | "gone";

export type Decision =
  /** nothing to do now */
  | { kind: "wait" }
  /** choose a worker and send vm.start (state → creating), or vm.resume for a suspended vm (state → resuming) */
  | { kind: "place"; resume?: true }
  /** send a job to the vm's worker and record the transitional state */
  | { kind: "send"; job: WorkerJobName; state: VmState; resend: boolean }
  /** write a state without involving a worker; `release` clears the vm's worker */
  | { kind: "mark"; state: VmState; reason: string | null; release: boolean };

/** How long a transitional state may last before its job is sent again. */
export const transitionDeadlineMs: Partial<Record<VmState, number>> = {
  creating: 60_000,
  booting: 90_000,
  stopping: 60_000,
  rebooting: 60_000,
  suspending: 90_000,
  resuming: 90_000,
  deleting: 60_000,
};

/** States in which a QEMU process should exist on the vm's worker. */
export const guestStates: ReadonlySet<VmState> = new Set<VmState>([
  "creating",
  "booting",
  "running",
  "stopping",
  "rebooting",
  "suspending",
  "resuming",
  "migrating",
  "deleting",
]);

/** The job that drives each transitional state, re-sent when the state outlives its deadline. */
const jobForState: Partial<Record<VmState, WorkerJobName>> = {
  creating: "vm.start",
  booting: "vm.start",
  stopping: "vm.stop",
  rebooting: "vm.reboot",
  suspending: "vm.suspend",
  resuming: "vm.resume",
  deleting: "vm.delete",
};

const send = (job: WorkerJobName, state: VmState): Decision => ({ kind: "send", job, state, resend: false });
const mark = (state: VmState, reason: string | null, release = false): Decision => ({ kind: "mark", state, reason, release });
const wait: Decision = { kind: "wait" };

/** Decide the next step for one vm. Rules are checked top to bottom; the first match wins. */
export function decide(vm: VmSnapshot, worker: WorkerLiveness, now: Date): Decision {
  const { desiredState: desired, state } = vm;
  if (state === "deleted") return wait;

  // 1. The guest's worker is gone: its QEMU died with it (pdeathsig). Never leave the vm stuck.
  if (worker === "gone" && guestStates.has(state)) {
    const lost = `worker ${vm.workerId} stopped responding while the vm was ${state}`;
    if (desired === "deleted") return mark("deleted", null, true);
    // Its last committed guest state is in object storage: the vm is suspended there, never a
    // half-written state (an upload without its manifest does not exist for a reader).
    if ((state === "suspending" || state === "resuming") && vm.guestStateId !== null) {
      return mark("suspended", `${lost}; it resumes from its guest state ${vm.guestStateId}`, true);
    }
    // A lab clone's disk lived on that worker, so booting it afresh would lose the point it
    // continues from: it goes back to its newest guest state, else to its golden point.
    if (vm.sourceTemplateVersionId && desired !== "stopped") {
      return mark("suspended", `${lost}; it resumes from ${vm.guestStateId !== null ? `its guest state ${vm.guestStateId}` : "its template's golden point"}`, true);
    }
    if (desired === "running") return mark("pending", `${lost}; placing it again`, true);
    if (desired === "stopped") return mark("stopped", `${lost}; the guest was lost`, true);
    return mark("failed", `${lost}; the guest was lost`, true);
  }

  // 2. Deletion: a vm never placed, or whose worker is gone, has nothing left to clean up.
  if (desired === "deleted") {
    if (worker !== "alive") return mark("deleted", null, true);
    if (state !== "deleting") return send("vm.delete", "deleting");
  }

  // 3. Desired state differs from actual: start the action that closes the gap.
  if (desired === "running") {
    if (state === "pending") return { kind: "place" };
    // A failed vm is started again when it failed by losing its worker (released), or when
    // someone asked to start it; a guest that crashed on its own stays failed until then.
    if (state === "stopped" || (state === "failed" && (vm.workerId === null || vm.operation === "start"))) return { kind: "place" };
    // Any compatible worker can fetch the guest state from object storage.
    if (state === "suspended") return { kind: "place", resume: true };
    if (state === "running" && vm.rebootSeq > 0 && worker === "alive") return send("vm.reboot", "rebooting");
  }
  if (desired === "stopped") {
    if (state === "pending" || state === "failed") return mark("stopped", null, worker !== "alive");
    // The guest state stays in object storage (kept with the vm's others); the disk is in it.
    if (state === "suspended" && worker !== "alive") return mark("stopped", "stopped while suspended: the next start boots afresh", true);
    if (["creating", "booting", "running", "rebooting", "resuming", "suspended"].includes(state)) return send("vm.stop", "stopping");
  }
  if (desired === "suspended" && state === "running") return send("vm.suspend", "suspending");

  // 4. A transitional state past its deadline with a live worker: send its job again. The job
  //    id is the same, so a copy still waiting in the queue absorbs the duplicate.
  const deadline = transitionDeadlineMs[state];
  const job = jobForState[state];
  if (deadline !== undefined && job !== undefined && worker === "alive" && now.getTime() - vm.stateChangedAt.getTime() > deadline) {
    return { kind: "send", job, state, resend: true };
  }
  return wait;
}
