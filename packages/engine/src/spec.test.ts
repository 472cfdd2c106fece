import { describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { parseVmSpec } from "./spec.ts";
import { exampleSpec } from "./test-fixtures.ts";

function messageOf(input: unknown): string {
  try {
    parseVmSpec(input);
  } catch (error) {
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe("invalid_spec");
    return (error as EngineError).message;
  }
  throw new Error("parseVmSpec accepted the spec; the test expected a refusal");
}

describe("parseVmSpec", () => {
  it.each(["standard", "compat"] as const)("accepts the example %s spec unchanged", (profile) => {
    expect(parseVmSpec(exampleSpec(profile))).toEqual(exampleSpec(profile));
  });

  it("accepts a spec without display or initrd", () => {
    const { initrd: _initrd, ...boot } = exampleSpec().boot;
    expect(parseVmSpec({ ...exampleSpec(), boot, display: null }).display).toBeNull();
  });

  it.each<[string, (s: ReturnType<typeof exampleSpec>) => unknown, string]>([
    ["memory too small", (s) => ({ ...s, memoryMiB: 12 }), "memoryMiB must be at least 64 (got 12)"],
    ["memory too large", (s) => ({ ...s, memoryMiB: 300000 }), "memoryMiB must be at most 262144 (got 300000)"],
    ["fractional vcpus", (s) => ({ ...s, vcpus: 1.5 }), "vcpus must be a whole number (got 1.5)"],
    ["zero vcpus", (s) => ({ ...s, vcpus: 0 }), "vcpus must be at least 1 (got 0)"],
    ["too many vcpus", (s) => ({ ...s, vcpus: 65 }), "vcpus must be at most 64 (got 65)"],
    ["vcpus as a string", (s) => ({ ...s, vcpus: "2" }), "vcpus must be a number (got '2')"],
    ["missing id", ({ id: _id, ...s }) => s, "id is required (a string)"],
    ["uppercase id", (s) => ({ ...s, id: "VM-1" }), "id must be 1-63 lowercase letters, digits or dashes, starting with a letter or digit (got 'VM-1')"],
    ["id with a slash", (s) => ({ ...s, id: "../etc" }), "id must be 1-63 lowercase letters"],
    ["unknown profile", (s) => ({ ...s, profile: "fast" }), "profile must be one of 'standard', 'compat' (got 'fast')"],
    ["host cpu", (s) => ({ ...s, cpuModel: "host" }), "cpuModel must be a named QEMU CPU model; 'host' depends on the host's CPU and cannot move between hosts (got 'host')"],
    ["cpu model with options", (s) => ({ ...s, cpuModel: "qemu64,+vmx" }), "cpuModel must be a QEMU -cpu model name such as qemu64 or Haswell-noTSX (got 'qemu64,+vmx')"],
    ["relative kernel", (s) => ({ ...s, boot: { ...s.boot, kernel: "vmlinux" } }), "boot.kernel must be an absolute path (got 'vmlinux')"],
    ["comma in overlay", (s) => ({ ...s, disks: [{ ...s.disks[0], overlay: "/a,b.qcow2" }] }), "disks[0].overlay must not contain a comma, a newline or a NUL (QEMU option syntax) (got '/a,b.qcow2')"],
    ["newline in serial log", (s) => ({ ...s, serial: { logFile: "/a\nb" } }), "serial.logFile must not contain a comma, a newline"],
    ["long cmdline", (s) => ({ ...s, boot: { ...s.boot, cmdline: "x".repeat(2049) } }), "boot.cmdline must be at most 2048 characters long"],
    ["bad mac", (s) => ({ ...s, nics: [{ ...s.nics[0], mac: "52:54:00:0A:0B:0C" }] }), "nics[0].mac must be a lowercase MAC address like 52:54:00:12:34:56 (got '52:54:00:0A:0B:0C')"],
    ["unknown network", (s) => ({ ...s, nics: [{ ...s.nics[0], network: "bridge" }] }), "nics[0].network must be one of 'user', 'none' (got 'bridge')"],
    ["unknown top-level key", (s) => ({ ...s, gpu: true }), "spec has unknown key 'gpu'; remove it"],
    ["unknown nested keys", (s) => ({ ...s, display: { vncSocket: "/v.sock", port: 5900, ws: true } }), "display has unknown keys 'port', 'ws'; remove them"],
    ["duplicate disk ids", (s) => ({ ...s, disks: [s.disks[0], s.disks[0]] }), "disks[1].id must be unique within disks (got 'data' twice)"],
    ["duplicate nic ids", (s) => ({ ...s, nics: [s.nics[0], { ...s.nics[1], id: "net0" }] }), "nics[1].id must be unique within nics (got 'net0' twice)"],
    ["too many nics", (s) => ({ ...s, nics: Array.from({ length: 5 }, (_, i) => ({ ...s.nics[0], id: `n${i}` })) }), "nics must have at most 4 entries (got 5)"],
    ["too many compat disks", (s) => ({ ...s, profile: "compat", disks: Array.from({ length: 7 }, (_, i) => ({ ...s.disks[0], id: `d${i}` })) }), "disks must have at most 6 entries under the compat profile (got 7)"],
    ["not an object", () => "spec", "spec must be an object (got 'spec')"],
  ])("refuses %s", (_name, mutate, expected) => {
    const message = messageOf(mutate(exampleSpec()));
    expect(message).toContain(expected);
    expect(message).toMatch(/^vm spec is invalid: /);
  });

  it("names every bad field in one error and keeps the issues as details", () => {
    try {
      parseVmSpec({ ...exampleSpec(), memoryMiB: 12, vcpus: 0 });
      expect.unreachable();
    } catch (error) {
      const e = error as EngineError;
      expect(e.message).toBe(
        "vm spec is invalid: vcpus must be at least 1 (got 0); memoryMiB must be at least 64 (got 12). Fix the listed fields and submit the spec again.",
      );
      expect(e.details?.issues).toHaveLength(2);
    }
  });
});
