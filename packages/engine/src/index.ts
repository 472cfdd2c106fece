export { EngineError, type EngineErrorCode } from "./errors.ts";
export { vmSpecSchema, parseVmSpec, memoryLayouts, memoryLayoutOf, type MemoryLayout, type VmSpec } from "./spec.ts";
export { hardwareProfiles, profileNames, profileIdentity, type HardwareProfile, type ProfileName } from "./profiles.ts";
export { toQemuArgv, effectiveMemoryLayout, type LaunchOptions } from "./qemu-argv.ts";
export { compareQemuVersions, coldBootMemoryLayout, exactTcgMemoryQemuVersion, qemuMoveRefusals, type MovingGuest } from "./qemu-version.ts";
export { vmLifecycleStates, canTransition, assertTransition, type VmLifecycleState } from "./lifecycle.ts";
export { guestImageCatalog, loadImage, specForVm, macForVm, type GuestImage } from "./images.ts";
export { parseHostCpu, checkCompatibility, cpuModelFeatures, type HostCpu, type GuestCpuRequirements, type TargetHost, type Compatibility } from "./cpu.ts";
export { checkUnixSocketPath, maxUnixSocketPathBytes } from "./socket-paths.ts";
export { QmpClient, type QmpEvent, type QmpGreeting, type QmpConnectOptions } from "./qmp-client.ts";
export { Engine, type EngineOptions, type StartOptions, type RestoreOptions, type ShareMemoryOptions, type IncomingListen } from "./engine.ts";
export {
  Vm,
  type VmFailure,
  type VmStateChange,
  type VmStopOutcome,
  type LiveMigrateOptions,
  type LiveMigrationFigures,
  type EngineLogger,
} from "./vm.ts";
export {
  guestStateManifestSchema,
  guestStateDifferences,
  manifestMemoryLayout,
  type GuestStateManifest,
  type GuestStateIdentity,
  type GuestStateSource,
} from "./guest-state.ts";
export { guestStateFileSink, type GuestStateSink } from "./guest-state-sink.ts";
export { probeAccelerator, type AcceleratorVerdict, type ProbeOptions } from "./accel-probe.ts";
export {
  checkMigrationTarget,
  chooseMigrationTarget,
  type MigrationHost,
  type MigratingVm,
  type MigrationTargetCheck,
} from "./migration-target.ts";
