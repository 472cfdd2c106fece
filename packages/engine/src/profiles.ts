// A hardware profile pins every device the guest sees, so a vm started on one host can be
// saved, restored or migrated on another running the same QEMU: same machine type, same
// devices, same PCI slots. Change anything here and bump the profile's version; saved guest
// states record the profile identity and refuse to load under a different one.

export const profileNames = ["standard", "compat"] as const;
export type ProfileName = (typeof profileNames)[number];

/** The devices a vm's guest sees, pinned per profile. */
export interface HardwareProfile {
  readonly name: ProfileName;
  /** Bump when anything the guest sees changes. */
  readonly version: number;
  /** Versioned machine type: the `q35` alias moves with QEMU upgrades and breaks migration. */
  readonly machineType: "pc-q35-7.2";
  readonly video: "VGA";
  readonly nicModel: "virtio-net-pci" | "e1000";
  /** `ahci` uses q35's built-in ich9-ahci controller (`ide-hd` on bus `ide.N`). */
  readonly diskAttachment: "virtio-blk-pci" | "ahci";
  readonly maxDisks: number;
  readonly usbController: "qemu-xhci";
  /** The tablet gives the console an absolute pointer; the keyboard carries typed keys. */
  readonly usbDevices: readonly ["usb-tablet", "usb-kbd"];
  readonly serialDevice: "isa-serial";
  readonly parallelDevice: "isa-parallel";
}

/** The profiles a vm can be created with. */
export const hardwareProfiles: Record<ProfileName, HardwareProfile> = {
  standard: {
    name: "standard",
    version: 1,
    machineType: "pc-q35-7.2",
    video: "VGA",
    nicModel: "virtio-net-pci",
    diskAttachment: "virtio-blk-pci",
    maxDisks: 8,
    usbController: "qemu-xhci",
    usbDevices: ["usb-tablet", "usb-kbd"],
    serialDevice: "isa-serial",
    parallelDevice: "isa-parallel",
  },
  // For guests without virtio drivers: emulated Intel NIC and SATA disks.
  compat: {
    name: "compat",
    version: 1,
    machineType: "pc-q35-7.2",
    video: "VGA",
    nicModel: "e1000",
    diskAttachment: "ahci",
    // ich9-ahci has six ports (ide.0 … ide.5).
    maxDisks: 6,
    usbController: "qemu-xhci",
    usbDevices: ["usb-tablet", "usb-kbd"],
    serialDevice: "isa-serial",
    parallelDevice: "isa-parallel",
  },
};

/** The identity recorded with a saved guest state, e.g. "standard@1". */
export function profileIdentity(profile: HardwareProfile): string {
  return `${profile.name}@${profile.version}`;
}
