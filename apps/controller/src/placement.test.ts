import { describe, expect, it } from "vitest";

import { type PlacementInput, type PlacementWorker, engineCpuCheck, placeVm } from "./placement.ts";

const now = new Date("2030-01-01T00:00:00Z");

function worker(id: string, more: Partial<PlacementWorker> = {}): PlacementWorker {
  return {
    id,
    status: "online",
    lastHeartbeatAt: new Date(now.getTime() - 1000),
    vcpusFree: 4,
    memoryMiBFree: 4096,
    accelerator: "tcg",
    cpuVendor: "GenuineIntel",
    cpuModelName: "Intel Xeon",
    cpuFlags: ["sse2", "avx2"],
    qemuVersion: "10.0.2",
    ...more,
  };
}

function input(more: Partial<PlacementInput>): PlacementInput {
  return {
    vm: { vcpus: 1, memoryMiB: 256, cpuModel: "qemu64" },
    workers: [],
    promised: [],
    now,
    workerTimeoutMs: 10_000,
    cpuCheck: engineCpuCheck,
    ...more,
  };
}

describe("placeVm", () => {
  it("waits when no worker is alive", () => {
    expect(placeVm(input({ workers: [] }))).toEqual({ ok: false, reason: "no worker alive; waiting for one" });
    const silent = worker("w1", { lastHeartbeatAt: new Date(now.getTime() - 11_000) });
    const offline = worker("w2", { status: "offline" });
    const draining = worker("w3", { status: "draining" });
    expect(placeVm(input({ workers: [silent, offline, draining] }))).toEqual({
      ok: false,
      reason: "no worker alive; waiting for one",
    });
  });

  it("resumes a guest state only on the asked-for worker, and only under its accelerator", () => {
    const workers = [worker("w1", { memoryMiBFree: 3072 }), worker("w2", { memoryMiBFree: 1024 }), worker("k1", { accelerator: "kvm", memoryMiBFree: 4096 })];
    const saved = { vcpus: 1, memoryMiB: 256, cpuModel: "qemu64", accelerator: "tcg" };
    expect(placeVm(input({ workers, vm: saved }))).toEqual({ ok: true, workerId: "w1" });
    expect(placeVm(input({ workers, vm: { ...saved, requiredWorkerId: "w2" } }))).toEqual({ ok: true, workerId: "w2" });
    expect(placeVm(input({ workers, vm: { ...saved, requiredWorkerId: "gone" } }))).toEqual({
      ok: false,
      reason: "worker gone, asked for, is not alive; waiting for it",
    });
    const refused = placeVm(input({ workers, vm: { ...saved, requiredWorkerId: "k1" } }));
    expect(refused.ok).toBe(false);
    expect(!refused.ok && refused.reason).toContain("The vm runs under tcg but the target host offers kvm");
  });

  it("spreads: the worker with the most free memory wins", () => {
    const workers = [worker("w1", { memoryMiBFree: 1024 }), worker("w2", { memoryMiBFree: 3072 }), worker("w3", { memoryMiBFree: 2048 })];
    expect(placeVm(input({ workers }))).toEqual({ ok: true, workerId: "w2" });
  });

  it("subtracts capacity promised to vms not yet in a heartbeat", () => {
    const workers = [worker("w1", { memoryMiBFree: 2048 }), worker("w2", { memoryMiBFree: 1536 })];
    const promised = [{ workerId: "w1", vcpus: 1, memoryMiB: 1024 }];
    expect(placeVm(input({ workers, promised }))).toEqual({ ok: true, workerId: "w2" });
  });

  it("says how much memory is missing", () => {
    const workers = [worker("w1", { memoryMiBFree: 2048 }), worker("w2", { memoryMiBFree: 1024 })];
    const vm = { vcpus: 1, memoryMiB: 4096, cpuModel: "qemu64" };
    expect(placeVm(input({ workers, vm }))).toEqual({
      ok: false,
      reason: "no worker has 4096 MiB free (largest free: 2048 MiB); waiting for capacity",
    });
  });

  it("says when vCPUs are missing", () => {
    const workers = [worker("w1", { vcpusFree: 2 })];
    const vm = { vcpus: 4, memoryMiB: 256, cpuModel: "qemu64" };
    expect(placeVm(input({ workers, vm }))).toEqual({
      ok: false,
      reason: "no worker with 256 MiB free has 4 vCPUs free (largest free: 2); waiting for capacity",
    });
  });

  it("prefers the worker that ran the vm before when it fits", () => {
    const workers = [worker("w1", { memoryMiBFree: 1024 }), worker("w2", { memoryMiBFree: 3072 })];
    const vm = { vcpus: 1, memoryMiB: 256, cpuModel: "qemu64", preferredWorkerId: "w1" };
    expect(placeVm(input({ workers, vm }))).toEqual({ ok: true, workerId: "w1" });
    const tooSmall = { ...vm, memoryMiB: 2048 };
    expect(placeVm(input({ workers, vm: tooSmall }))).toEqual({ ok: true, workerId: "w2" });
  });

  it("refuses a CPU model the engine does not know, saying why", () => {
    const vm = { vcpus: 1, memoryMiB: 256, cpuModel: "Pentium-9000" };
    const placement = placeVm(input({ workers: [worker("w1")], vm }));
    expect(placement.ok).toBe(false);
    expect(placement.ok === false && placement.reason).toMatch(/^no worker with room can run CPU model Pentium-9000 \(w1: CPU model 'Pentium-9000' is not one QEMU can present here/);
  });

  it("resumes a guest state on a worker with the same QEMU or a newer one only", () => {
    const saved = { vcpus: 1, memoryMiB: 256, cpuModel: "qemu64", accelerator: "tcg", saved: { qemuVersion: "10.0.2", memoryLayout: "exact" as const } };
    const on72 = worker("w1", { qemuVersion: "7.2.22", memoryMiBFree: 8192 });
    expect(placeVm(input({ workers: [on72, worker("w2")], vm: saved }))).toEqual({ ok: true, workerId: "w2" });
    const refused = placeVm(input({ workers: [on72], vm: saved }));
    expect(refused.ok === false && refused.reason).toMatch(
      /^no worker with room can load the vm's guest state, saved with QEMU 10\.0\.2 \(worker w1 runs QEMU 7\.2\.22, older than the 10\.0\.2 .* Choose a worker with QEMU 10\.0\.2 or newer, .* worker w1 runs QEMU 7\.2\.22, which under TCG loses guest writes/,
    );
    // A trimmed state saved on 7.2 resumes on 7.2 and on 10.
    const trimmed = { ...saved, saved: { qemuVersion: "7.2.22", memoryLayout: "trimmed-8k" as const } };
    expect(placeVm(input({ workers: [on72], vm: trimmed }))).toEqual({ ok: true, workerId: "w1" });
    expect(placeVm(input({ workers: [worker("w2")], vm: trimmed }))).toEqual({ ok: true, workerId: "w2" });
  });

  it("places a named model on a KVM worker only when its CPU has the model's features", () => {
    const vm = { vcpus: 1, memoryMiB: 256, cpuModel: "Haswell-noTSX" };
    const old = worker("w1", { accelerator: "kvm", cpuFlags: ["fpu", "sse2"] });
    const placement = placeVm(input({ workers: [old], vm }));
    expect(placement.ok === false && placement.reason).toMatch(/w1: The target host's CPU lacks \d+ features of the vm's Haswell-noTSX model/);
    expect(placeVm(input({ workers: [old, worker("w2", { accelerator: "tcg" })], vm }))).toEqual({ ok: true, workerId: "w2" });
  });
});
