import { describe, expect, it } from "vitest";
import { refusalOf, type VmAction } from "./vm-actions.ts";

const vm = (state: string, desiredState = state === "stopped" ? "stopped" : "running") => ({ name: "web-1", state, desiredState });

describe("refusalOf", () => {
  it.each<[VmAction, string, string | null]>([
    ["suspend", "stopped", "cannot suspend vm web-1: it is stopped; start it first"],
    ["suspend", "running", null],
    ["suspend", "suspended", "cannot suspend vm web-1: it is already suspended"],
    ["resume", "suspended", null],
    ["resume", "running", "cannot resume vm web-1: it is already running"],
    ["resume", "stopped", "cannot resume vm web-1: it is stopped, not suspended; start it instead"],
    ["start", "stopped", null],
    ["start", "failed", null],
    ["start", "running", "cannot start vm web-1: it is already running"],
    ["start", "suspended", "cannot start vm web-1: it is suspended; resume it instead"],
    ["start", "booting", "cannot start vm web-1: it is booting; wait until that finishes, or stop it"],
    ["reboot", "running", null],
    ["reboot", "stopped", "cannot reboot vm web-1: it is stopped; start it first"],
    ["stop", "booting", null],
    ["stop", "stopped", "cannot stop vm web-1: it is already stopped"],
    ["delete", "running", null],
    ["delete", "deleting", "cannot delete vm web-1: it is being deleted or already deleted; create a new vm instead"],
  ])("%s when %s", (action, state, expected) => {
    expect(refusalOf(action, vm(state))).toBe(expected);
  });

  it("refuses a second stop while the first is under way", () => {
    expect(refusalOf("stop", { name: "web-1", state: "running", desiredState: "stopped" })).toBe(
      "cannot stop vm web-1: a stop is already under way (it is running); wait for it to finish",
    );
  });
});
