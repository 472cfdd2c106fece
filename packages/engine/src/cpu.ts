// CPU compatibility between a vm and a host, the way vSphere's EVC does it: a guest sees
// the features of its named CPU model, so it may run (or be restored, or migrate) wherever
// the host can provide every one of them. QEMU itself does not refuse a mismatch: a state
// saved under one model loads under another and the guest silently dies (QEMU-NOTES).
import { cpuModelFeatures } from "./cpu-models.generated.ts";

export { cpuModelFeatures };

/** A host's CPU as /proc/cpuinfo describes it. */
export interface HostCpu {
  vendor: string;
  modelName: string;
  flags: string[];
}

/** Read a host's CPU from the text of /proc/cpuinfo; flags are those every processor has. */
export function parseHostCpu(cpuinfo: string): HostCpu {
  const processors = cpuinfo
    .split(/\n\s*\n/)
    .map((block) => {
      const fields = new Map<string, string>();
      for (const line of block.split("\n")) {
        const colon = line.indexOf(":");
        if (colon > 0) fields.set(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
      }
      return fields;
    })
    .filter((fields) => fields.has("flags"));
  const first = processors[0];
  if (first === undefined) return { vendor: "unknown", modelName: "unknown", flags: [] };
  // Hybrid CPUs can differ between cores; a guest may land on any of them.
  const flags = processors
    .map((p) => new Set((p.get("flags") ?? "").split(/\s+/).filter(Boolean)))
    .reduce((common, next) => new Set([...common].filter((f) => next.has(f))));
  return {
    vendor: first.get("vendor_id") ?? "unknown",
    modelName: first.get("model name") ?? "unknown",
    flags: [...flags],
  };
}

// KVM offers these to every guest whatever the host CPU has (it emulates them), so a host
// lacking them in /proc/cpuinfo is no reason to refuse.
const providedByKvm = new Set([
  "x2apic",
  "tsc_deadline_timer",
  "hypervisor",
  "arat",
  "tsc_adjust",
  "arch_capabilities",
]);

export interface GuestCpuRequirements {
  cpuModel: string;
  accelerator: "kvm" | "tcg";
  vcpus: number;
  memoryMiB: number;
  machineType: string;
}

export interface TargetHost {
  accelerator: "kvm" | "tcg";
  cpuFlags: readonly string[];
  freeVcpus: number;
  freeMemoryMiB: number;
  /** Machine types the host's QEMU offers; unchecked when absent. */
  machineTypes?: readonly string[];
}

export type Compatibility = { ok: true } | { ok: false; reasons: string[]; missingFeatures: string[] };

/** Whether a vm (running, or as a saved guest state) can run on a target host; refusals say why and what to do. */
export function checkCompatibility(
  guest: GuestCpuRequirements,
  target: TargetHost,
  options: { baselineCpuModel?: string } = {},
): Compatibility {
  const reasons: string[] = [];
  let missingFeatures: string[] = [];

  if (guest.accelerator !== target.accelerator) {
    reasons.push(
      `The vm runs under ${guest.accelerator} but the target host offers ${target.accelerator}; a guest cannot move between accelerators. Choose a host with ${guest.accelerator}.`,
    );
  }

  const baseline = options.baselineCpuModel;
  if (baseline !== undefined && guest.cpuModel !== baseline) {
    reasons.push(
      `The cluster's baseline CPU model is ${baseline} but the vm uses ${guest.cpuModel}. Stop the vm and change its CPU model to ${baseline}, or change the cluster baseline.`,
    );
  }

  const features = cpuModelFeatures[guest.cpuModel];
  if (features === undefined) {
    reasons.push(
      `CPU model '${guest.cpuModel}' is not one QEMU can present here (known models include qemu64, Haswell-noTSX, EPYC-Rome). Give the vm a known CPU model.`,
    );
  } else if (target.accelerator === "kvm" && guest.accelerator === "kvm") {
    const hostFlags = new Set(target.cpuFlags);
    missingFeatures = features.filter((f) => !hostFlags.has(f) && !providedByKvm.has(f));
    if (missingFeatures.length > 0) {
      reasons.push(
        `The target host's CPU lacks ${missingFeatures.length} feature${missingFeatures.length > 1 ? "s" : ""} of the vm's ${guest.cpuModel} model (${missingFeatures.join(", ")}). Choose a host with a newer CPU, or give the vm an older CPU model such as the cluster baseline.`,
      );
    }
  }
  // Under TCG QEMU emulates the model in software, so any known model runs on any host.

  if (target.machineTypes !== undefined && !target.machineTypes.includes(guest.machineType)) {
    reasons.push(
      `The target host's QEMU does not offer machine type ${guest.machineType}. Choose a host whose QEMU is the same as the vm's or newer.`,
    );
  }

  // The vCPU count belongs to the guest and never changes to fit a host.
  if (guest.vcpus > target.freeVcpus) {
    reasons.push(
      `The vm needs ${guest.vcpus} vCPUs but the target host has ${target.freeVcpus} free. Choose a host with more free vCPUs.`,
    );
  }
  if (guest.memoryMiB > target.freeMemoryMiB) {
    reasons.push(
      `The vm needs ${guest.memoryMiB} MiB of memory but the target host has ${target.freeMemoryMiB} MiB free. Choose a host with more free memory.`,
    );
  }

  return reasons.length === 0 ? { ok: true } : { ok: false, reasons, missingFeatures };
}
