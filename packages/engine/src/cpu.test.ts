import { describe, expect, it } from "vitest";
import { checkCompatibility, cpuModelFeatures, parseHostCpu, type GuestCpuRequirements, type TargetHost } from "./cpu.ts";

// /proc/cpuinfo of this project's build machine (an AMD EPYC VM), trimmed to the fields read.
const epycFlags =
  "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm";
const cpuinfo = [0, 1]
  .map(
    (n) => `processor\t: ${n}
vendor_id\t: AuthenticAMD
cpu family\t: 25
model name\t: AMD EPYC
flags\t\t: ${n === 1 ? epycFlags.replace(" avx512_bf16", "") : epycFlags}
bugs\t\t: sysret_ss_attrs null_seg spectre_v1
power management:
`,
  )
  .join("\n");

describe("parseHostCpu", () => {
  it("reads vendor, model name and the flags every processor has", () => {
    const host = parseHostCpu(cpuinfo);
    expect(host.vendor).toBe("AuthenticAMD");
    expect(host.modelName).toBe("AMD EPYC");
    expect(host.flags).toContain("avx2");
    expect(host.flags).toContain("fsrm");
    // Processor 1 lacks avx512_bf16, so a guest cannot count on it.
    expect(host.flags).not.toContain("avx512_bf16");
    expect(host.flags).toHaveLength(epycFlags.split(" ").length - 1);
  });

  it("reports an unknown CPU with no flags for text without processors", () => {
    expect(parseHostCpu("")).toEqual({ vendor: "unknown", modelName: "unknown", flags: [] });
  });
});

describe("cpuModelFeatures", () => {
  it.each([
    "qemu64",
    "kvm64",
    "Nehalem",
    "Westmere",
    "SandyBridge",
    "IvyBridge",
    "Haswell-noTSX",
    "Broadwell-noTSX",
    "Skylake-Client",
    "Skylake-Server",
    "Cascadelake-Server",
    "Icelake-Server",
    "EPYC",
    "EPYC-Rome",
  ])("knows %s as a 64-bit model in /proc/cpuinfo spelling", (model) => {
    const features = cpuModelFeatures[model];
    expect(features).toContain("lm");
    for (const feature of features ?? []) expect(feature).toMatch(/^[a-z0-9_]+$/);
  });

  it("holds QEMU 7.2's definitions as pc-q35-7.2 resolves them", () => {
    // Skylake-Client resolves to v1 on pc-q35-7.2, which still has TSX (v3 drops it).
    expect(cpuModelFeatures["Skylake-Client"]).toEqual(expect.arrayContaining(["hle", "rtm", "avx2"]));
    expect(cpuModelFeatures["Haswell-noTSX"]).not.toContain("rtm");
    expect(cpuModelFeatures["Skylake-Server"]).toContain("avx512f");
    expect(cpuModelFeatures["EPYC-Rome"]).toEqual(expect.arrayContaining(["sse4a", "clzero"]));
    expect(cpuModelFeatures.qemu64).toContain("sse2");
    expect(cpuModelFeatures.qemu64).not.toContain("avx");
    // Spelled as Linux spells them, not as QEMU does.
    expect(cpuModelFeatures["Haswell-noTSX"]).toEqual(expect.arrayContaining(["sse4_2", "lahf_lm", "tsc_deadline_timer"]));
    // KVM's paravirtual features are not host CPU flags.
    expect(Object.values(cpuModelFeatures).flat().some((f) => f.startsWith("kvm"))).toBe(false);
  });

  it("leaves out models that are not portable or not 64-bit", () => {
    for (const model of ["host", "max", "base", "qemu32", "486"]) expect(cpuModelFeatures[model]).toBeUndefined();
  });
});

