// Turns a vm spec into QEMU's argv. Pure: no env, no clock, no disk. The same spec and launch
// options give the same argv on every host, which is what lets a saved guest state or a live
// migration find the same devices on the other side: device ids (`disk-<id>`, `net-<id>`) and
// PCI slots are fixed here, never left to QEMU's order of creation.
import { EngineError } from "./errors.ts";
import { hardwareProfiles } from "./profiles.ts";
import { checkUnixSocketPath } from "./socket-paths.ts";
import type { MemoryLayout, VmSpec } from "./spec.ts";

/** How this particular QEMU process is started; everything the guest sees is in the spec. */
export interface LaunchOptions {
  accelerator: "kvm" | "tcg";
  qmpSocket: string;
  pidFile: string;
  /** Value for -incoming, e.g. "defer", "tcp:127.0.0.1:4444", "unix:/path". */
  incoming?: string;
  /** Start with the vCPUs stopped (-S) so QMP can prepare before the guest runs. */
  startPaused?: boolean;
  /** TCG translation cache size; QEMU's default is large, and it is most of a small guest's RSS. */
  tcgTranslationCacheMiB?: number;
  /**
   * Back the guest's RAM with this file (a golden point's memory, see Engine.shareMemory) instead
   * of anonymous memory. `shared`: the guest writes into the file. Otherwise the file is mapped
   * copy-on-write: the pages the guest never writes stay one copy in the page cache for every
   * QEMU on the host that maps the same file.
   */
  memoryFile?: { path: string; shared: boolean };
}

// The RAM block's name is part of the migration stream: `-m` alone makes q35 create its RAM as
// a backend with this id, so a backend given the same id keeps streams loadable either way.
const ramBackendId = "pc.ram";

// PCI slots on pcie.0. q35 keeps 0x00 (host bridge) and 0x1f (LPC, SATA, SMBus) for itself.
const pciSlot = {
  video: 0x01,
  usb: 0x02,
  firstDisk: 0x04, // 0x04 … 0x0b for up to 8 virtio disks
  firstNic: 0x10, // 0x10 … 0x13 for up to 4 nics
} as const;

