import type { Vm } from "@ferry/db";
import { memoryLayoutOf } from "@ferry/engine";
import type { VmDefinition } from "@ferry/jobs";

/** What a worker job says about the vm it acts on, from the vm's database row. */
export function vmDefinitionOf(vm: Vm): VmDefinition {
  const memoryLayout = memoryLayoutOf(vm.memoryLayout);
  return {
    vmId: vm.id,
    image: vm.image,
    vcpus: vm.vcpus,
    memoryMiB: vm.memoryMiB,
    profile: vm.profile as VmDefinition["profile"],
    cpuModel: vm.cpuModel,
    ...(memoryLayout === undefined ? {} : { memoryLayout }),
  };
}
