export { EngineError, type EngineErrorCode } from "./errors.ts";
export { vmSpecSchema, parseVmSpec, type VmSpec } from "./spec.ts";
export { hardwareProfiles, profileNames, profileIdentity, type HardwareProfile, type ProfileName } from "./profiles.ts";
export { toQemuArgv, type LaunchOptions } from "./qemu-argv.ts";
export { vmLifecycleStates, canTransition, assertTransition, type VmLifecycleState } from "./lifecycle.ts";
export { guestImageCatalog, loadImage, specForVm, macForVm, type GuestImage } from "./images.ts";
export { parseHostCpu, checkCompatibility, cpuModelFeatures, type HostCpu, type GuestCpuRequirements, type TargetHost, type Compatibility } from "./cpu.ts";
