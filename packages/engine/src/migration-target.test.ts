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
