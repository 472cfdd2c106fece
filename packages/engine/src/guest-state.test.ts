import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { assertGuestStateMatches, digestFile, type GuestStateIdentity, type GuestStateManifest, isGuestStateFile, streamCorruption } from "./guest-state.ts";

const dir = mkdtempSync(path.join(tmpdir(), "ferry-guest-state-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = "a".repeat(64);

describe("streamCorruption", () => {
  it.each([
    ["the recorded stream", { bytes: 10, sha256: sha }, undefined],
    ["a shorter stream", { bytes: 9, sha256: sha }, "the stream has 9 bytes but the manifest says 10 (truncated or padded)"],
    ["a longer stream", { bytes: 11, sha256: sha }, "the stream has 11 bytes but the manifest says 10 (truncated or padded)"],
    ["other bytes", { bytes: 10, sha256: "b".repeat(64) }, `the stream's sha256 is ${"b".repeat(64)} but the manifest says ${sha}`],
  ])("%s", (_what, actual, expected) => {
    expect(streamCorruption(actual, { streamBytes: 10, sha256: sha })).toBe(expected);
  });
});

describe("digestFile", () => {
  it("counts and hashes a file of several reads, in order", async () => {
    const content = randomBytes(9 * 1024 * 1024 + 17);
    const file = path.join(dir, "state.zst");
    writeFileSync(file, content);
    expect(await digestFile(file)).toEqual({
      bytes: content.length,
      sha256: createHash("sha256").update(new Uint8Array(content)).digest("hex"),
    });
  });
});

describe("isGuestStateFile", () => {
  it("tells a { file } source from a stream", () => {
    expect(isGuestStateFile({ file: "/x" })).toBe(true);
    expect(isGuestStateFile(Readable.from([]))).toBe(false);
  });
});

describe("assertGuestStateMatches: whose state may load", () => {
  const identity: GuestStateIdentity = {
    qemuVersion: "7.2.22",
    machineType: "pc-q35-7.2",
    cpuModel: "qemu64",
    profile: "standard@1",
    memoryMiB: 256,
    memoryLayout: "exact",
    memoryBytes: 256 * 1024 * 1024,
    vcpus: 1,
    accelerator: "tcg",
    disks: [{ id: "data", base: "data.qcow2@image:abc" }],
  };
  const manifest: GuestStateManifest = {
    ...identity,
    format: "ferry-guest-state/1",
    vmId: "golden",
    compression: "zstd",
    streamBytes: 10,
    sha256: sha,
    createdAt: "2026-11-25T17:00:00.000Z",
  };
  const outcome = (vmId: string, cloneOf: string | undefined, differs: Partial<GuestStateIdentity> = {}, saved: GuestStateManifest = manifest) => {
    try {
      assertGuestStateMatches(vmId, saved, { ...identity, ...differs }, cloneOf);
      return "loads";
    } catch (error) {
      return (error as EngineError).message;
    }
  };

  it.each([
    ["its own vm", "golden", undefined, {}, "loads"],
    ["another vm, not as a clone", "student-1", undefined, {}, "vmId golden but this vm is student-1 (another vm's state loads only as a clone of it)"],
    ["a clone of the vm that saved it", "student-1", "golden", {}, "loads"],
    ["a clone of another vm", "student-1", "other", {}, "vmId golden but the clone student-1 continues vm other"],
    ["a clone with another CPU model", "student-1", "golden", { cpuModel: "Haswell-noTSX" }, "cpuModel qemu64 but this vm has Haswell-noTSX"],
    ["a clone with other disks", "student-1", "golden", { disks: [{ id: "data", base: "data.qcow2@image:def" }] }, "disks data=data.qcow2@image:abc but this vm has data=data.qcow2@image:def"],
  ])("%s", (_what, vmId, cloneOf, differs, expected) => {
    const result = outcome(vmId, cloneOf, differs);
    if (expected === "loads") expect(result).toBe("loads");
    else expect(result).toContain(expected);
  });

  it.each([
    ["the same QEMU", { qemuVersion: "7.2.22" }, "loads"],
    ["a newer QEMU", { qemuVersion: "10.0.2" }, "loads"],
    [
      "an older QEMU",
      { qemuVersion: "7.2.21" },
      "qemuVersion 7.2.22 but this host's QEMU is 7.2.21, older (a state loads only on the same QEMU or a newer one: restore it on a worker with QEMU 7.2.22 or newer)",
    ],
  ] as const)("on %s", (_what, host, expected) => {
    const result = outcome("golden", undefined, host);
    if (expected === "loads") expect(result).toBe("loads");
    else expect(result).toContain(expected);
  });

  it("refuses another memory layout, naming both", () => {
    expect(outcome("golden", undefined, { memoryLayout: "trimmed-8k", memoryBytes: 262136 * 1024 })).toContain(
      "memoryLayout exact (268435456 bytes of RAM) but this vm has trimmed-8k (268427264 bytes; give the vm's spec memoryLayout exact)",
    );
  });

  it("reads a manifest saved before layouts were recorded as trimmed under TCG, exact under KVM", () => {
    const { memoryLayout: _layout, memoryBytes: _bytes, ...legacy } = manifest;
    const trimmed = { memoryLayout: "trimmed-8k", memoryBytes: 262136 * 1024 } as const;
    expect(outcome("golden", undefined, trimmed, legacy)).toBe("loads");
    expect(outcome("golden", undefined, {}, legacy)).toContain("memoryLayout trimmed-8k (268427264 bytes of RAM) but this vm has exact");
    expect(outcome("golden", undefined, { accelerator: "kvm" }, { ...legacy, accelerator: "kvm" })).toBe("loads");
  });

  it("is a state_mismatch naming the vm", () => {
    expect(() => assertGuestStateMatches("student-1", manifest, identity)).toThrow(EngineError);
    expect(outcome("student-1", undefined)).toContain("Restore vm student-1 with the spec and host it was saved under");
  });
});
