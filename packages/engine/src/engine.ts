// The engine a worker opens once: it owns a runDir, the QEMU processes started from it, and
// the rules that decide whether a guest state may load here.
import { execFile } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";
import { EngineError } from "./errors.ts";
import type { GuestStateSink } from "./guest-state-sink.ts";
import {
  assertGuestStateMatches,
  type GuestStateManifest,
  type GuestStateSource,
  guestStateIdentity,
  guestStateManifestSchema,
  manifestMemoryLayout,
} from "./guest-state.ts";
import { canTransition } from "./lifecycle.ts";
import { effectiveMemoryLayout, guestMemoryBytes } from "./qemu-argv.ts";
import { coldBootMemoryLayout } from "./qemu-version.ts";
import type { MemoryLayout } from "./spec.ts";
import { checkUnixSocketPath, removeSocketDir } from "./socket-paths.ts";
import { parseVmSpec, type VmSpec } from "./spec.ts";
import { CompressorHelper } from "./compressor.ts";
import { type EngineLogger, saveCompressorArgs, Vm, type VmHost } from "./vm.ts";

const run = promisify(execFile);
// From Debian's zstd package, on the PATH.
const zstdBinary = "zstd";

export interface EngineOptions {
  /** Where per-process pidfiles and sockets live; cleaned of a previous run's leftovers at open. */
  runDir: string;
  qemuBinary?: string;
  qemuImgBinary?: string;
  accelerator: "kvm" | "tcg";
  tcgTranslationCacheMiB?: number;
  log?: EngineLogger;
}

export interface StartOptions {
  /** A line the guest prints on its serial port once booted; the vm is `booting` until then. */
  bootMarker?: string;
  /** How long the guest may take to print the boot marker before the vm is failed. */
  bootTimeoutMs?: number;
}

export interface RestoreOptions {
  /** Restore as a clone: a new vm continuing the guest state vm `cloneOf` saved (a lab's golden point). */
  cloneOf?: string;
  /**
   * The memory file a devices-only guest state was saved beside (Engine.shareMemory): QEMU maps
   * it copy-on-write as the guest's RAM, so every vm restored from it shares its untouched pages.
   * It must not change while any vm maps it.
   */
  sharedMemory?: string;
}

export interface ShareMemoryOptions {
  /** Where the guest's RAM is written: a new file, or one this will overwrite. */
  memoryFile: string;
  /** Receives the devices-only guest state (zstd), and is ended. */
  devices: GuestStateSink;
}

/** Where a migration destination listens. */
export type IncomingListen = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

/** Runs, saves, restores and moves vms with QEMU on this host. Open one per worker. */
export class Engine {
  readonly runDir: string;
  readonly accelerator: "kvm" | "tcg";
  readonly qemuVersion: string;
  readonly qemuImgBinary: string;
  #host: VmHost;
  #vms = new Set<Vm>();

