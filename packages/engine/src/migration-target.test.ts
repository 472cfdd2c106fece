import { describe, expect, it } from "vitest";

import { type MigrationHost, checkMigrationTarget, chooseMigrationTarget } from "./migration-target.ts";

const vm = { id: "vm-1", cpuModel: "qemu64", accelerator: "tcg", vcpus: 1, memoryMiB: 256 };
const host = (id: string, more: Partial<MigrationHost> = {}): MigrationHost => ({
  id,
  alive: true,
  status: "online",
  accelerator: "tcg",
  cpuFlags: [],
  vcpusFree: 2,
  memoryMiBFree: 1024,
  sharedStorage: "/srv/ferry-disks",
  qemuVersion: "10.0.2",
  ...more,
});
const source = host("w1");

describe("checkMigrationTarget", () => {
  it.each([
    ["a worker sharing the storage with room", host("w2"), []],
    ["the vm's own worker", host("w1"), ["vm vm-1 already runs on worker w1. Choose another worker."]],
    ["a draining worker", host("w2", { status: "draining" }), ["Worker w2 is draining and takes no vms. Choose an online worker."]],
    ["a silent worker", host("w2", { alive: false }), ["Worker w2 is not responding and takes no vms. Choose an online worker."]],
    [
      "a worker on other storage",
      host("w2", { sharedStorage: "/elsewhere" }),
      ["Worker w2 does not share storage with worker w1 (/elsewhere vs /srv/ferry-disks). Choose a worker with FERRY_WORKER_SHARED_STORAGE=/srv/ferry-disks."],
    ],
    [
      "another accelerator",
      host("w2", { accelerator: "kvm" }),
      ["The vm runs under tcg but the target host offers kvm; a guest cannot move between accelerators. Choose a host with tcg."],
    ],
    [
      "too little memory and vCPUs",
      host("w2", { memoryMiBFree: 100, vcpusFree: 0 }),
      [
        "The vm needs 1 vCPUs but the target host has 0 free. Choose a host with more free vCPUs.",
        "The vm needs 256 MiB of memory but the target host has 100 MiB free. Choose a host with more free memory.",
      ],
    ],
  ])("%s", (_name, target, reasons) => {
    const check = checkMigrationTarget(vm, source, target);
    expect(check.ok ? [] : check.reasons).toEqual(reasons);
  });

  describe("QEMU versions", () => {
    const exact = { ...vm, memoryLayout: "exact" as const };
    const trimmed = { ...vm, memoryLayout: "trimmed-8k" as const };
    const on72 = host("w2", { qemuVersion: "7.2.22" });
    it.each([
      ["a trimmed vm from 7.2 to 10", trimmed, host("w1", { qemuVersion: "7.2.22" }), host("w2"), "ok"],
      ["an exact vm from 10 to a newer 10", exact, source, host("w2", { qemuVersion: "10.1.0" }), "ok"],
      ["a vm recorded before layouts (trimmed) from 7.2 to 7.2", vm, host("w1", { qemuVersion: "7.2.22" }), on72, "ok"],
      ["a trimmed vm from 10 back to 7.2", trimmed, source, on72, "older"],
      ["an exact vm from 9.0 to 7.2", exact, host("w1", { qemuVersion: "9.0.0" }), on72, "older+exact"],
    ] as const)("%s", (_what, guest, from, to, expected) => {
      const check = checkMigrationTarget(guest, from, to);
      const reasons = check.ok ? [] : check.reasons;
      if (expected === "ok") return expect(reasons).toEqual([]);
      expect(reasons[0]).toBe(
        `Worker w2 runs QEMU 7.2.22, older than the ${from.qemuVersion} the vm's state comes from; a guest moves only to the same QEMU or a newer one. Choose a worker with QEMU ${from.qemuVersion} or newer, or upgrade that worker's QEMU (infra/setup.sh).`,
      );
      expect(reasons.length).toBe(expected === "older" ? 1 : 2);
    });

    it("never sends a TCG vm with exact RAM to a QEMU before 9.0, saying why", () => {
      // Not reachable from a real 7.2 source (it boots vms trimmed), but a recorded layout is a fact to respect.
      const check = checkMigrationTarget(exact, host("w1", { qemuVersion: "7.2.22" }), on72);
      expect(check.ok ? [] : check.reasons).toEqual([
        "Worker w2 runs QEMU 7.2.22, which under TCG loses guest writes during live migration when the guest's RAM is exact (fixed in QEMU 9.0.0), and the vm was booted with exact RAM. Choose a worker with QEMU 9.0.0 or newer, upgrade that worker's QEMU (infra/setup.sh), or stop the vm and start it there afresh.",
      ]);
      // KVM tracks dirty pages itself: exact RAM moves between 7.2 workers.
      const kvm = checkMigrationTarget({ ...exact, accelerator: "kvm" }, host("w1", { accelerator: "kvm", qemuVersion: "7.2.22" }), { ...on72, accelerator: "kvm" });
      expect((kvm.ok ? [] : kvm.reasons).filter((reason) => reason.includes("QEMU"))).toEqual([]);
    });
  });

  it("refuses every target of a source on local disks", () => {
    const check = checkMigrationTarget(vm, host("w1", { sharedStorage: null }), host("w2", { sharedStorage: null }));
    expect(check.ok).toBe(false);
    expect(check.ok ? [] : check.reasons).toEqual([
      "Worker w1 keeps vm disks on local storage, so its guests cannot live-migrate. Set FERRY_WORKER_SHARED_STORAGE on the workers that should share disks.",
    ]);
  });
});

describe("chooseMigrationTarget", () => {
  it("takes the compatible worker with the most free memory", () => {
    const workers = [source, host("w2", { memoryMiBFree: 512 }), host("w3", { memoryMiBFree: 900 }), host("w4", { memoryMiBFree: 4096, sharedStorage: null })];
    expect(chooseMigrationTarget(vm, source, workers)).toEqual({ ok: true, workerId: "w3" });
  });

  it("takes the requested worker, or says why not", () => {
    const workers = [source, host("w2"), host("w3", { memoryMiBFree: 0 })];
    expect(chooseMigrationTarget(vm, source, workers, "w2")).toEqual({ ok: true, workerId: "w2" });
    expect(chooseMigrationTarget(vm, source, workers, "w3")).toEqual({
      ok: false,
      reason: "cannot migrate vm vm-1 to worker w3: The vm needs 256 MiB of memory but the target host has 0 MiB free. Choose a host with more free memory.",
    });
    expect(chooseMigrationTarget(vm, source, workers, "w9")).toEqual({ ok: false, reason: "worker w9 does not exist. Choose one of: w1, w2, w3." });
  });

  it("names each refusal when nothing fits", () => {
    expect(chooseMigrationTarget(vm, source, [source])).toEqual({ ok: false, reason: "no worker can take vm vm-1 from worker w1: it is the only worker" });
    expect(chooseMigrationTarget(vm, source, [source, host("w2", { status: "draining" })])).toEqual({
      ok: false,
      reason: "no worker can take vm vm-1 from worker w1 (w2: Worker w2 is draining and takes no vms. Choose an online worker.)",
    });
  });
});
