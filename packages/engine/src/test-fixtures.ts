// Shared by the engine's unit tests: a spec in the standard worker layout with fixed paths,
// so argv and error messages are stable across machines.
import type { VmSpec } from "./spec.ts";

/** A valid spec for `profile`, with every path under /srv/ferry/vms/<id>. */
export function exampleSpec(profile: VmSpec["profile"] = "standard"): VmSpec {
  const vmDir = `/srv/ferry/vms/vm-${profile}`;
  return {
    id: `vm-${profile}`,
    vcpus: 2,
    memoryMiB: 256,
    profile,
    cpuModel: "Haswell-noTSX",
    boot: {
      kernel: "/srv/ferry/images/tiny-2a59b8e071dadc84/vmlinux",
      initrd: "/srv/ferry/images/tiny-2a59b8e071dadc84/initrd.img",
      cmdline: "console=tty0 console=ttyS0 quiet",
    },
    disks: [
      { id: "data", base: "/srv/ferry/images/tiny-2a59b8e071dadc84/data.qcow2", overlay: `${vmDir}/data.qcow2` },
      { id: "scratch", base: "/srv/ferry/images/blank.qcow2", overlay: `${vmDir}/scratch.qcow2` },
    ],
    nics: [
      { id: "net0", mac: "52:54:00:0a:0b:0c", network: "user" },
      { id: "isolated", mac: "52:54:00:0a:0b:0d", network: "none" },
    ],
    display: { vncSocket: `${vmDir}/vnc.sock` },
    serial: { logFile: `${vmDir}/serial.log` },
    parallel: { logFile: `${vmDir}/parallel.log` },
  };
}
