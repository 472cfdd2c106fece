import { describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { guestMemoryBytes, toQemuArgv, type LaunchOptions } from "./qemu-argv.ts";
import { exampleSpec } from "./test-fixtures.ts";

const launch: LaunchOptions = {
  accelerator: "tcg",
  qmpSocket: "/srv/ferry/vms/vm/qmp.sock",
  pidFile: "/srv/ferry/vms/vm/qemu.pid",
};

/** The value following `flag`, for each occurrence. */
function values(argv: string[], flag: string): string[] {
  return argv.flatMap((arg, i) => (arg === flag ? [argv[i + 1] ?? "<missing>"] : []));
}

describe("toQemuArgv golden files", () => {
  // One argument per line so a change shows as a readable diff. After an intended change,
  // run `npx vitest run --project unit packages/engine -u` and review the golden diff.
  // standard: exact RAM (a vm cold-booted on QEMU >= 9); compat: trimmed (first booted under TCG on QEMU 7.2).
  for (const [profile, memoryLayout] of [
    ["standard", "exact"],
    ["compat", "trimmed-8k"],
  ] as const) {
    it(`matches __golden__/${profile}.argv.txt`, async () => {
      const argv = toQemuArgv({ ...exampleSpec(profile), memoryLayout }, { ...launch, tcgTranslationCacheMiB: 64 });
      await expect(`${argv.join("\n")}\n`).toMatchFileSnapshot(`./__golden__/${profile}.argv.txt`);
    });
  }

  it("matches __golden__/standard-memory-file.argv.txt (a clone mapping a golden point's memory)", async () => {
    const argv = toQemuArgv({ ...exampleSpec(), memoryLayout: "exact" }, {
      ...launch,
      tcgTranslationCacheMiB: 64,
      incoming: "defer",
      memoryFile: { path: "/srv/ferry/golden-points/lab-v1-s1/shared/memory.ram", shared: false },
    });
    await expect(`${argv.join("\n")}\n`).toMatchFileSnapshot("./__golden__/standard-memory-file.argv.txt");
  });
});

describe("toQemuArgv", () => {
  it("never daemonizes, never reads user config and never opens a TCP display", () => {
    const argv = toQemuArgv(exampleSpec(), launch);
    expect(argv).not.toContain("-daemonize");
    expect(argv.slice(0, 2)).toEqual(["-nodefaults", "-no-user-config"]);
    expect(values(argv, "-vnc")).toEqual(["unix:/srv/ferry/vms/vm-standard/vnc.sock"]);
    expect(values(argv, "-display")).toEqual(["none"]);
  });

  it("uses the versioned machine type, never the q35 alias", () => {
    expect(values(toQemuArgv(exampleSpec("compat"), launch), "-machine")).toEqual(["pc-q35-7.2"]);
  });

  it("has no VNC at all when the spec has no display", () => {
    const argv = toQemuArgv({ ...exampleSpec(), display: null }, launch);
    expect(argv).not.toContain("-vnc");
    expect(values(argv, "-display")).toEqual(["none"]);
  });

  it.each([
    [{ accelerator: "kvm" }, ["kvm"]],
    [{ accelerator: "tcg" }, ["tcg"]],
    [{ accelerator: "tcg", tcgTranslationCacheMiB: 32 }, ["tcg,tb-size=32"]],
    // tb-size is a TCG setting; KVM has no translation cache.
    [{ accelerator: "kvm", tcgTranslationCacheMiB: 32 }, ["kvm"]],
  ] as const)("accelerator %o gives -accel %o", (options, expected) => {
    expect(values(toQemuArgv(exampleSpec(), { ...launch, ...options }), "-accel")).toEqual(expected);
  });

  it.each([
    [{ accelerator: "kvm" }, ["256M"]],
    // 8 KiB short of a 256 KiB multiple: QEMU's TCG dirty tracking is only sound that way.
    [{ accelerator: "tcg" }, ["262136K"]],
  ] as const)("accelerator %o gives -m %o", (options, expected) => {
    expect(values(toQemuArgv(exampleSpec(), { ...launch, ...options }), "-m")).toEqual(expected);
  });

  it.each([
    [{}, [], []],
    [{ startPaused: true }, ["-S"], []],
    [{ incoming: "defer" }, [], ["defer"]],
    [{ incoming: "tcp:127.0.0.1:4444", startPaused: true }, ["-S"], ["tcp:127.0.0.1:4444"]],
  ] as const)("launch %o adds %o and -incoming %o", (options, paused, incoming) => {
    const argv = toQemuArgv(exampleSpec(), { ...launch, ...options });
    expect(argv.filter((a) => a === "-S")).toEqual(paused);
    expect(values(argv, "-incoming")).toEqual(incoming);
  });

  it.each([
    [{ memoryLayout: "trimmed-8k", shared: false }, "size=262136K", "share=off", 262136 * 1024],
    [{ memoryLayout: "exact", shared: true }, "size=256M", "share=on", 256 * 1024 * 1024],
  ] as const)("a memory file (%o) backs the RAM with the same size and block name as -m alone", ({ memoryLayout, shared }, size, share, bytes) => {
    const argv = toQemuArgv({ ...exampleSpec(), memoryLayout }, { ...launch, memoryFile: { path: "/srv/golden/memory.ram", shared } });
    expect(values(argv, "-object")).toEqual([`memory-backend-file,id=pc.ram,${size},mem-path=/srv/golden/memory.ram,${share}`]);
    expect(values(argv, "-machine")).toEqual(["pc-q35-7.2,memory-backend=pc.ram"]);
    expect(values(argv, "-m")).toEqual([size.slice("size=".length)]);
    expect(guestMemoryBytes(256, memoryLayout)).toBe(bytes);
  });

  // The layout is the vm's, recorded at its cold boot: the accelerator decides only for a spec
  // without one (vms booted before it was recorded, all trimmed under TCG).
  it.each([
    ["exact", "tcg", "256M"],
    ["exact", "kvm", "256M"],
    ["trimmed-8k", "tcg", "262136K"],
    ["trimmed-8k", "kvm", "262136K"],
    [undefined, "tcg", "262136K"],
    [undefined, "kvm", "256M"],
  ] as const)("memory layout %s under %s gives -m %s", (memoryLayout, accelerator, size) => {
    const spec = memoryLayout === undefined ? exampleSpec() : { ...exampleSpec(), memoryLayout };
    expect(values(toQemuArgv(spec, { ...launch, accelerator }), "-m")).toEqual([size]);
  });

  it("leaves the RAM anonymous, as before, without a memory file", () => {
    const argv = toQemuArgv(exampleSpec(), launch);
    expect(argv).not.toContain("-object");
    expect(values(argv, "-machine")).toEqual(["pc-q35-7.2"]);
  });

  it("leaves -initrd out when the spec has none", () => {
    const { initrd: _initrd, ...boot } = exampleSpec().boot;
    const argv = toQemuArgv({ ...exampleSpec(), boot }, launch);
    expect(argv).not.toContain("-initrd");
    expect(values(argv, "-kernel")).toEqual(["/srv/ferry/images/tiny-2a59b8e071dadc84/vmlinux"]);
  });

  it("passes the kernel command line as one argument, commas and all", () => {
    const spec = { ...exampleSpec(), boot: { ...exampleSpec().boot, cmdline: "console=ttyS0,115200 quiet" } };
    expect(values(toQemuArgv(spec, launch), "-append")).toEqual(["console=ttyS0,115200 quiet"]);
  });

  it("keeps device ids and PCI slots stable when a disk or nic is removed", () => {
    const full = toQemuArgv(exampleSpec(), launch);
    const spec = exampleSpec();
    const fewer = toQemuArgv({ ...spec, disks: spec.disks.slice(0, 1), nics: spec.nics.slice(0, 1) }, launch);
    const disk = values(full, "-device").find((d) => d.includes("id=disk-data"));
    const nic = values(full, "-device").find((d) => d.includes("id=net-net0"));
    expect(disk).toBe("virtio-blk-pci,drive=drive-data,id=disk-data,bus=pcie.0,addr=0x4");
    expect(values(fewer, "-device")).toContain(disk);
    expect(values(fewer, "-device")).toContain(nic);
  });

  it("attaches compat disks to q35's AHCI ports and uses e1000 nics", () => {
    const devices = values(toQemuArgv(exampleSpec("compat"), launch), "-device");
    expect(devices).toContain("ide-hd,drive=drive-data,id=disk-data,bus=ide.0");
    expect(devices).toContain("ide-hd,drive=drive-scratch,id=disk-scratch,bus=ide.1");
    expect(devices.filter((d) => d.startsWith("e1000,"))).toHaveLength(2);
    expect(devices.some((d) => d.startsWith("virtio"))).toBe(false);
  });

  it("gives a nic on network none no netdev", () => {
    const argv = toQemuArgv(exampleSpec(), launch);
    expect(values(argv, "-netdev")).toEqual(["user,id=netdev-net0"]);
    expect(values(argv, "-device")).toContain("virtio-net-pci,id=net-isolated,mac=52:54:00:0a:0b:0d,bus=pcie.0,addr=0x11");
  });

  it("opens each overlay on top of its base, read-only", () => {
    const blockdevs = values(toQemuArgv(exampleSpec(), launch), "-blockdev").map((b) => JSON.parse(b));
    expect(blockdevs[0]).toMatchObject({
      "node-name": "drive-data",
      file: { filename: "/srv/ferry/vms/vm-standard/data.qcow2" },
      backing: { "read-only": true, file: { filename: "/srv/ferry/images/tiny-2a59b8e071dadc84/data.qcow2" } },
    });
    expect(blockdevs).toHaveLength(2);
  });

  it.each([
    [{ qmpSocket: "relative/qmp.sock" }, /qmpSocket must be an absolute path .*got 'relative\/qmp.sock'/],
    [{ pidFile: "/tmp/a,b.pid" }, /pidFile must be an absolute path without commas/],
    [{ memoryFile: { path: "/tmp/a,share=on", shared: false } }, /memoryFile must be an absolute path without commas .*got '\/tmp\/a,share=on'/],
    [{ tcgTranslationCacheMiB: 0 }, /tcgTranslationCacheMiB must be a positive whole number of MiB \(got 0\)/],
  ])("refuses launch options %o", (options, message) => {
    const call = () => toQemuArgv(exampleSpec(), { ...launch, ...options });
    expect(call).toThrow(EngineError);
    expect(call).toThrow(message);
  });

  it("refuses more disks than the profile can attach", () => {
    const spec = exampleSpec("compat");
    const disks = Array.from({ length: 7 }, (_, i) => ({ ...spec.disks[0]!, id: `d${i}` }));
    expect(() => toQemuArgv({ ...spec, disks }, launch)).toThrow(
      "vm vm-compat has 7 disks but the compat profile attaches at most 6",
    );
  });
});