  private constructor(options: EngineOptions, binaries: { qemu: string; qemuImg: string }, qemuVersion: string) {
    this.runDir = options.runDir;
    this.accelerator = options.accelerator;
    this.qemuVersion = qemuVersion;
    this.qemuImgBinary = binaries.qemuImg;
    this.#host = {
      runDir: options.runDir,
      qemuBinary: binaries.qemu,
      setprivBinary: "setpriv",
      zstdBinary,
      compressor: new CompressorHelper(zstdBinary, saveCompressorArgs),
      qemuVersion,
      accelerator: options.accelerator,
      ...(options.tcgTranslationCacheMiB === undefined ? {} : { tcgTranslationCacheMiB: options.tcgTranslationCacheMiB }),
      ...(options.log ? { log: options.log } : {}),
      forget: (vm) => this.#vms.delete(vm),
    };
  }

  /** Checks the binaries, creates runDir and kills QEMUs a previous worker run left behind. */
  static async open(options: EngineOptions): Promise<Engine> {
    const qemu = options.qemuBinary ?? "qemu-system-x86_64";
    const qemuImg = options.qemuImgBinary ?? "qemu-img";
    const version = await versionOf(qemu, "QEMU binary", "qemu-system-x86", "FERRY_QEMU_BINARY");
    await versionOf(qemuImg, "qemu-img binary", "qemu-utils", "FERRY_QEMU_IMG_BINARY");
    await versionOf(zstdBinary, "zstd binary", "zstd", undefined);
    await versionOf("setpriv", "setpriv binary", "util-linux", undefined);
    const match = version.match(/version (\d+\.\d+\.\d+)/);
    if (!match?.[1]) {
      throw new EngineError("qemu_not_found", `${qemu} --version printed no QEMU version ('${version.trim()}'). Point qemuBinary at qemu-system-x86_64.`);
    }
    mkdirSync(options.runDir, { recursive: true });
    await cleanStaleProcesses(options.runDir, options.log);
    const engine = new Engine(options, { qemu, qemuImg }, match[1]);
    engine.#host.compressor.warm();
    return engine;
  }

  /** The memory layout a vm cold-booted here should get (exact, unless TCG on a QEMU before 9.0). */
  get coldBootMemoryLayout(): MemoryLayout {
    return coldBootMemoryLayout(this.accelerator, this.qemuVersion);
  }

  /** The vms whose QEMU this engine started and that are still alive. */
  get vms(): readonly Vm[] {
    return [...this.#vms];
  }

  /**
   * Boots a vm: creates its disk overlays if missing, starts QEMU; `booting`, then `running`.
   * Give the spec this host's coldBootMemoryLayout (unset: trimmed under TCG, as before it was
   * recorded), record it, and give it to every restore and migration until the next cold boot.
   */
  async start(spec: VmSpec, options: StartOptions = {}): Promise<Vm> {
    const parsed = parseVmSpec(spec);
    const valid = { ...parsed, memoryLayout: effectiveMemoryLayout(parsed, this.accelerator) };
    await this.#prepareDisks(valid);
    const vm = await this.#launch(valid, {});
    try {
      await vm.boot(options);
    } catch (error) {
      await vm.fail(`the vm did not start: ${(error as Error).message}`);
      throw error;
    }
    return vm;
  }

  /**
   * Starts a new QEMU for `spec` and loads a saved guest state into it; resolves `running`.
   * The manifest is checked against the spec and this host before QEMU starts. Pass a local
   * file as `{ file }` when there is one: it is verified before QEMU reads it, and it is faster.
   * A state loads only into the vm that saved it, or as a clone (`options.cloneOf`). A spec
   * without a memory layout takes the one the state was saved with.
   */
  async restore(spec: VmSpec, source: GuestStateSource, manifest: GuestStateManifest, options: RestoreOptions = {}): Promise<Vm> {
    const given = parseVmSpec(spec);
    const parsed = guestStateManifestSchema.safeParse(manifest);
    if (!parsed.success) {
      throw new EngineError(
        "state_corrupt",
        `the manifest given for vm ${given.id} is not a ferry-guest-state/1 manifest (${parsed.error.issues
          .map((i) => i.path.join(".") || "manifest")
          .join(", ")} invalid). Pass the manifest saveState returned.`,
      );
    }
    const valid = { ...given, memoryLayout: given.memoryLayout ?? manifestMemoryLayout(parsed.data) };
    assertGuestStateMatches(valid.id, parsed.data, await guestStateIdentity(valid, this.#host), options.cloneOf);
    if (options.sharedMemory !== undefined || parsed.data.sharedMemory) this.#assertMemoryFile(valid, parsed.data, options.sharedMemory);
    await this.#prepareDisks(valid);
    const vm = await this.#launch(valid, {
      restore: source,
      ...(options.sharedMemory === undefined ? {} : { memoryFile: { path: options.sharedMemory, shared: false } }),
    });
    await vm.loadState(source, parsed.data);
    return vm;
  }

  /**
   * Splits a guest state in two for clones to share (a lab's golden point on this host): loads
   * it, without running the guest, into a QEMU whose RAM is `memoryFile` (mapped shared, so the
   * RAM lands in the file), then saves the devices alone into `devices`. Returns that state's
   * manifest; restore it with `{ sharedMemory: memoryFile }`. `spec` is the saving vm's (its
   * disks are opened, so give copies of the overlays).
   */
  async shareMemory(spec: VmSpec, source: { file: string }, manifest: GuestStateManifest, options: ShareMemoryOptions): Promise<GuestStateManifest> {
    const given = parseVmSpec(spec);
    const parsed = guestStateManifestSchema.safeParse(manifest);
    if (!parsed.success || parsed.data.sharedMemory) {
      throw new EngineError(
        "state_corrupt",
        `the manifest given for vm ${given.id} is not that of a whole ferry-guest-state/1 (memory and devices). Pass the manifest saveState returned.`,
      );
    }
    const valid = { ...given, memoryLayout: given.memoryLayout ?? manifestMemoryLayout(parsed.data) };
    assertGuestStateMatches(valid.id, parsed.data, await guestStateIdentity(valid, this.#host));
    await this.#prepareDisks(valid);
    rmSync(options.memoryFile, { force: true });
    // -S: a state saved while the guest ran would otherwise run once loaded, and write to the disk copy.
    const vm = await this.#launch(valid, { restore: source, memoryFile: { path: options.memoryFile, shared: true }, startPaused: true });
    try {
      await vm.loadState(source, parsed.data, { paused: true });
      return await vm.saveState(options.devices, { sharedMemory: true });
    } finally {
      await vm.stop({ graceMs: 0 });
    }
  }

  // Without its file a devices-only state loads "successfully" into zeroed RAM (a dead guest),
  // and QEMU would create a missing file; a whole state loaded over the file writes every page.
  #assertMemoryFile(spec: VmSpec, manifest: GuestStateManifest, memoryFile: string | undefined): void {
    if (memoryFile === undefined) {
      throw new EngineError(
        "state_mismatch",
        `vm ${spec.id}'s guest state holds its devices alone; its RAM is in the memory file it was saved beside. Restore it with { sharedMemory: <that file> }.`,
        { vmId: spec.id },
      );
    }
    if (!manifest.sharedMemory) {
      throw new EngineError(
        "state_mismatch",
        `vm ${spec.id}'s guest state holds its whole memory, so memory file ${memoryFile} would be of no use. Restore it without sharedMemory, or from the devices-only state Engine.shareMemory saved.`,
        { vmId: spec.id },
      );
    }
    const layout = effectiveMemoryLayout(spec, this.accelerator);
    const expected = guestMemoryBytes(spec.memoryMiB, layout);
    let size: number;
    try {
      size = statSync(memoryFile).size;
    } catch (error) {
      throw new EngineError(
        "restore_failed",
        `cannot read vm ${spec.id}'s memory file ${memoryFile} (${(error as NodeJS.ErrnoException).code}). Share the guest state's memory again (Engine.shareMemory).`,
        { vmId: spec.id },
      );
    }
    if (size !== expected) {
      throw new EngineError(
        "state_mismatch",
        `vm ${spec.id}'s memory file ${memoryFile} holds ${size} bytes but its ${spec.memoryMiB} MiB of RAM take ${expected} with memory layout ${layout}. Share the guest state's memory again (Engine.shareMemory).`,
        { vmId: spec.id },
      );
    }
  }

  /**
   * Starts QEMU waiting for an incoming live migration on `listen`; the vm is `resuming` until
   * it arrives. Give the spec the memory layout the source runs with (the stream's RAM size must match).
   */
  async prepareIncoming(spec: VmSpec, options: { listen: IncomingListen }): Promise<Vm> {
    const parsed = parseVmSpec(spec);
    const valid = { ...parsed, memoryLayout: effectiveMemoryLayout(parsed, this.accelerator) };
    await this.#prepareDisks(valid);
    const uri =
      options.listen.kind === "tcp"
        ? `tcp:${options.listen.host}:${options.listen.port}`
        : `unix:${checkUnixSocketPath(options.listen.path, `the migration socket of vm ${valid.id}`)}`;
    const vm = await this.#launch(valid, { incoming: "defer" });
    try {
      await vm.listenForMigration(uri);
    } catch (error) {
      await vm.fail((error as Error).message);
      throw error;
    }
    return vm;
  }

  /** Stops every vm this engine owns (ACPI for graceMs, then quit, then SIGKILL). */
  async shutdown(options: { graceMs?: number } = {}): Promise<void> {
    await Promise.all(
      [...this.#vms].map((vm) =>
        canTransition(vm.state, "stopped")
          ? vm.stop(options)
          : vm.fail(`the engine shut down while the vm was ${vm.state}`),
      ),
    );
    this.#host.compressor.close();
  }

  async #launch(spec: VmSpec, launch: Parameters<typeof Vm.launch>[2]): Promise<Vm> {
    const vm = await Vm.launch(this.#host, spec, launch);
    this.#vms.add(vm);
    return vm;
  }

  async #prepareDisks(spec: VmSpec): Promise<void> {
    for (const disk of spec.disks) {
      if (!existsSync(disk.base)) {
        throw new EngineError(
          "image_not_found",
          `disk ${disk.id} of vm ${spec.id} needs base image ${disk.base}, which does not exist. Build or fetch the image first.`,
        );
      }
      if (existsSync(disk.overlay)) continue;
      mkdirSync(path.dirname(disk.overlay), { recursive: true });
      try {
        await run(this.qemuImgBinary, ["create", "-q", "-f", "qcow2", "-b", disk.base, "-F", "qcow2", disk.overlay]);
      } catch (error) {
        const stderr = (error as { stderr?: string }).stderr?.trim();
        throw new EngineError(
          "qemu_img_failed",
          `qemu-img could not create overlay ${disk.overlay} on ${disk.base}: ${stderr || (error as Error).message}. Check the base image and free disk space.`,
        );
      }
    }
  }
}

