// Guest images on a worker's disk, and the standard layout of a vm built from one.
// An image lives in `<imagesDir>/<name>-<hash>/` with `<imagesDir>/<name>` a symlink to the
// newest build (infra/guest-image/build.sh). Paths are resolved through the symlink, so a vm
// keeps pointing at the build it was created from even after the image is rebuilt.
import { createHash } from "node:crypto";
import { readFile, realpath, stat } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { EngineError } from "./errors.ts";
import type { ProfileName } from "./profiles.ts";
import { parseVmSpec, type VmSpec } from "./spec.ts";

/** The image names the platform accepts; the portal validates create requests against it. */
export const guestImageCatalog: Record<string, { description: string; minMemoryMiB: number }> = {
  tiny: {
    description: "Debian kernel with a busybox shell; boots in about 3 seconds",
    minMemoryMiB: 128,
  },
};

/** A built guest image, with absolute paths inside its content-addressed directory. */
export interface GuestImage {
  name: string;
  hash: string;
  kernel: string;
  initrd: string;
  cmdline: string;
  baseDisk: string;
  /** The first line the guest prints on its serial port once booted. */
  bootMarker: string;
}

// File names are relative to the image directory; anything with a slash could escape it.
const fileName = z.string().regex(/^[A-Za-z0-9._-]+$/);
const manifestSchema = z.object({
  name: z.string(),
  hash: z.string().regex(/^[0-9a-f]+$/),
  kernel: fileName,
  initrd: fileName,
  cmdline: z.string(),
  baseDisk: fileName,
  bootMarker: z.string().min(1),
});

const rebuildHint = "run infra/guest-image/build.sh";

/** Read a built guest image's manifest; throws EngineError("image_not_found") with how to build it. */
export async function loadImage(imagesDir: string, name: string): Promise<GuestImage> {
  if (!/^[a-z0-9][a-z0-9-]*$/.test(name)) {
    throw new EngineError(
      "image_not_found",
      `guest image name '${name}' is not valid: use lowercase letters, digits and dashes, e.g. 'tiny'.`,
      { imagesDir, name },
    );
  }
  let dir: string;
  try {
    dir = await realpath(join(imagesDir, name));
  } catch {
    throw new EngineError("image_not_found", `guest image '${name}' not found in ${imagesDir}; ${rebuildHint}`, {
      imagesDir,
      name,
    });
  }
  const manifestPath = join(dir, "manifest.json");
  let raw: unknown;
  try {
    raw = JSON.parse(await readFile(manifestPath, "utf8"));
  } catch (error) {
    throw new EngineError(
      "image_not_found",
      `guest image '${name}' in ${dir} has no readable manifest.json (${(error as Error).message}); ${rebuildHint}`,
      { imagesDir, name, dir },
    );
  }
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((i) => i.path.join(".") || "manifest").join(", ");
    throw new EngineError(
      "image_not_found",
      `guest image '${name}' has an invalid ${manifestPath} (bad fields: ${fields}); ${rebuildHint}`,
      { imagesDir, name, dir },
    );
  }
  const manifest = parsed.data;
  const image: GuestImage = {
    name,
    hash: manifest.hash,
    kernel: join(dir, manifest.kernel),
    initrd: join(dir, manifest.initrd),
    cmdline: manifest.cmdline,
    baseDisk: join(dir, manifest.baseDisk),
    bootMarker: manifest.bootMarker,
  };
  for (const file of [image.kernel, image.initrd, image.baseDisk]) {
    const found = await stat(file).then(
      (s) => s.isFile(),
      () => false,
    );
    if (!found) {
      throw new EngineError(
        "image_not_found",
        `guest image '${name}' is incomplete: ${file} is missing; ${rebuildHint}`,
        { imagesDir, name, dir, file },
      );
    }
  }
  return image;
}

/** The spec a worker uses for a vm: one disk `data` over the image's base, one user-network nic, files in vmDir. */
export function specForVm(input: {
  id: string;
  vcpus: number;
  memoryMiB: number;
  profile: ProfileName;
  cpuModel: string;
  image: GuestImage;
  vmDir: string;
}): VmSpec {
  const { image, vmDir } = input;
  const minMemoryMiB = guestImageCatalog[image.name]?.minMemoryMiB;
  if (minMemoryMiB !== undefined && input.memoryMiB < minMemoryMiB) {
    throw new EngineError(
      "invalid_spec",
      `vm ${input.id} has ${input.memoryMiB} MiB of memory but image '${image.name}' needs at least ${minMemoryMiB} MiB; give it more memory.`,
      { vmId: input.id, memoryMiB: input.memoryMiB, minMemoryMiB },
    );
  }
  return parseVmSpec({
    id: input.id,
    vcpus: input.vcpus,
    memoryMiB: input.memoryMiB,
    profile: input.profile,
    cpuModel: input.cpuModel,
    boot: { kernel: image.kernel, initrd: image.initrd, cmdline: image.cmdline },
    disks: [{ id: "data", base: image.baseDisk, overlay: join(vmDir, "data.qcow2") }],
    nics: [{ id: "net0", mac: macForVm(input.id), network: "user" }],
    display: { vncSocket: join(vmDir, "vnc.sock") },
    serial: { logFile: join(vmDir, "serial.log") },
    parallel: { logFile: join(vmDir, "parallel.log") },
  });
}

/** A stable MAC for a vm: QEMU's locally administered 52:54:00 prefix and three bytes of the id's hash. */
export function macForVm(vmId: string): string {
  const digest = createHash("sha256").update(vmId).digest();
  return ["52", "54", "00", ...[0, 1, 2].map((i) => digest[i]!.toString(16).padStart(2, "0"))].join(":");
}
