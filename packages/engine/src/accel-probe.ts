// Decides whether this host runs guests under KVM or TCG. /dev/kvm opening is not enough:
// on nested hosts without VMX/SVM, KVM guests hang in the kernel decompressor forever
// (QEMU-NOTES). So the probe boots the tiny guest under KVM and trusts only the boot marker.
import { execFile, spawn } from "node:child_process";
import { constants, closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, watch, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";
import { z } from "zod";
import { EngineError } from "./errors.ts";

const run = promisify(execFile);

export interface AcceleratorVerdict {
  accelerator: "kvm" | "tcg";
  reason: string;
  /** True when the verdict came from cacheFile instead of a probe boot. */
  cached: boolean;
}

export interface ProbeOptions {
  qemuBinary?: string;
  image: { kernel: string; initrd?: string; cmdline: string; bootMarker: string };
  /** JSON file holding the last verdict, keyed by kernel release and QEMU version. */
  cacheFile: string;
  deadlineMs?: number;
  kvmDevice?: string;
}

const cacheSchema = z.object({
  kernelRelease: z.string(),
  qemuVersion: z.string(),
  accelerator: z.enum(["kvm", "tcg"]),
  reason: z.string(),
});

/** Picks kvm or tcg for this host, booting a probe guest only when kernel or QEMU changed. */
export async function probeAccelerator(options: ProbeOptions): Promise<AcceleratorVerdict> {
  const qemuBinary = options.qemuBinary ?? "qemu-system-x86_64";
  const deadlineMs = options.deadlineMs ?? 20_000;
  const kvmDevice = options.kvmDevice ?? "/dev/kvm";
  const qemuVersion = await versionOf(qemuBinary);
  const kernelRelease = os.release();

  const cached = readCache(options.cacheFile);
  if (cached && cached.kernelRelease === kernelRelease && cached.qemuVersion === qemuVersion) {
    return { accelerator: cached.accelerator, reason: cached.reason, cached: true };
  }

  const verdict = await probe(qemuBinary, options.image, kvmDevice, deadlineMs);
  writeFileSync(options.cacheFile, `${JSON.stringify({ kernelRelease, qemuVersion, ...verdict }, null, 2)}\n`);
  return { ...verdict, cached: false };
}

async function probe(
  qemuBinary: string,
  image: ProbeOptions["image"],
  kvmDevice: string,
  deadlineMs: number,
): Promise<{ accelerator: "kvm" | "tcg"; reason: string }> {
  try {
    closeSync(openSync(kvmDevice, constants.O_RDWR));
  } catch (error) {
    return {
      accelerator: "tcg",
      reason: `${kvmDevice} cannot be opened read-write (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    };
  }
  const dir = mkdtempSync(path.join(os.tmpdir(), "ferry-accel-probe-"));
  const serialLog = path.join(dir, "serial.log");
  writeFileSync(serialLog, "");
  const argv = [
    "--pdeathsig",
    "SIGKILL",
    "--",
    qemuBinary,
    "-nodefaults",
    "-no-user-config",
    "-accel",
    "kvm",
    "-machine",
    "q35",
    // A portable model: what the platform would run, and free of `host` quirks.
    "-cpu",
    "qemu64",
    "-m",
    "128M",
    "-display",
    "none",
    "-kernel",
    image.kernel,
    ...(image.initrd ? ["-initrd", image.initrd] : []),
    "-append",
    image.cmdline,
    "-chardev",
    `file,id=serial0,path=${serialLog}`,
    "-serial",
    "chardev:serial0",
  ];
  const child = spawn("setpriv", argv, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr = (stderr + chunk).slice(-4000);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once("close", (code, signal) => resolve({ code, signal })),
  );
  let watcher: ReturnType<typeof watch> | undefined;
  let timer: NodeJS.Timeout | undefined;
  try {
    const outcome = await Promise.race([
      new Promise<"booted">((resolve) => {
        const check = () => {
          if (readFileSync(serialLog, "utf8").includes(image.bootMarker)) resolve("booted");
        };
        watcher = watch(serialLog, check);
        check();
      }),
      exited.then(() => "exited" as const),
      new Promise<"deadline">((resolve) => {
        timer = setTimeout(() => resolve("deadline"), deadlineMs);
      }),
    ]);
    if (outcome === "booted") return { accelerator: "kvm", reason: `a KVM guest reached the boot marker` };
    if (outcome === "exited") {
      const { code, signal } = await exited;
      const said = stderr.trim().split("\n").slice(-3).join(" ").trim();
      return {
        accelerator: "tcg",
        reason: `QEMU under KVM exited (${signal ?? `code ${code}`}) before the boot marker${said ? `: ${said}` : ""}`,
      };
    }
    return { accelerator: "tcg", reason: `KVM guest did not reach the boot marker within ${Math.round(deadlineMs / 1000)} s` };
  } finally {
    clearTimeout(timer);
    watcher?.close();
    child.kill("SIGKILL");
    await exited;
    rmSync(dir, { recursive: true, force: true });
  }
}

function readCache(cacheFile: string): z.infer<typeof cacheSchema> | undefined {
  if (!existsSync(cacheFile)) return undefined;
  try {
    const parsed = cacheSchema.safeParse(JSON.parse(readFileSync(cacheFile, "utf8")));
    return parsed.success ? parsed.data : undefined;
  } catch {
    // A half-written or hand-edited cache is simply re-probed.
    return undefined;
  }
}

async function versionOf(qemuBinary: string): Promise<string> {
  try {
    const { stdout } = await run(qemuBinary, ["--version"]);
    return stdout.split("\n")[0]?.trim() ?? "";
  } catch (error) {
    throw new EngineError(
      "qemu_not_found",
      `QEMU binary not found at ${qemuBinary} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message}). Install the Debian package qemu-system-x86 or set FERRY_QEMU_BINARY.`,
      { binary: qemuBinary, debianPackage: "qemu-system-x86" },
    );
  }
}
