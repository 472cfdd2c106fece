// Which QEMU a guest may move to, and which memory layout a cold boot gives it. A guest state
// or a live migration stream loads on the same QEMU or a newer one: the versioned machine type
// (pc-q35-7.2) pins the hardware, and QEMU keeps loading older versioned machine types' streams.
// An older QEMU may not know what a newer one wrote, so a guest never moves back.
import { effectiveMemoryLayout } from "./qemu-argv.ts";
import type { MemoryLayout } from "./spec.ts";

/** The first QEMU whose TCG dirty tracking keeps every guest write with exact RAM (upstream 03bfc2188f). */
export const exactTcgMemoryQemuVersion = "9.0.0";

/** Compares two QEMU versions ("7.2.22", "10.0.2"): negative when a is older, 0 when equal, positive when newer. */
export function compareQemuVersions(a: string, b: string): number {
  const parts = (version: string) => version.split(/[^0-9]+/).filter(Boolean).map(Number);
  const [left, right] = [parts(a), parts(b)];
  for (let i = 0; i < Math.max(left.length, right.length); i++) {
    const difference = (left[i] ?? 0) - (right[i] ?? 0);
    if (difference !== 0) return difference;
  }
  return 0;
}

/** The memory layout a vm cold-booted on this QEMU gets: exact, unless TCG on a QEMU that would lose its writes in a migration. */
export function coldBootMemoryLayout(accelerator: "kvm" | "tcg", qemuVersion: string): MemoryLayout {
  return accelerator === "tcg" && compareQemuVersions(qemuVersion, exactTcgMemoryQemuVersion) < 0 ? "trimmed-8k" : "exact";
}

/** A guest to move: where its QEMU state comes from and how its RAM is laid out. */
export interface MovingGuest {
  /** the QEMU the vm runs on (live migration) or its state was saved with (resume) */
  qemuVersion: string;
  accelerator: "kvm" | "tcg";
  /** as recorded; absent: not recorded, so what every vm had before (trimmed under TCG) */
  memoryLayout?: MemoryLayout | undefined;
}

/** Why a guest may not move to a worker running `targetQemuVersion` (empty: it may), each saying what to do. */
export function qemuMoveRefusals(guest: MovingGuest, target: { name: string; qemuVersion: string }): string[] {
  const reasons: string[] = [];
  if (compareQemuVersions(target.qemuVersion, guest.qemuVersion) < 0) {
    reasons.push(
      `${target.name} runs QEMU ${target.qemuVersion}, older than the ${guest.qemuVersion} the vm's state comes from; a guest moves only to the same QEMU or a newer one. Choose a worker with QEMU ${guest.qemuVersion} or newer, or upgrade that worker's QEMU (infra/setup.sh).`,
    );
  }
  if (guest.accelerator === "tcg" && effectiveMemoryLayout(guest, guest.accelerator) === "exact" && compareQemuVersions(target.qemuVersion, exactTcgMemoryQemuVersion) < 0) {
    reasons.push(
      `${target.name} runs QEMU ${target.qemuVersion}, which under TCG loses guest writes during live migration when the guest's RAM is exact (fixed in QEMU ${exactTcgMemoryQemuVersion}), and the vm was booted with exact RAM. Choose a worker with QEMU ${exactTcgMemoryQemuVersion} or newer, upgrade that worker's QEMU (infra/setup.sh), or stop the vm and start it there afresh.`,
    );
  }
  return reasons;
}
