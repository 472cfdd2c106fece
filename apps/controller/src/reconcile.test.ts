import type { DesiredState, VmState } from "@ferry/jobs";
import { describe, expect, it } from "vitest";

import { type Decision, type WorkerLiveness, decide } from "./reconcile.ts";

const now = new Date("2030-01-01T00:00:00Z");
const secondsAgo = (s: number) => new Date(now.getTime() - s * 1000);

function vm(
  desiredState: DesiredState,
  state: VmState,
  more: { workerId?: string | null; rebootSeq?: number; age?: number; operation?: string; guestStateId?: string; sourceTemplateVersionId?: string } = {},
) {
  return {
    id: "vm-1",
    desiredState,
    state,
    workerId: more.workerId === undefined ? "w1" : more.workerId,
    rebootSeq: more.rebootSeq ?? 0,
    operation: more.operation ?? null,
    stateChangedAt: secondsAgo(more.age ?? 1),
    guestStateId: more.guestStateId ?? null,
    sourceTemplateVersionId: more.sourceTemplateVersionId ?? null,
  };
}

const place: Decision = { kind: "place" };
const wait: Decision = { kind: "wait" };
const send = (job: string, state: VmState, resend = false) => ({ kind: "send", job, state, resend });
const mark = (state: VmState, reason: string | null, release = false) => ({ kind: "mark", state, reason, release });

describe("decide", () => {
  const table: [string, ReturnType<typeof vm>, WorkerLiveness, unknown][] = [
    ["a new vm is placed", vm("running", "pending", { workerId: null }), "none", place],
    ["a stopped vm asked to run is placed", vm("running", "stopped"), "alive", place],
    ["a stopped vm whose worker is gone is placed elsewhere", vm("running", "stopped"), "gone", place],
    ["a vm released after losing its worker is placed again", vm("running", "failed", { workerId: null }), "none", place],
    ["a vm that crashed on a live worker stays failed", vm("running", "failed"), "alive", wait],
    ["a failed vm someone asked to start is placed", vm("running", "failed", { operation: "start" }), "alive", place],
    ["running and desired running: nothing to do", vm("running", "running"), "alive", wait],
    ["a reboot request sends vm.reboot", vm("running", "running", { rebootSeq: 1 }), "alive", send("vm.reboot", "rebooting")],
    ["stop a running vm", vm("stopped", "running"), "alive", send("vm.stop", "stopping")],
    ["stop a booting vm", vm("stopped", "booting"), "alive", send("vm.stop", "stopping")],
    ["stop a suspended vm discards its guest state", vm("stopped", "suspended"), "alive", send("vm.stop", "stopping")],
    ["stopping a vm never placed needs no worker", vm("stopped", "pending", { workerId: null }), "none", mark("stopped", null, true)],
    ["stopping a failed vm", vm("stopped", "failed"), "alive", mark("stopped", null, false)],
    ["suspend a running vm", vm("suspended", "running"), "alive", send("vm.suspend", "suspending")],
    ["suspending waits for a booting vm to run", vm("suspended", "booting"), "alive", wait],
    ["resume a suspended vm: placed on any compatible worker", vm("running", "suspended", { workerId: null, guestStateId: "s1" }), "none", { kind: "place", resume: true }],
    ["a suspended vm whose worker is gone resumes elsewhere", vm("running", "suspended", { guestStateId: "s1" }), "gone", { kind: "place", resume: true }],
    ["a suspended vm asked to stop needs no worker", vm("stopped", "suspended", { workerId: null }), "none", mark("stopped", "stopped while suspended: the next start boots afresh", true)],
    [
      "a vm suspending on a silent worker is suspended at its previous guest state",
      vm("suspended", "suspending", { guestStateId: "s1" }),
      "gone",
      mark("suspended", "worker w1 stopped responding while the vm was suspending; it resumes from its guest state s1", true),
    ],
    [
      "a vm resuming on a silent worker goes back to suspended, to be placed again",
      vm("running", "resuming", { guestStateId: "s1" }),
      "gone",
      mark("suspended", "worker w1 stopped responding while the vm was resuming; it resumes from its guest state s1", true),
    ],
    ["delete a running vm", vm("deleted", "running"), "alive", send("vm.delete", "deleting")],
    ["delete a vm never placed at once", vm("deleted", "pending", { workerId: null }), "none", mark("deleted", null, true)],
    ["delete a stopped vm whose worker is gone at once", vm("deleted", "stopped"), "gone", mark("deleted", null, true)],
    ["a deleted vm is left alone", vm("deleted", "deleted"), "none", wait],
    [
      "a vm booting on a silent worker is placed again",
      vm("running", "booting"),
      "gone",
      mark("pending", "worker w1 stopped responding while the vm was booting; placing it again", true),
    ],
    [
      "a lab clone running on a silent worker goes back to its golden point, not to a fresh boot",
      vm("running", "running", { sourceTemplateVersionId: "v1" }),
      "gone",
      mark("suspended", "worker w1 stopped responding while the vm was running; it resumes from its template's golden point", true),
    ],
    [
      "a lab clone resuming its golden point on a silent worker is placed from it again",
      vm("running", "resuming", { sourceTemplateVersionId: "v1" }),
      "gone",
      mark("suspended", "worker w1 stopped responding while the vm was resuming; it resumes from its template's golden point", true),
    ],
    [
      "a lab clone with a guest state of its own goes back to that state",
      vm("running", "running", { sourceTemplateVersionId: "v1", guestStateId: "s2" }),
      "gone",
      mark("suspended", "worker w1 stopped responding while the vm was running; it resumes from its guest state s2", true),
    ],
    [
      "a lab clone stopping on a silent worker is stopped",
      vm("stopped", "stopping", { sourceTemplateVersionId: "v1" }),
      "gone",
      mark("stopped", "worker w1 stopped responding while the vm was stopping; the guest was lost", true),
    ],
    [
      "a vm stopping on a silent worker is stopped",
      vm("stopped", "stopping"),
      "gone",
      mark("stopped", "worker w1 stopped responding while the vm was stopping; the guest was lost", true),
    ],
    [
      "a vm suspending on a silent worker failed",
      vm("suspended", "suspending"),
      "gone",
      mark("failed", "worker w1 stopped responding while the vm was suspending; the guest was lost", true),
    ],
    ["a fresh transitional state waits", vm("running", "booting", { age: 5 }), "alive", wait],
    ["booting past its deadline re-sends vm.start", vm("running", "booting", { age: 600 }), "alive", send("vm.start", "booting", true)],
    ["creating past its deadline re-sends vm.start", vm("running", "creating", { age: 600 }), "alive", send("vm.start", "creating", true)],
    ["stopping past its deadline re-sends vm.stop", vm("stopped", "stopping", { age: 600 }), "alive", send("vm.stop", "stopping", true)],
    ["deleting past its deadline re-sends vm.delete", vm("deleted", "deleting", { age: 600 }), "alive", send("vm.delete", "deleting", true)],
  ];

  it.each(table)("%s", (_name, snapshot, worker, expected) => {
    expect(decide(snapshot, worker, now)).toEqual(expected);
  });
});
