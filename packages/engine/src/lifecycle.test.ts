import { describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { assertTransition, canTransition, vmLifecycleStates, type VmLifecycleState } from "./lifecycle.ts";

// The whole table, written out: every pair not listed here must be refused.
const legal: ReadonlyArray<readonly [VmLifecycleState, VmLifecycleState]> = [
  ["creating", "booting"],
  ["creating", "resuming"],
  ["creating", "stopped"],
  ["booting", "running"],
  ["booting", "stopped"],
  ["running", "booting"],
  ["running", "suspending"],
  ["running", "migrating"],
  ["running", "stopped"],
  ["suspending", "suspended"],
  ["suspending", "running"],
  ["suspended", "resuming"],
  ["suspended", "suspending"],
  ["suspended", "stopped"],
  ["resuming", "running"],
  ["resuming", "suspended"],
  ["migrating", "running"],
  ["migrating", "stopped"],
  ...vmLifecycleStates.filter((s) => s !== "failed").map((s) => [s, "failed"] as const),
];

describe("canTransition", () => {
  const allPairs = vmLifecycleStates.flatMap((from) => vmLifecycleStates.map((to) => [from, to] as const));
  it.each(allPairs)("%s → %s", (from, to) => {
    const expected = legal.some(([f, t]) => f === from && t === to);
    expect(canTransition(from, to)).toBe(expected);
  });

  it("treats stopped and failed as terminal for a QEMU process", () => {
    for (const to of vmLifecycleStates) {
      expect(canTransition("stopped", to)).toBe(to === "failed");
      expect(canTransition("failed", to)).toBe(false);
    }
  });
});

describe("assertTransition", () => {
  it.each<[VmLifecycleState, VmLifecycleState, string, string]>([
    ["stopped", "suspending", "suspend", "cannot suspend vm 42: it is stopped; start it first"],
    ["running", "resuming", "resume", "cannot resume vm 42: it is running; suspend or stop it first"],
    ["suspended", "migrating", "migrate", "cannot migrate vm 42: it is suspended; resume it first"],
    ["booting", "suspending", "suspend", "cannot suspend vm 42: it is booting; wait until it is running"],
    ["migrating", "suspending", "suspend", "cannot suspend vm 42: it is migrating; wait for the migration to finish"],
    ["failed", "booting", "start", "cannot start vm 42: it is failed; start it again, which creates a new QEMU process"],
  ])("refuses %s → %s (%s) by name", (from, to, action, message) => {
    try {
      assertTransition("42", from, to, action);
      expect.unreachable();
    } catch (error) {
      expect(error).toBeInstanceOf(EngineError);
      expect((error as EngineError).code).toBe("illegal_transition");
      expect((error as EngineError).message).toBe(message);
      expect((error as EngineError).details).toEqual({ vmId: "42", from, to, action });
    }
  });

  it.each(legal)("allows %s → %s", (from, to) => {
    expect(() => assertTransition("42", from, to, "act")).not.toThrow();
  });
});