describe("checkCompatibility", () => {
  const guest: GuestCpuRequirements = {
    cpuModel: "Haswell-noTSX",
    accelerator: "kvm",
    vcpus: 2,
    memoryMiB: 1024,
    machineType: "pc-q35-7.2",
  };
  const host: TargetHost = {
    accelerator: "kvm",
    cpuFlags: parseHostCpu(cpuinfo).flags,
    freeVcpus: 2,
    freeMemoryMiB: 1024,
    machineTypes: ["pc-q35-7.2", "pc-i440fx-7.2"],
  };

  it("accepts a model whose features the KVM host has, at exactly the free capacity", () => {
    expect(checkCompatibility(guest, host)).toEqual({ ok: true });
  });

  it("lists the features a KVM host lacks", () => {
    const result = checkCompatibility({ ...guest, cpuModel: "Skylake-Client" }, host);
    expect(result).toEqual({
      ok: false,
      missingFeatures: ["hle", "rtm"],
      reasons: [
        "The target host's CPU lacks 2 features of the vm's Skylake-Client model (hle, rtm). Choose a host with a newer CPU, or give the vm an older CPU model such as the cluster baseline.",
      ],
    });
  });

  it("does not count features KVM provides itself", () => {
    const withoutEmulated = host.cpuFlags.filter((f) => !["x2apic", "tsc_deadline_timer", "hypervisor", "arat"].includes(f));
    expect(checkCompatibility(guest, { ...host, cpuFlags: withoutEmulated })).toEqual({ ok: true });
  });

  it("needs no host features under TCG", () => {
    const result = checkCompatibility(
      { ...guest, cpuModel: "Skylake-Server", accelerator: "tcg" },
      { ...host, accelerator: "tcg", cpuFlags: [] },
    );
    expect(result).toEqual({ ok: true });
  });

  it.each([
    ["kvm", "tcg"],
    ["tcg", "kvm"],
  ] as const)("refuses a %s guest on a %s host", (from, to) => {
    const result = checkCompatibility({ ...guest, accelerator: from }, { ...host, accelerator: to });
    expect(result).toEqual({
      ok: false,
      missingFeatures: [],
      reasons: [
        `The vm runs under ${from} but the target host offers ${to}; a guest cannot move between accelerators. Choose a host with ${from}.`,
      ],
    });
  });

  it("refuses a model QEMU does not know, even under TCG", () => {
    const result = checkCompatibility({ ...guest, cpuModel: "Pentium-9000", accelerator: "tcg" }, { ...host, accelerator: "tcg" });
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reasons).toEqual([
      "CPU model 'Pentium-9000' is not one QEMU can present here (known models include qemu64, Haswell-noTSX, EPYC-Rome). Give the vm a known CPU model.",
    ]);
  });

  it("holds the vm to the cluster baseline", () => {
    expect(checkCompatibility(guest, host, { baselineCpuModel: "Haswell-noTSX" })).toEqual({ ok: true });
    const result = checkCompatibility({ ...guest, cpuModel: "qemu64" }, host, { baselineCpuModel: "Haswell-noTSX" });
    expect(!result.ok && result.reasons).toEqual([
      "The cluster's baseline CPU model is Haswell-noTSX but the vm uses qemu64. Stop the vm and change its CPU model to Haswell-noTSX, or change the cluster baseline.",
    ]);
  });

  it("refuses a host whose QEMU lacks the machine type, and skips the check when unknown", () => {
    const result = checkCompatibility(guest, { ...host, machineTypes: ["pc-q35-8.2"] });
    expect(!result.ok && result.reasons).toEqual([
      "The target host's QEMU does not offer machine type pc-q35-7.2. Choose a host whose QEMU is the same as the vm's or newer.",
    ]);
    const { machineTypes: _machineTypes, ...unknownMachineTypes } = host;
    expect(checkCompatibility(guest, unknownMachineTypes)).toEqual({ ok: true });
  });

  it("never shrinks the vm to fit: too few vCPUs or too little memory is a refusal", () => {
    const result = checkCompatibility({ ...guest, vcpus: 4, memoryMiB: 2048 }, host);
    expect(!result.ok && result.reasons).toEqual([
      "The vm needs 4 vCPUs but the target host has 2 free. Choose a host with more free vCPUs.",
      "The vm needs 2048 MiB of memory but the target host has 1024 MiB free. Choose a host with more free memory.",
    ]);
  });

  it("gives every reason at once", () => {
    const result = checkCompatibility(
      { ...guest, cpuModel: "Skylake-Client", vcpus: 8 },
      { ...host, machineTypes: [] },
      { baselineCpuModel: "EPYC" },
    );
    expect(!result.ok && result.reasons).toHaveLength(4);
    expect(!result.ok && result.missingFeatures).toEqual(["hle", "rtm"]);
  });
});
