// Boots the tiny guest image with the argv toQemuArgv builds, once per hardware profile, and
// reads the guest's own reports: it found its disk, and it reached the parallel port.
import { execFile, spawn, type ChildProcess } from "node:child_process";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterEach, describe, expect, it } from "vitest";
import { loadImage, specForVm } from "./images.ts";
import { profileNames } from "./profiles.ts";
import { toQemuArgv } from "./qemu-argv.ts";

const imagesDir = process.env.FERRY_IMAGES_DIR ?? "/var/lib/ferry/images";
const qemuBinary = process.env.FERRY_QEMU_BINARY ?? "/usr/bin/qemu-system-x86_64";
const qemuImg = process.env.FERRY_QEMU_IMG ?? "/usr/bin/qemu-img";

let qemu: ChildProcess | undefined;
let vmDir: string | undefined;

afterEach(async () => {
  // Other engineers and tests run QEMU on the same host: kill ours by pid, nothing else.
  if (qemu?.pid !== undefined && qemu.exitCode === null && qemu.signalCode === null) {
    const exited = new Promise((resolve) => qemu?.once("exit", resolve));
    qemu.kill("SIGKILL");
    await exited;
  }
  qemu = undefined;
  if (vmDir !== undefined) await rm(vmDir, { recursive: true, force: true });
  vmDir = undefined;
});

async function readOrEmpty(file: string): Promise<string> {
  return readFile(file, "utf8").catch(() => "");
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs: number, describeState: () => Promise<string>) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    if (qemu?.exitCode !== null || qemu.signalCode !== null) break;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}; ${await describeState()}`);
}

describe("toQemuArgv boots the tiny guest", () => {
  it.each(profileNames)("under the %s profile", async (profile) => {
    const image = await loadImage(imagesDir, "tiny");
    vmDir = await mkdtemp(join(tmpdir(), `ferry-argv-${profile}-`));
    const spec = specForVm({ id: `argv-${profile}`, vcpus: 1, memoryMiB: 256, profile, cpuModel: "qemu64", image, vmDir });
    await promisify(execFile)(qemuImg, ["create", "-q", "-f", "qcow2", "-b", image.baseDisk, "-F", "qcow2", spec.disks[0]!.overlay]);
    const argv = toQemuArgv(spec, {
      accelerator: "tcg",
      qmpSocket: join(vmDir, "qmp.sock"),
      pidFile: join(vmDir, "qemu.pid"),
      tcgTranslationCacheMiB: 64,
    });
    let stderr = "";
    qemu = spawn(qemuBinary, argv, { stdio: ["ignore", "ignore", "pipe"] });
    qemu.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));

    const serialLog = spec.serial.logFile;
    const parallelLog = spec.parallel.logFile;
    const state = async () =>
      `QEMU exit=${qemu?.exitCode} signal=${qemu?.signalCode} stderr=${JSON.stringify(stderr)} serial=${JSON.stringify(await readOrEmpty(serialLog))}`;
    await waitFor("the guest to mount its disk", async () => (await readOrEmpty(serialLog)).includes("FERRY-DISK-OK"), 30_000, state);
    await waitFor("the parallel port", async () => (await readOrEmpty(parallelLog)).includes("FERRY-PARALLEL-OK"), 10_000, state);

    const serial = await readOrEmpty(serialLog);
    expect(serial).toContain(`${image.bootMarker} kernel=`);
    expect(serial).toContain(profile === "compat" ? "FERRY-DISK-OK /dev/sda" : "FERRY-DISK-OK /dev/vda");
    expect((await stat(spec.display!.vncSocket)).isSocket()).toBe(true);
    expect(Number(await readFile(join(vmDir, "qemu.pid"), "utf8"))).toBe(qemu.pid);
  });
});
