// Where a running vm may live-migrate: the CPU and capacity rules of checkCompatibility, plus
// what a live move needs beyond a restore: both workers alive and sharing the storage that
// holds the vm's disk. Pure, so the portal (to refuse a request at once, with the reason) and
// the controller (to choose a target) apply the same rules.
import { checkCompatibility } from "./cpu.ts";
import { qemuMoveRefusals } from "./qemu-version.ts";
import type { MemoryLayout } from "./spec.ts";

/** A worker as a migration sees it (its Worker row, with liveness decided by the caller). */
export interface MigrationHost {
  id: string;
  /** online, with a recent heartbeat; a draining worker may be a source, never a target */
  alive: boolean;
  status: string;
  accelerator: string;
  cpuFlags: readonly string[];
  vcpusFree: number;
  memoryMiBFree: number;
  sharedStorage: string | null;
  /** the worker's QEMU, e.g. "10.0.2" */
  qemuVersion: string;
}

/** The running vm to move. */
export interface MigratingVm {
  id: string;
  cpuModel: string;
  /** the accelerator the guest runs under on its current worker */
  accelerator: string;
  vcpus: number;
  memoryMiB: number;
  /** as recorded when the vm cold-booted; null or absent: booted before it was recorded */
  memoryLayout?: MemoryLayout | null;
}

export type MigrationTargetCheck = { ok: true } | { ok: false; reasons: string[] };

/** Whether `vm`, running on `source`, can live-migrate to `target`; refusals say why and what to do. */
export function checkMigrationTarget(vm: MigratingVm, source: MigrationHost, target: MigrationHost): MigrationTargetCheck {
  if (target.id === source.id) {
    return { ok: false, reasons: [`vm ${vm.id} already runs on worker ${target.id}. Choose another worker.`] };
  }
  const reasons: string[] = [];
  if (!target.alive || target.status !== "online") {
    reasons.push(`Worker ${target.id} is ${target.alive ? target.status : "not responding"} and takes no vms. Choose an online worker.`);
  }
  if (source.sharedStorage === null) {
    reasons.push(`Worker ${source.id} keeps vm disks on local storage, so its guests cannot live-migrate. Set FERRY_WORKER_SHARED_STORAGE on the workers that should share disks.`);
  } else if (target.sharedStorage !== source.sharedStorage) {
    reasons.push(
      `Worker ${target.id} does not share storage with worker ${source.id} (${target.sharedStorage ?? "local disks"} vs ${source.sharedStorage}). Choose a worker with FERRY_WORKER_SHARED_STORAGE=${source.sharedStorage}.`,
    );
  }
  const accelerator = vm.accelerator === "kvm" ? "kvm" : "tcg";
  reasons.push(
    ...qemuMoveRefusals(
      { qemuVersion: source.qemuVersion, accelerator, memoryLayout: vm.memoryLayout ?? undefined },
      { name: `Worker ${target.id}`, qemuVersion: target.qemuVersion },
    ),
  );
  const compatibility = checkCompatibility(
    {
      cpuModel: vm.cpuModel,
      accelerator,
      vcpus: vm.vcpus,
      memoryMiB: vm.memoryMiB,
      machineType: "",
    },
    {
      accelerator: target.accelerator === "kvm" ? "kvm" : "tcg",
      cpuFlags: target.cpuFlags,
      freeVcpus: target.vcpusFree,
      freeMemoryMiB: target.memoryMiBFree,
    },
  );
  if (!compatibility.ok) reasons.push(...compatibility.reasons);
  return reasons.length === 0 ? { ok: true } : { ok: false, reasons };
}

/**
 * Choose a target for `vm`: the requested worker if it passes checkMigrationTarget, else the
 * compatible worker with the most free memory. When none fits, the reason lists each refusal.
 */
export function chooseMigrationTarget(
  vm: MigratingVm,
  source: MigrationHost,
  workers: readonly MigrationHost[],
  requestedWorkerId?: string | null,
): { ok: true; workerId: string } | { ok: false; reason: string } {
  if (requestedWorkerId) {
    const target = workers.find((w) => w.id === requestedWorkerId);
    if (!target) return { ok: false, reason: `worker ${requestedWorkerId} does not exist. Choose one of: ${workers.map((w) => w.id).join(", ")}.` };
    const check = checkMigrationTarget(vm, source, target);
    return check.ok ? { ok: true, workerId: target.id } : { ok: false, reason: `cannot migrate vm ${vm.id} to worker ${target.id}: ${check.reasons.join(" ")}` };
  }
  const refusals: string[] = [];
  const fits = workers.filter((target) => {
    if (target.id === source.id) return false;
    const check = checkMigrationTarget(vm, source, target);
    if (!check.ok) refusals.push(`${target.id}: ${check.reasons.join(" ")}`);
    return check.ok;
  });
  fits.sort((a, b) => b.memoryMiBFree - a.memoryMiBFree || a.id.localeCompare(b.id));
  const best = fits[0];
  if (best) return { ok: true, workerId: best.id };
  return {
    ok: false,
    reason: `no worker can take vm ${vm.id} from worker ${source.id}${refusals.length > 0 ? ` (${refusals.join("; ")})` : ": it is the only worker"}`,
  };
}
