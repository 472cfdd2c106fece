import { describe, expect, it } from "vitest";

import { type PublishingVersion, type PublishingVm, publishDecision } from "./labs.ts";

const version: PublishingVersion = { sourceVmId: "vm-1", sourceGuestStateId: null, publishWorkerId: null };
const vm = (state: string, more: Partial<PublishingVm> = {}): PublishingVm => ({
  id: "vm-1",
  state,
  desiredState: "suspended",
  stateReason: null,
  guestStateId: null,
  ...more,
});
const workers = [
  { id: "w1", memoryMiBFree: 512 },
  { id: "w2", memoryMiBFree: 768 },
];

describe("publishDecision", () => {
  it.each([
    ["the vm still runs, its suspend asked", version, vm("running"), workers, { kind: "wait" }],
    ["the vm is suspending", version, vm("suspending"), workers, { kind: "wait" }],
    ["the vm is suspended: the worker with most free memory copies", version, vm("suspended", { guestStateId: "s1" }), workers, { kind: "send", workerId: "w2", stateId: "s1" }],
    [
      "a copy was asked of a worker still alive: the same one, the same state",
      { ...version, sourceGuestStateId: "s1", publishWorkerId: "w1" },
      vm("running", { desiredState: "running", guestStateId: "s2" }),
      workers,
      { kind: "send", workerId: "w1", stateId: "s1" },
    ],
    [
      "the copying worker is gone: another one",
      { ...version, sourceGuestStateId: "s1", publishWorkerId: "w9" },
      vm("suspended", { guestStateId: "s1" }),
      workers,
      { kind: "send", workerId: "w2", stateId: "s1" },
    ],
    ["suspended but no worker alive", version, vm("suspended", { guestStateId: "s1" }), [], { kind: "wait" }],
  ])("%s", (_what, v, source, alive, expected) => {
    expect(publishDecision(v, source, alive)).toEqual(expected);
  });

  it.each([
    ["the vm is gone", null, "vm vm-1 was deleted before its guest state was published"],
    ["the vm is being deleted", vm("running", { desiredState: "deleted" }), "vm vm-1 was deleted before its guest state was published"],
    [
      "the suspend was refused (the vm runs on, wanted running)",
      vm("running", { desiredState: "running", stateReason: "suspend failed: storage unreachable" }),
      "vm vm-1 is running (suspend failed: storage unreachable), not suspended",
    ],
    ["the vm is stopped", vm("stopped", { desiredState: "stopped" }), "vm vm-1 is stopped, not suspended, so it has no guest state to publish"],
  ])("fails when %s", (_what, source, reason) => {
    const decision = publishDecision(version, source, workers);
    expect(decision.kind).toBe("fail");
    expect(decision.kind === "fail" && decision.reason).toContain(reason);
  });
});
