import { describe, expect, it } from "vitest";

import { guestsToFence } from "./fence.ts";

describe("guestsToFence: which local guests a worker kills when it finds it was counted gone", () => {
  const guest = (vmId: string, generation = 3) => ({ vmId, generation });
  const row = (id: string, workerId: string | null, generation = 3) => ({ id, workerId, generation });

  it("keeps a guest whose vm is still placed here at the generation it runs", () => {
    expect(guestsToFence("w1", [guest("a")], [row("a", "w1")])).toEqual([]);
  });

  it("kills a guest whose vm the controller placed on another worker", () => {
    expect(guestsToFence("w1", [guest("a")], [row("a", "w2")])).toEqual([{ vmId: "a", reason: "the vm is placed on worker w2 now" }]);
  });

  it("kills a guest whose vm the controller released and has not placed yet", () => {
    expect(guestsToFence("w1", [guest("a")], [row("a", null)])).toEqual([{ vmId: "a", reason: "the vm is placed on no worker now" }]);
  });

  it("kills a guest whose vm row is gone", () => {
    expect(guestsToFence("w1", [guest("a")], [])).toEqual([{ vmId: "a", reason: "the vm no longer exists" }]);
  });

  it("kills a guest whose vm's generation moved on, even when the row still names this worker", () => {
    expect(guestsToFence("w1", [guest("a", 3)], [row("a", "w1", 4)])).toEqual([
      { vmId: "a", reason: "the vm's generation moved on to 4 (this guest is generation 3)" },
    ]);
  });

  it("decides each guest on its own row", () => {
    const rows = [row("a", "w1"), row("b", "w2"), row("c", "w1", 2)];
    expect(guestsToFence("w1", [guest("a"), guest("b"), guest("c")], rows).map((fenced) => fenced.vmId)).toEqual(["b"]);
  });
});
