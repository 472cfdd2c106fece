import { describe, expect, it } from "vitest";

import { coldBootMemoryLayout, compareQemuVersions, qemuMoveRefusals } from "./qemu-version.ts";

describe("compareQemuVersions", () => {
  it.each([
    ["7.2.22", "10.0.2", -1],
    ["10.0.2", "7.2.22", 1],
    ["10.0.2", "10.0.2", 0],
    ["9.0", "9.0.0", 0],
    ["8.2.9", "9.0.0", -1],
    ["10.0.10", "10.0.2", 1],
  ] as const)("%s against %s", (a, b, sign) => {
    expect(Math.sign(compareQemuVersions(a, b))).toBe(sign);
  });
});

describe("coldBootMemoryLayout", () => {
  it.each([
    ["tcg", "7.2.22", "trimmed-8k"],
    ["tcg", "8.2.9", "trimmed-8k"],
    ["tcg", "9.0.0", "exact"],
    ["tcg", "10.0.2", "exact"],
    ["kvm", "7.2.22", "exact"],
  ] as const)("under %s on QEMU %s: %s", (accelerator, version, layout) => {
    expect(coldBootMemoryLayout(accelerator, version)).toBe(layout);
  });
});

describe("qemuMoveRefusals", () => {
  const target = (qemuVersion: string) => ({ name: "Worker w2", qemuVersion });
  it("lets a guest move to the same QEMU or a newer one", () => {
    expect(qemuMoveRefusals({ qemuVersion: "7.2.22", accelerator: "tcg", memoryLayout: "trimmed-8k" }, target("7.2.22"))).toEqual([]);
    expect(qemuMoveRefusals({ qemuVersion: "7.2.22", accelerator: "tcg", memoryLayout: "trimmed-8k" }, target("10.0.2"))).toEqual([]);
    expect(qemuMoveRefusals({ qemuVersion: "10.0.2", accelerator: "tcg", memoryLayout: "exact" }, target("10.0.2"))).toEqual([]);
  });

  it("refuses an older QEMU, naming the worker, both versions and what to do", () => {
    expect(qemuMoveRefusals({ qemuVersion: "10.0.2", accelerator: "kvm", memoryLayout: "exact" }, target("7.2.22"))).toEqual([
      "Worker w2 runs QEMU 7.2.22, older than the 10.0.2 the vm's state comes from; a guest moves only to the same QEMU or a newer one. Choose a worker with QEMU 10.0.2 or newer, or upgrade that worker's QEMU (infra/setup.sh).",
    ]);
  });

  it("refuses a QEMU before 9.0 for a TCG guest with exact RAM, whatever its state's version", () => {
    const reasons = qemuMoveRefusals({ qemuVersion: "7.2.22", accelerator: "tcg", memoryLayout: "exact" }, target("7.2.22"));
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toContain("Worker w2 runs QEMU 7.2.22, which under TCG loses guest writes during live migration when the guest's RAM is exact (fixed in QEMU 9.0.0)");
    expect(reasons[0]).toContain("or stop the vm and start it there afresh");
  });

  it("takes a guest without a recorded layout as trimmed under TCG and exact under KVM", () => {
    expect(qemuMoveRefusals({ qemuVersion: "7.2.22", accelerator: "tcg" }, target("7.2.22"))).toEqual([]);
    expect(qemuMoveRefusals({ qemuVersion: "7.2.22", accelerator: "kvm" }, target("7.2.22"))).toEqual([]);
  });
});
