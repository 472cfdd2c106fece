import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { guestImageCatalog, loadImage, macForVm, specForVm, type GuestImage } from "./images.ts";

let imagesDir: string;

const manifest = {
  name: "tiny",
  hash: "2a59b8e071dadc84",
  kernel: "vmlinux",
  initrd: "initrd.img",
  cmdline: "console=tty0 console=ttyS0 quiet",
  baseDisk: "data.qcow2",
  kernelPackage: "linux-image-6.1.0-56-amd64 6.1.192-2",
  bootMarker: "FERRY-BOOT-OK",
};

async function buildImage(files = ["vmlinux", "initrd.img", "data.qcow2"], content: unknown = manifest) {
  const dir = join(imagesDir, "tiny-2a59b8e071dadc84");
  await mkdir(dir);
  for (const f of files) await writeFile(join(dir, f), "x");
  await writeFile(join(dir, "manifest.json"), JSON.stringify(content));
  await symlink("tiny-2a59b8e071dadc84", join(imagesDir, "tiny"));
  return dir;
}

async function refusal(promise: Promise<unknown>): Promise<EngineError> {
  const error = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(EngineError);
  expect((error as EngineError).code).toBe("image_not_found");
  return error as EngineError;
}

beforeEach(async () => {
  imagesDir = await mkdtemp(join(tmpdir(), "ferry-images-"));
});
afterEach(async () => {
  await rm(imagesDir, { recursive: true, force: true });
});

describe("loadImage", () => {
  it("resolves the symlink to the content-addressed directory", async () => {
    const dir = await buildImage();
    expect(await loadImage(imagesDir, "tiny")).toEqual({
      name: "tiny",
      hash: "2a59b8e071dadc84",
      kernel: `${dir}/vmlinux`,
      initrd: `${dir}/initrd.img`,
      cmdline: "console=tty0 console=ttyS0 quiet",
      baseDisk: `${dir}/data.qcow2`,
      bootMarker: "FERRY-BOOT-OK",
    });
  });

  it("says how to build an image that is not there", async () => {
    const error = await refusal(loadImage(imagesDir, "tiny"));
    expect(error.message).toBe(`guest image 'tiny' not found in ${imagesDir}; run infra/guest-image/build.sh`);
  });

  it("refuses a name that could leave the images directory", async () => {
    const error = await refusal(loadImage(imagesDir, "../etc"));
    expect(error.message).toContain("guest image name '../etc' is not valid");
  });

  it("names the missing file of an incomplete image", async () => {
    const dir = await buildImage(["vmlinux", "initrd.img"]);
    const error = await refusal(loadImage(imagesDir, "tiny"));
    expect(error.message).toBe(
      `guest image 'tiny' is incomplete: ${dir}/data.qcow2 is missing; run infra/guest-image/build.sh`,
    );
  });

  it("names the bad fields of a manifest", async () => {
    await buildImage(undefined, { ...manifest, kernel: "../../boot/vmlinuz", bootMarker: undefined });
    const error = await refusal(loadImage(imagesDir, "tiny"));
    expect(error.message).toMatch(/has an invalid .*manifest\.json \(bad fields: kernel, bootMarker\)/);
  });

  it("refuses a manifest that is not JSON", async () => {
    await buildImage(undefined, undefined);
    await writeFile(join(imagesDir, "tiny", "manifest.json"), "{");
    const error = await refusal(loadImage(imagesDir, "tiny"));
    expect(error.message).toContain("has no readable manifest.json");
  });
});

describe("specForVm", () => {
  const image: GuestImage = {
    name: "tiny",
    hash: "2a59b8e071dadc84",
    kernel: "/img/tiny-2a59b8e071dadc84/vmlinux",
    initrd: "/img/tiny-2a59b8e071dadc84/initrd.img",
    cmdline: "console=tty0 console=ttyS0 quiet",
    baseDisk: "/img/tiny-2a59b8e071dadc84/data.qcow2",
    bootMarker: "FERRY-BOOT-OK",
  };
  const input = { id: "vm-1", vcpus: 1, memoryMiB: 256, profile: "standard", cpuModel: "qemu64", image, vmDir: "/srv/vms/vm-1" } as const;

  it("lays out the vm's files in its directory", () => {
    expect(specForVm(input)).toEqual({
      id: "vm-1",
      vcpus: 1,
      memoryMiB: 256,
      profile: "standard",
      cpuModel: "qemu64",
      boot: { kernel: image.kernel, initrd: image.initrd, cmdline: image.cmdline },
      disks: [{ id: "data", base: image.baseDisk, overlay: "/srv/vms/vm-1/data.qcow2" }],
      nics: [{ id: "net0", mac: macForVm("vm-1"), network: "user" }],
      display: { vncSocket: "/srv/vms/vm-1/vnc.sock" },
      serial: { logFile: "/srv/vms/vm-1/serial.log" },
      parallel: { logFile: "/srv/vms/vm-1/parallel.log" },
    });
  });

  it("validates the result like any spec", () => {
    expect(() => specForVm({ ...input, vmDir: "relative/vm-1" })).toThrow(
      "disks[0].overlay must be an absolute path (got 'relative/vm-1/data.qcow2')",
    );
  });

  it("refuses less memory than the image needs", () => {
    expect(guestImageCatalog.tiny?.minMemoryMiB).toBe(128);
    expect(() => specForVm({ ...input, memoryMiB: 64 })).toThrow(
      "vm vm-1 has 64 MiB of memory but image 'tiny' needs at least 128 MiB; give it more memory.",
    );
  });
});

describe("macForVm", () => {
  it("is locally administered, deterministic and differs between vms", () => {
    expect(macForVm("vm-1")).toMatch(/^52:54:00(:[0-9a-f]{2}){3}$/);
    expect(macForVm("vm-1")).toBe(macForVm("vm-1"));
    expect(macForVm("vm-1")).not.toBe(macForVm("vm-2"));
    // 0x52: the locally administered bit (0x02) is set, the multicast bit (0x01) is not.
    expect(Number.parseInt(macForVm("vm-1").slice(0, 2), 16) & 0x03).toBe(0x02);
  });
});