async function versionOf(binary: string, what: string, debianPackage: string, setting: string | undefined): Promise<string> {
  try {
    const { stdout } = await run(binary, ["--version"]);
    return stdout;
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    throw new EngineError(
      "qemu_not_found",
      `${what} not found at ${binary} (${code ?? (error as Error).message}). Install the Debian package ${debianPackage}${
        setting ? ` or set ${setting}` : ""
      }.`,
      { binary, debianPackage },
    );
  }
}

// A worker that died (even by SIGKILL) took its QEMUs with it through pdeathsig, but a pid
// file can remain; and on a host where that failed, the QEMU is still alive. Either way the
// entry is cleared before this worker starts its own.
async function cleanStaleProcesses(runDir: string, log: EngineLogger | undefined): Promise<void> {
  for (const entry of readdirSync(runDir, { withFileTypes: true })) {
    if (!entry.isDirectory()) continue;
    const dir = path.join(runDir, entry.name);
    const pidFile = path.join(dir, "qemu.pid");
    if (existsSync(pidFile)) {
      const pid = Number.parseInt(readFileSync(pidFile, "utf8").trim(), 10);
      if (Number.isInteger(pid) && pid > 0 && isQemuOf(pid, pidFile)) {
        log?.warn({ pid, pidFile }, "killing QEMU left by a previous worker run");
        try {
          process.kill(pid, "SIGKILL");
        } catch {
          // It exited between the check and the kill.
        }
        await waitGone(pid);
      }
    }
    removeSocketDir(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

// The pid is ours only if that process is a QEMU started with this very pidfile: pids are
// reused, and killing an unrelated process would be worse than leaving a file behind.
function isQemuOf(pid: number, pidFile: string): boolean {
  try {
    const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
    return path.basename(argv[0] ?? "").startsWith("qemu-system") && argv.includes(pidFile);
  } catch {
    return false;
  }
}

// The killed process is not our child, so there is no exit event to wait on; /proc tells
// when it is gone (or a zombie awaiting its new parent's reap).
async function waitGone(pid: number): Promise<void> {
  for (let i = 0; i < 500; i++) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      if (stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z")) return;
    } catch {
      return;
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
