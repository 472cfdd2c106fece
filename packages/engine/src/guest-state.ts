// A guest state is a suspended vm's memory and devices as QEMU's migration stream,
// compressed with zstd. QEMU checks little when it loads one: a different CPU model loads
// "successfully" into a dead guest (QEMU-NOTES). So every saved state carries a manifest of
// what it was saved under, and the engine compares it with the restoring vm before QEMU
// sees a byte.
import { createHash } from "node:crypto";
import { createReadStream, existsSync, readFileSync, statSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { Transform, type TransformCallback } from "node:stream";
import { z } from "zod";
import { EngineError } from "./errors.ts";
import { hardwareProfiles, profileIdentity } from "./profiles.ts";
import { effectiveMemoryLayout, guestMemoryBytes } from "./qemu-argv.ts";
import { compareQemuVersions } from "./qemu-version.ts";
import { type MemoryLayout, memoryLayouts, type VmSpec } from "./spec.ts";

/** The manifest stored beside every guest state stream. */
export const guestStateManifestSchema = z.object({
  format: z.literal("ferry-guest-state/1"),
  vmId: z.string(),
  qemuVersion: z.string(),
  machineType: z.string(),
  cpuModel: z.string(),
  profile: z.string(),
  memoryMiB: z.number().int().positive(),
  /** Absent in states saved before it was recorded: those have trimmed RAM under TCG, exact under KVM. */
  memoryLayout: z.enum(memoryLayouts).optional(),
  /** The guest's RAM in bytes, as QEMU's pc.ram block has it (informative: memoryMiB and the layout decide it). */
  memoryBytes: z.number().int().positive().optional(),
  vcpus: z.number().int().positive(),
  accelerator: z.enum(["kvm", "tcg"]),
  disks: z.array(z.object({ id: z.string(), base: z.string() })),
  compression: z.literal("zstd"),
  /**
   * The stream holds the devices alone; the RAM is in the memory file it was saved beside
   * (Engine.shareMemory), without which it cannot load.
   */
  sharedMemory: z.literal(true).optional(),
  streamBytes: z.number().int().nonnegative(),
  sha256: z.string().regex(/^[0-9a-f]{64}$/),
  createdAt: z.string(),
});

export type GuestStateManifest = z.infer<typeof guestStateManifestSchema>;

/** What a guest state must match to load into a vm: everything QEMU does not check for us. */
export type GuestStateIdentity = Pick<
  GuestStateManifest,
  "qemuVersion" | "machineType" | "cpuModel" | "profile" | "memoryMiB" | "vcpus" | "accelerator" | "disks"
> & { memoryLayout: MemoryLayout; memoryBytes: number };

/** The memory layout a state was saved with (recorded, or what every vm had before it was). */
export function manifestMemoryLayout(manifest: Pick<GuestStateManifest, "memoryLayout" | "accelerator">): MemoryLayout {
  return effectiveMemoryLayout(manifest, manifest.accelerator);
}

const baseIdentityCache = new Map<string, string>();

/**
 * A cheap content identity for a disk base: its file name plus the image hash from the
 * manifest.json the image builder writes beside it, or else the sha256 of the file
 * (computed once per path, size and mtime).
 */
export async function diskBaseIdentity(basePath: string): Promise<string> {
  const name = path.basename(basePath);
  const imageManifest = path.join(path.dirname(basePath), "manifest.json");
  if (existsSync(imageManifest)) {
    const parsed = z
      .object({ hash: z.string().min(1) })
      .safeParse(JSON.parse(readFileSync(imageManifest, "utf8")));
    if (parsed.success) return `${name}@image:${parsed.data.hash}`;
  }
  const stat = statSync(basePath);
  const key = `${basePath}:${stat.size}:${stat.mtimeMs}`;
  const cached = baseIdentityCache.get(key);
  if (cached) return cached;
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(basePath)) hash.update(bytes(chunk as Buffer));
  const identity = `${name}@sha256:${hash.digest("hex").slice(0, 16)}`;
  baseIdentityCache.set(key, identity);
  return identity;
}

/** The identity a state saved from (or restored into) `spec` on this engine has. */
export async function guestStateIdentity(
  spec: VmSpec,
  host: { qemuVersion: string; accelerator: "kvm" | "tcg" },
): Promise<GuestStateIdentity> {
  const profile = hardwareProfiles[spec.profile];
  const memoryLayout = effectiveMemoryLayout(spec, host.accelerator);
  return {
    qemuVersion: host.qemuVersion,
    machineType: profile.machineType,
    cpuModel: spec.cpuModel,
    profile: profileIdentity(profile),
    memoryMiB: spec.memoryMiB,
    memoryLayout,
    memoryBytes: guestMemoryBytes(spec.memoryMiB, memoryLayout),
    vcpus: spec.vcpus,
    accelerator: host.accelerator,
    disks: await Promise.all(spec.disks.map(async (d) => ({ id: d.id, base: await diskBaseIdentity(d.base) }))),
  };
}