/** Build the argv (without the binary) that starts the spec's vm under the given launch options. */
export function toQemuArgv(spec: VmSpec, launch: LaunchOptions): string[] {
  const profile = hardwareProfiles[spec.profile];
  for (const [name, value] of [
    ["qmpSocket", launch.qmpSocket],
    ["pidFile", launch.pidFile],
    ...(launch.memoryFile ? ([["memoryFile", launch.memoryFile.path]] as const) : []),
  ] as const) {
    if (!value.startsWith("/") || /[,\n\r\0]/.test(value)) {
      throw new EngineError(
        "invalid_spec",
        `launch option ${name} must be an absolute path without commas or newlines (got '${value}'). Pass a path under the vm's directory.`,
      );
    }
  }
  if (spec.disks.length > profile.maxDisks) {
    throw new EngineError(
      "invalid_spec",
      `vm ${spec.id} has ${spec.disks.length} disks but the ${profile.name} profile attaches at most ${profile.maxDisks}. Remove disks or use the standard profile.`,
    );
  }

  const accel =
    launch.accelerator === "tcg"
      ? launch.tcgTranslationCacheMiB === undefined
        ? "tcg"
        : `tcg,tb-size=${positiveInteger("tcgTranslationCacheMiB", launch.tcgTranslationCacheMiB)}`
      : "kvm";

  const memory = memorySize(spec.memoryMiB, effectiveMemoryLayout(spec, launch.accelerator));
  const argv: string[] = [
    "-nodefaults",
    "-no-user-config",
    "-name",
    `guest=${spec.id},debug-threads=on`,
    ...(launch.memoryFile
      ? [
          "-object",
          `memory-backend-file,id=${ramBackendId},size=${memory},mem-path=${launch.memoryFile.path},share=${launch.memoryFile.shared ? "on" : "off"}`,
          "-machine",
          `${profile.machineType},memory-backend=${ramBackendId}`,
        ]
      : ["-machine", profile.machineType]),
    "-accel",
    accel,
    "-cpu",
    spec.cpuModel,
    // The topology is guest-visible: pin it instead of taking QEMU's per-version default.
    "-smp",
    `cpus=${spec.vcpus},sockets=1,cores=${spec.vcpus},threads=1`,
    "-m",
    memory,
    "-kernel",
    spec.boot.kernel,
  ];
  if (spec.boot.initrd !== undefined) argv.push("-initrd", spec.boot.initrd);
  argv.push("-append", spec.boot.cmdline);

  argv.push("-device", `${profile.video},id=video0,bus=pcie.0,addr=${hex(pciSlot.video)}`);

  spec.disks.forEach((disk, index) => {
    // The overlay is the vm's writable disk; its backing is the shared read-only base,
    // opened by path here so the spec, not the overlay's header, decides which base is used.
    argv.push(
      "-blockdev",
      JSON.stringify({
        driver: "qcow2",
        "node-name": `drive-${disk.id}`,
        file: { driver: "file", "node-name": `drive-${disk.id}-file`, filename: disk.overlay, cache: { direct: false } },
        backing: {
          driver: "qcow2",
          "node-name": `base-${disk.id}`,
          "read-only": true,
          file: { driver: "file", "node-name": `base-${disk.id}-file`, filename: disk.base, "read-only": true },
        },
      }),
    );
    argv.push(
      "-device",
      profile.diskAttachment === "virtio-blk-pci"
        ? `virtio-blk-pci,drive=drive-${disk.id},id=disk-${disk.id},bus=pcie.0,addr=${hex(pciSlot.firstDisk + index)}`
        : `ide-hd,drive=drive-${disk.id},id=disk-${disk.id},bus=ide.${index}`,
    );
  });

  spec.nics.forEach((nic, index) => {
    const device = `${profile.nicModel},id=net-${nic.id},mac=${nic.mac},bus=pcie.0,addr=${hex(pciSlot.firstNic + index)}`;
    if (nic.network === "user") {
      argv.push("-netdev", `user,id=netdev-${nic.id}`, "-device", `${device},netdev=netdev-${nic.id}`);
    } else {
      // The guest still sees the NIC (its hardware stays the same); it just has no link.
      argv.push("-device", device);
    }
  });

  argv.push(
    "-device",
    `${profile.usbController},id=usb0,bus=pcie.0,addr=${hex(pciSlot.usb)}`,
    "-device",
    `${profile.usbDevices[0]},id=tablet0,bus=usb0.0,port=1`,
    "-device",
    `${profile.usbDevices[1]},id=keyboard0,bus=usb0.0,port=2`,
  );

  // append=on: a restored or restarted vm continues its log instead of truncating it.
  argv.push(
    "-chardev",
    `file,id=charserial0,path=${spec.serial.logFile},append=on`,
    "-device",
    `${profile.serialDevice},chardev=charserial0,id=serial0,index=0`,
    "-chardev",
    `file,id=charparallel0,path=${spec.parallel.logFile},append=on`,
    "-device",
    `${profile.parallelDevice},chardev=charparallel0,id=parallel0,index=0`,
  );

  // No local window ever; the console is VNC on a unix socket that only the gateway reaches.
  argv.push("-display", "none");
  if (spec.display !== null) argv.push("-vnc", `unix:${checkUnixSocketPath(spec.display.vncSocket, `vm ${spec.id}'s VNC socket`)}`);

  argv.push("-qmp", `unix:${checkUnixSocketPath(launch.qmpSocket, `vm ${spec.id}'s QMP socket`)},server=on,wait=off`, "-pidfile", launch.pidFile);
  if (launch.startPaused === true) argv.push("-S");
  if (launch.incoming !== undefined) argv.push("-incoming", launch.incoming);
  return argv;
}

// Under TCG, QEMU before 9.0 loses guest writes during a live migration (upstream commit
// 03bfc2188f): its fast dirty-bitmap sync, taken for RAM whose size is a multiple of 256 KiB,
// clears the dirty bits without resetting the vCPU's TLB, so later stores through that TLB
// are never marked, never sent, and the guest on the destination runs on stale memory (a
// guest dirtying memory panics within a few moves). 8 KiB less RAM makes QEMU take its
// page-by-page sync, which resets the TLB, but that sync freezes the guest for 0.25-1 s when a
// migration starts; so only vms first booted under TCG on such a QEMU get it (coldBootMemoryLayout).
function memorySize(memoryMiB: number, layout: MemoryLayout): string {
  return layout === "trimmed-8k" ? `${memoryMiB * 1024 - 8}K` : `${memoryMiB}M`;
}

/** The spec's memory layout; a spec without one has what every vm had before it was recorded. */
export function effectiveMemoryLayout(spec: Pick<VmSpec, "memoryLayout">, accelerator: LaunchOptions["accelerator"]): MemoryLayout {
  return spec.memoryLayout ?? (accelerator === "tcg" ? "trimmed-8k" : "exact");
}

/** The size in bytes of the RAM QEMU gives a guest of `memoryMiB` (what a memory file must hold). */
export function guestMemoryBytes(memoryMiB: number, layout: MemoryLayout): number {
  return layout === "trimmed-8k" ? (memoryMiB * 1024 - 8) * 1024 : memoryMiB * 1024 * 1024;
}

function hex(slot: number): string {
  return `0x${slot.toString(16)}`;
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) {
    throw new EngineError(
      "invalid_spec",
      `launch option ${name} must be a positive whole number of MiB (got ${value}). Pass e.g. 64, or leave it out for QEMU's default.`,
    );
  }
  return value;
}
