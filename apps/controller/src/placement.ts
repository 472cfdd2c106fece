// Placement: which worker should run a vm. Pure: the caller loads workers and vms, this
// decides. Workers only report their free capacity every few seconds, so vms placed since a
// worker's last heartbeat are subtracted here ("promised"), or a burst of creates would all
// land on the same worker.
import { type MemoryLayout, checkCompatibility, qemuMoveRefusals } from "@ferry/engine";

/** A worker as placement sees it (a Worker row). */
export interface PlacementWorker {
  id: string;
  status: string;
  lastHeartbeatAt: Date;
  vcpusFree: number;
  memoryMiBFree: number;
  accelerator: string;
  cpuVendor: string;
  cpuModelName: string;
  cpuFlags: string[];
  qemuVersion: string;
}

/** What a vm asks of its worker. */
export interface PlacementRequest {
  vcpus: number;
  memoryMiB: number;
  cpuModel: string;
  /** the worker that ran it last (its disk is there); chosen when it fits */
  preferredWorkerId?: string | null;
  /** a resume asked for this worker (POST /vms/{id}/resume {workerId}): only it is considered */
  requiredWorkerId?: string | null;
  /** a saved guest state's accelerator: it loads only under the same one */
  accelerator?: string | null;
  /** a saved guest state's QEMU and memory layout: it loads only on the same QEMU or a newer one */
  saved?: { qemuVersion: string; memoryLayout: MemoryLayout | undefined } | null;
}

/** Capacity held by a vm placed on a worker but not yet counted in that worker's heartbeat. */
export interface PromisedCapacity {
  workerId: string;
  vcpus: number;
  memoryMiB: number;
}

/** Whether a worker's CPU can run a guest CPU model (the engine's compatibility rules). */
export type CpuCheck = (
  cpuModel: string,
  worker: PlacementWorker,
  savedAccelerator?: string | null,
) => { ok: true } | { ok: false; reasons: string[] };

/**
 * The engine's compatibility rules for a fresh boot: the guest takes the worker's accelerator
 * (only a saved or migrating guest is tied to one), and capacity is left to placeVm, which
 * also counts promised capacity, so the engine is asked about the CPU model alone.
 */
export const engineCpuCheck: CpuCheck = (cpuModel, worker, savedAccelerator) => {
  const accelerator = worker.accelerator === "kvm" ? "kvm" : "tcg";
  const guestAccelerator = savedAccelerator === "kvm" || savedAccelerator === "tcg" ? savedAccelerator : accelerator;
  const result = checkCompatibility(
    { cpuModel, accelerator: guestAccelerator, vcpus: 0, memoryMiB: 0, machineType: "" },
    { accelerator, cpuFlags: worker.cpuFlags, freeVcpus: 0, freeMemoryMiB: 0 },
  );
  return result.ok ? result : { ok: false, reasons: result.reasons };
};

export interface PlacementInput {
  vm: PlacementRequest;
  workers: PlacementWorker[];
  promised: PromisedCapacity[];
  now: Date;
  workerTimeoutMs: number;
  cpuCheck: CpuCheck;
}

export type Placement = { ok: true; workerId: string } | { ok: false; reason: string };

/** A worker counts as alive when it says it is online and its heartbeat is recent. */
export function isWorkerAlive(worker: Pick<PlacementWorker, "status" | "lastHeartbeatAt">, now: Date, workerTimeoutMs: number): boolean {
  return worker.status === "online" && now.getTime() - worker.lastHeartbeatAt.getTime() <= workerTimeoutMs;
}

/**
 * Choose a worker for a vm: alive, enough free vCPUs and memory after promises, a compatible
 * CPU; then the preferred worker if it fits, else the one with the most free memory (spread).
 * When none fits, the reason names the constraint nobody met, for the vm's stateReason.
 */
export function placeVm(input: PlacementInput): Placement {
  const { vm, now, workerTimeoutMs } = input;
  let alive = input.workers.filter((w) => isWorkerAlive(w, now, workerTimeoutMs));
  if (vm.requiredWorkerId) {
    alive = alive.filter((w) => w.id === vm.requiredWorkerId);
    if (alive.length === 0) return { ok: false, reason: `worker ${vm.requiredWorkerId}, asked for, is not alive; waiting for it` };
  }
  if (alive.length === 0) return { ok: false, reason: "no worker alive; waiting for one" };

  const free = alive.map((worker) => {
    const promised = input.promised.filter((p) => p.workerId === worker.id);
    return {
      worker,
      vcpus: worker.vcpusFree - promised.reduce((sum, p) => sum + p.vcpus, 0),
      memoryMiB: worker.memoryMiBFree - promised.reduce((sum, p) => sum + p.memoryMiB, 0),
    };
  });

  const withMemory = free.filter((f) => f.memoryMiB >= vm.memoryMiB);
  if (withMemory.length === 0) {
    const largest = Math.max(...free.map((f) => f.memoryMiB));
    return {
      ok: false,
      reason: `no worker has ${vm.memoryMiB} MiB free (largest free: ${Math.max(largest, 0)} MiB); waiting for capacity`,
    };
  }
  const withVcpus = withMemory.filter((f) => f.vcpus >= vm.vcpus);
  if (withVcpus.length === 0) {
    const largest = Math.max(...withMemory.map((f) => f.vcpus));
    return {
      ok: false,
      reason: `no worker with ${vm.memoryMiB} MiB free has ${vm.vcpus} vCPUs free (largest free: ${Math.max(largest, 0)}); waiting for capacity`,
    };
  }
  const saved = vm.saved;
  let loadable = withVcpus;
  if (saved) {
    const accelerator = vm.accelerator === "kvm" ? "kvm" : "tcg";
    const guest = { qemuVersion: saved.qemuVersion, accelerator, memoryLayout: saved.memoryLayout } as const;
    const qemuRefusals: string[] = [];
    loadable = withVcpus.filter((f) => {
      const reasons = qemuMoveRefusals(guest, { name: `worker ${f.worker.id}`, qemuVersion: f.worker.qemuVersion });
      if (reasons.length > 0) qemuRefusals.push(reasons.join(" "));
      return reasons.length === 0;
    });
    if (loadable.length === 0) {
      return { ok: false, reason: `no worker with room can load the vm's guest state, saved with QEMU ${saved.qemuVersion} (${qemuRefusals.join("; ")})` };
    }
  }
  const refusals: string[] = [];
  const compatible = loadable.filter((f) => {
    const check = input.cpuCheck(vm.cpuModel, f.worker, vm.accelerator);
    if (!check.ok) refusals.push(`${f.worker.id}: ${check.reasons.join(", ")}`);
    return check.ok;
  });
  if (compatible.length === 0) {
    return {
      ok: false,
      reason: `no worker with room can run CPU model ${vm.cpuModel} (${refusals.join("; ")}); choose another CPU model or add a compatible worker`,
    };
  }

  const preferred = compatible.find((f) => f.worker.id === vm.preferredWorkerId);
  if (preferred) return { ok: true, workerId: preferred.worker.id };
  // Spread: most free memory first; ties broken by id so the choice is stable.
  compatible.sort((a, b) => b.memoryMiB - a.memoryMiB || a.worker.id.localeCompare(b.worker.id));
  return { ok: true, workerId: compatible[0]!.worker.id };
}