/** Every way `manifest` differs from `identity`, as "field X but this vm has Y" phrases. */
export function guestStateDifferences(manifest: GuestStateManifest, identity: GuestStateIdentity): string[] {
  const differences: string[] = [];
  // QEMU loads streams of older versioned machine types; an older QEMU may not know a newer one's.
  if (compareQemuVersions(identity.qemuVersion, manifest.qemuVersion) < 0) {
    differences.push(
      `qemuVersion ${manifest.qemuVersion} but this host's QEMU is ${identity.qemuVersion}, older (a state loads only on the same QEMU or a newer one: restore it on a worker with QEMU ${manifest.qemuVersion} or newer)`,
    );
  }
  const scalar = [
    "machineType",
    "cpuModel",
    "profile",
    "memoryMiB",
    "vcpus",
    "accelerator",
  ] as const;
  for (const field of scalar) {
    if (manifest[field] !== identity[field]) {
      differences.push(`${field} ${manifest[field]} but this vm has ${identity[field]}`);
    }
  }
  const savedLayout = manifestMemoryLayout(manifest);
  if (savedLayout !== identity.memoryLayout) {
    const savedBytes = manifest.memoryBytes ?? guestMemoryBytes(manifest.memoryMiB, savedLayout);
    differences.push(
      `memoryLayout ${savedLayout} (${savedBytes} bytes of RAM) but this vm has ${identity.memoryLayout} (${identity.memoryBytes} bytes; give the vm's spec memoryLayout ${savedLayout})`,
    );
  }
  const describe = (disks: GuestStateIdentity["disks"]) =>
    disks.length === 0 ? "none" : disks.map((d) => `${d.id}=${d.base}`).join(", ");
  if (describe(manifest.disks) !== describe(identity.disks)) {
    differences.push(`disks ${describe(manifest.disks)} but this vm has ${describe(identity.disks)}`);
  }
  return differences;
}

/**
 * Throws state_mismatch naming every difference between the saved state and this vm. A state
 * loads only into the vm that saved it, unless the restore is a clone (`cloneOf`: the vm whose
 * state a new vm continues, e.g. a lab's golden point); every other check applies either way.
 */
export function assertGuestStateMatches(vmId: string, manifest: GuestStateManifest, identity: GuestStateIdentity, cloneOf?: string): void {
  const differences = guestStateDifferences(manifest, identity);
  const savedBy = cloneOf ?? vmId;
  if (manifest.vmId !== savedBy) {
    differences.unshift(
      cloneOf === undefined
        ? `vmId ${manifest.vmId} but this vm is ${vmId} (another vm's state loads only as a clone of it)`
        : `vmId ${manifest.vmId} but the clone ${vmId} continues vm ${cloneOf}`,
    );
  }
  if (differences.length === 0) return;
  throw new EngineError(
    "state_mismatch",
    `guest state was saved with ${differences.join("; ")}. Restore vm ${vmId} with the spec and host it was saved under, or boot it afresh.`,
    { vmId, differences },
  );
}

/**
 * Where a guest state's compressed stream comes from: any readable stream, or a local file.
 * A file is read by zstd directly and hashed beside it, so it is verified before QEMU sees a
 * byte and never passes through Node on its way to QEMU; it must not change during the restore.
 */
export type GuestStateSource = NodeJS.ReadableStream | { file: string };

export function isGuestStateFile(source: GuestStateSource): source is { file: string } {
  return typeof (source as { file?: unknown }).file === "string";
}

const digestBlockBytes = 4 * 1024 * 1024;

/**
 * The length and sha256 of a file. A restore waits for this before QEMU may read, so the next
 * 4 MiB block is read (in libuv's thread pool) while this one is hashed.
 */
export async function digestFile(file: string): Promise<{ bytes: number; sha256: string }> {
  const digest = new DigestStream();
  const handle = await open(file, "r");
  try {
    const blocks = [Buffer.allocUnsafe(digestBlockBytes), Buffer.allocUnsafe(digestBlockBytes)] as const;
    let reading = handle.read(blocks[0], 0, digestBlockBytes, 0);
    for (let index = 0; ; index++) {
      const { bytesRead, buffer } = await reading;
      if (bytesRead === 0) break;
      reading = handle.read(blocks[(index + 1) % 2]!, 0, digestBlockBytes, digest.bytes + bytesRead);
      digest.update(buffer.subarray(0, bytesRead));
    }
  } finally {
    await handle.close();
  }
  return { bytes: digest.bytes, sha256: digest.digest() };
}

/** How a stream differs from what its manifest recorded, or undefined if it does not. */
export function streamCorruption(
  actual: { bytes: number; sha256: string },
  expected: { sha256: string; streamBytes: number },
): string | undefined {
  if (actual.bytes !== expected.streamBytes) {
    return `the stream has ${actual.bytes} bytes but the manifest says ${expected.streamBytes} (truncated or padded)`;
  }
  if (actual.sha256 !== expected.sha256) {
    return `the stream's sha256 is ${actual.sha256} but the manifest says ${expected.sha256}`;
  }
  return undefined;
}

/** A pass-through stream that counts bytes and hashes them with sha256 as they flow. */
export class DigestStream extends Transform {
  bytes = 0;
  #hash = createHash("sha256");

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.update(chunk);
    callback(null, chunk);
  }

  /** Counts and hashes `chunk` without passing it on, for a caller that moves the bytes itself. */
  update(chunk: Buffer): void {
    this.bytes += chunk.length;
    this.#hash.update(bytes(chunk));
  }

  /** The hex sha256 of everything that passed; call once, after the stream ended. */
  digest(): string {
    return this.#hash.digest("hex");
  }
}

// @types/node 20.9 declares Buffer in a way TypeScript 5.9 no longer accepts as Uint8Array.
function bytes(data: Buffer): Uint8Array {
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
}
