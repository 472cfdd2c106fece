// One supervised QEMU process running one vm. The engine creates these (Engine.start,
// Engine.restore, Engine.prepareIncoming); a Vm drives its QEMU over QMP, follows its
// lifecycle table and notices when QEMU dies on its own.
//
// 1. Launch: spawn QEMU under `setpriv --pdeathsig SIGKILL` so the kernel kills it when the
//    worker dies, with a pidfile in a directory of its own under runDir and its sockets in a
//    short folder of their own (socket-paths.ts).
// 2. Supervision: an exit nobody asked for moves the vm to `failed` with the exit status and
//    the last lines of QEMU's stderr. Every exit removes the process's runtime files.
// 3. Operations: stop, reset, saveState (stream → zstd → file → sink), liveMigrate.
import { type ChildProcess, spawn } from "node:child_process";
import { EventEmitter } from "node:events";
import { closeSync, existsSync, fstatSync, mkdirSync, openSync, readSync, rmSync, statSync, watch } from "node:fs";
import { open } from "node:fs/promises";
import net from "node:net";
import path from "node:path";
import type { Writable } from "node:stream";
import type { Compression, CompressorHelper } from "./compressor.ts";
import { EngineError } from "./errors.ts";
import type { GuestStateSink } from "./guest-state-sink.ts";
import {
  DigestStream,
  digestFile,
  type GuestStateManifest,
  type GuestStateSource,
  guestStateIdentity,
  isGuestStateFile,
  streamCorruption,
} from "./guest-state.ts";
import { assertTransition, type VmLifecycleState } from "./lifecycle.ts";
import { toQemuArgv } from "./qemu-argv.ts";
import { QmpClient } from "./qmp-client.ts";
import { createSocketDir, removeSocketDir } from "./socket-paths.ts";
import type { VmSpec } from "./spec.ts";

/** Why a vm's QEMU is gone when nobody stopped it. */
export interface VmFailure {
  reason: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  /** The last ~20 lines QEMU wrote to stderr. */
  stderrTail: string;
}

/**
 * How Vm.stop ended QEMU: the guest powered itself off on the ACPI button, QEMU quit when told
 * to (after the grace, or at once with graceMs 0), or it had to be killed.
 */
export type VmStopOutcome = "powered-off" | "quit" | "killed";

export interface VmStateChange {
  previous: VmLifecycleState;
  action: string;
  failure?: VmFailure;
}

/** Figures from QEMU's own query-migrate, taken once the source reached postmigrate. */
export interface LiveMigrationFigures {
  downtimeMs: number;
  totalTimeMs: number;
  setupTimeMs?: number;
  bytesSent: number;
}

export interface LiveMigrateOptions {
  /** QEMU's downtime-limit: the longest pause it may take to send the last dirty pages. */
  downtimeLimitMs: number;
  /** Give up (migrate_cancel, the source carries on) after this long. */
  timeoutMs: number;
  /** Bytes per second; default lifts QEMU's 128 MiB/s cap. */
  maxBandwidth?: number;
  /** Let QEMU throttle the guest's vCPUs if it dirties memory faster than it can be sent. */
  autoConverge?: boolean;
}

/** A logger with pino's call shape; the engine logs lifecycle changes and QEMU exits. */
export interface EngineLogger {
  info(fields: Record<string, unknown>, message: string): void;
  warn(fields: Record<string, unknown>, message: string): void;
  error(fields: Record<string, unknown>, message: string): void;
}

/** What every vm needs from the engine that owns it. */
export interface VmHost {
  runDir: string;
  qemuBinary: string;
  setprivBinary: string;
  zstdBinary: string;
  /** Starts a save's zstd (saveCompressorArgs) outside the worker's process. */
  compressor: CompressorHelper;
  qemuVersion: string;
  accelerator: "kvm" | "tcg";
  tcgTranslationCacheMiB?: number;
  log?: EngineLogger;
  forget(vm: Vm): void;
}

// QEMU's default migration bandwidth is 128 MiB/s even for a stopped guest (QEMU-NOTES);
// 1 TiB/s means "as fast as the stream is read".
const unlimitedBandwidth = 2 ** 40;
// Set on QEMU's command line rather than over QMP, which saves every launch and every save a
// round trip. These are properties of QEMU's migration object (x- marks them as not a stable
// interface; a guest state records the QEMU version it needs, see guest-state.ts).
const migrationDefaults = ["-global", "migration.x-events=on", "-global", `migration.x-max-bandwidth=${unlimitedBandwidth}`];
/** How a save compresses QEMU's stream: zstd level 1 on two threads, stdin to stdout. */
export const saveCompressorArgs = ["-1", "-T2", "-q", "-c"] as const;
// A restoring QEMU reads the migration stream from this inherited descriptor (migrate-incoming fd:3).
const stateInputFd = 3;

/** A restore under way: its source, the zstd writing into QEMU's fd 3, and a file's digest. */
interface PendingRestore {
  source: GuestStateSource;
  zstd: ChildProcess;
  fileDigest?: Promise<{ bytes: number; sha256: string }>;
}
const stderrTailLines = 20;
const qmpConnectTimeoutMs = 10_000;
// QEMU connects to a local socket at once; this bounds a save whose socket it cannot reach.
const stateConnectTimeoutMs = 30_000;

export interface Vm {
  on(event: "state", listener: (state: VmLifecycleState, change: VmStateChange) => void): this;
  off(event: "state", listener: (state: VmLifecycleState, change: VmStateChange) => void): this;
  emit(event: "state", state: VmLifecycleState, change: VmStateChange): boolean;
}

/** A vm's running QEMU process. Get one from Engine.start, Engine.restore or Engine.prepareIncoming. */
export class Vm extends EventEmitter {
  readonly id: string;
  readonly spec: VmSpec;
  readonly accelerator: "kvm" | "tcg";
  readonly pid: number;
  state: VmLifecycleState = "creating";
  failure: VmFailure | null = null;
  /** How stop() ended this vm's QEMU; null until it did. */
  stopOutcome: VmStopOutcome | null = null;

  #host: VmHost;
  #process: ChildProcess;
  #qmp: QmpClient | undefined;
  #processDir: string;
  #serialOffset: number;
  #stderr: string[] = [];
  #expectExit = false;
  #exited: Promise<void>;
  #hasExited = false;
  #vncSocketInode: number | undefined;
  #bootMarker: string | undefined;
  #bootTimeoutMs = 120_000;
  #serialWatches = new Set<() => void>();
  #maxBandwidth = unlimitedBandwidth;
  #ignoreShared = false;
  #memoryFile: { path: string; shared: boolean } | undefined;
  #guestPoweredOff = false;
  #restore: PendingRestore | undefined;

  private constructor(host: VmHost, spec: VmSpec, child: ChildProcess, processDir: string, serialOffset: number) {
    super();
    this.#host = host;
    this.id = spec.id;
    this.spec = spec;
    this.accelerator = host.accelerator;
    this.#process = child;
    this.pid = child.pid ?? -1;
    this.#processDir = processDir;
    this.#serialOffset = serialOffset;
    child.stderr?.setEncoding("utf8");
    let partial = "";
    child.stderr?.on("data", (chunk: string) => {
      const lines = (partial + chunk).split("\n");
      partial = lines.pop() ?? "";
      this.#stderr.push(...lines);
      if (this.#stderr.length > stderrTailLines) this.#stderr.splice(0, this.#stderr.length - stderrTailLines);
    });
    child.stderr?.on("end", () => {
      if (partial) this.#stderr.push(partial);
    });
    this.#exited = new Promise((resolve) => {
      child.once("close", (code, signal) => {
        this.#hasExited = true;
        this.#onExit(code, signal);
        resolve();
      });
    });
  }

  // 1. Launch ------------------------------------------------------------------------------

  /**
   * Spawns QEMU for `spec` and connects QMP; the vm is in `creating` when this resolves.
   * `restore` readies QEMU to load that guest state (zstd started, a file's digest begun; call
   * loadState with it); `incoming` is an -incoming value ("defer" for a live migration);
   * `memoryFile` backs the guest's RAM with a file (see LaunchOptions); `startPaused` keeps the
   * guest from running after a load, even one of a state saved while it ran.
   */
  static async launch(
    host: VmHost,
    spec: VmSpec,
    launch: { incoming?: string; restore?: GuestStateSource; memoryFile?: { path: string; shared: boolean }; startPaused?: boolean },
  ): Promise<Vm> {
    const processDir = path.join(host.runDir, `${spec.id}-${process.pid}-${Date.now().toString(36)}`);
    mkdirSync(processDir, { recursive: true });
    let socketDir: string;
    try {
      socketDir = createSocketDir(processDir);
    } catch (error) {
      rmSync(processDir, { recursive: true, force: true });
      throw error;
    }
    const qmpSocket = path.join(socketDir, "qmp.sock");
    const pidFile = path.join(processDir, "qemu.pid");
    let argv: string[];
    try {
      argv = toQemuArgv(spec, {
        accelerator: host.accelerator,
        qmpSocket,
        pidFile,
        ...(launch.restore ? { incoming: "defer" } : launch.incoming === undefined ? {} : { incoming: launch.incoming }),
        ...(host.tcgTranslationCacheMiB === undefined ? {} : { tcgTranslationCacheMiB: host.tcgTranslationCacheMiB }),
        ...(launch.memoryFile ? { memoryFile: launch.memoryFile } : {}),
        ...(launch.startPaused ? { startPaused: true } : {}),
      });
    } catch (error) {
      removeProcessDir(processDir);
      throw error;
    }
    for (const file of [spec.serial.logFile, spec.parallel.logFile]) mkdirSync(path.dirname(file), { recursive: true });
    if (spec.display) mkdirSync(path.dirname(spec.display.vncSocket), { recursive: true });
    // The serial log is appended to across restarts and restores; this process's output
    // starts at today's end of file.
    const serialFd = openSync(spec.serial.logFile, "a");
    const serialOffset = fstatSync(serialFd).size;
    closeSync(serialFd);
    let stateFileFd: number | undefined;
    if (launch.restore && isGuestStateFile(launch.restore)) {
      try {
        stateFileFd = openSync(launch.restore.file, "r");
      } catch (error) {
        removeProcessDir(processDir);
        throw new EngineError(
          "restore_failed",
          `cannot read vm ${spec.id}'s guest state file ${launch.restore.file} (${(error as NodeJS.ErrnoException).code}). Fetch the guest state first.`,
          { vmId: spec.id },
        );
      }
    }
    // Hashing starts before the spawns: QEMU may read only once it is done, and a spawn
    // blocks Node's thread for a few ms while the first blocks are read.
    const fileDigest = launch.restore && isGuestStateFile(launch.restore) ? handled(digestFile(launch.restore.file)) : undefined;

    const child = spawn(host.setprivBinary, ["--pdeathsig", "SIGKILL", "--", host.qemuBinary, ...argv, ...migrationDefaults], {
      // fd 3 (a socket pair) carries a restore's migration stream into QEMU.
      stdio: launch.restore ? ["ignore", "ignore", "pipe", "pipe"] : ["ignore", "ignore", "pipe"],
    });
    const vm = new Vm(host, spec, child, processDir, serialOffset);
    vm.#memoryFile = launch.memoryFile;
    const spawned = await new Promise<Error | null>((resolve) => {
      child.once("spawn", () => resolve(null));
      child.once("error", (error) => resolve(error));
    });
    if (spawned) {
      if (stateFileFd !== undefined) closeSync(stateFileFd);
      removeProcessDir(processDir);
      throw new EngineError("qemu_not_found", `cannot start ${host.setprivBinary} for QEMU: ${spawned.message}. Install util-linux and qemu-system-x86.`);
    }
    vm.#expectExit = true;
    if (launch.restore) {
      // zstd starts while QEMU initialises and writes into QEMU's end of the pair (QEMU reads
      // it once loadState says so), so the uncompressed stream never passes through Node. A
      // file is being hashed meanwhile: by the time QMP is up it is usually verified.
      const stateInput = child.stdio[stateInputFd] as net.Socket;
      const zstd = spawn(host.zstdBinary, ["-d", "-q", "-c"], { stdio: [stateFileFd ?? "pipe", stateInput, "ignore"] });
      zstd.once("error", () => undefined);
      stateInput.destroy();
      if (stateFileFd !== undefined) closeSync(stateFileFd);
      vm.#restore = {
        source: launch.restore,
        zstd,
        ...(fileDigest ? { fileDigest } : {}),
      };
    }
    try {
      vm.#qmp = await vm.#connectQmp(qmpSocket);
      vm.#qmp.on("event", (event) => {
        if (event.event === "SHUTDOWN" && event.data?.guest === true) vm.#guestPoweredOff = true;
      });
    } catch (error) {
      await vm.#kill();
      throw vm.#exitError(`QEMU for vm ${spec.id} did not come up`, error);
    } finally {
      // Nothing connects to QMP again, so the folder goes now: a worker killed later, whose
      // run folder a test or an operator then deletes, leaves nothing in the temp folder.
      removeSocketDir(processDir);
    }
    vm.#expectExit = false;
    if (spec.display) {
      try {
        vm.#vncSocketInode = statSync(spec.display.vncSocket).ino;
      } catch {
        vm.#vncSocketInode = undefined;
      }
    }
    host.log?.info({ vmId: spec.id, pid: vm.pid, incoming: launch.incoming }, "QEMU started");
    return vm;
  }

  // QEMU creates the QMP socket a few tens of ms after spawn. The socket folder is watched
  // (inotify) so the connection is tried the moment the socket appears; the short timer covers
  // a socket bound but not yet listening (ECONNREFUSED), and QEMU exiting first.
  async #connectQmp(socketPath: string): Promise<QmpClient> {
    const deadline = Date.now() + qmpConnectTimeoutMs;
    let wake: (() => void) | undefined;
    const watcher = watch(path.dirname(socketPath), () => wake?.());
    try {
      for (;;) {
        if (this.#hasExited) {
          throw new EngineError("qemu_exited", `QEMU exited before opening its QMP socket ${socketPath}.`);
        }
        if (existsSync(socketPath)) {
          try {
            return await QmpClient.connect(socketPath, { connectTimeoutMs: Math.max(deadline - Date.now(), 1) });
          } catch (error) {
            const errno = error instanceof EngineError ? error.details?.errno : undefined;
            if (errno !== "ENOENT" && errno !== "ECONNREFUSED") throw error;
          }
        }
        if (Date.now() > deadline) {
          throw new EngineError("qmp_timeout", `QEMU opened no QMP socket at ${socketPath} within ${qmpConnectTimeoutMs} ms.`);
        }
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            wake = undefined;
            resolve();
          };
          const timer = setTimeout(done, 10);
          wake = done;
        });
      }
    } finally {
      watcher.close();
    }
  }

  get #qmpClient(): QmpClient {
    if (!this.#qmp) throw new EngineError("qmp_closed", `vm ${this.id} has no QMP connection.`);
    return this.#qmp;
  }

  /** Moves the lifecycle (checked against the table) and tells listeners. */
  #setState(to: VmLifecycleState, action: string, failure?: VmFailure): void {
    const previous = this.state;
    assertTransition(this.id, previous, to, action);
    this.state = to;
    this.#host.log?.info({ vmId: this.id, from: previous, to, action }, `vm ${to}`);
    this.emit("state", to, { previous, action, ...(failure ? { failure } : {}) });
  }

  /** Resolves once the vm is in `state`; rejects if it ends up stopped or failed first. */
  whenState(state: VmLifecycleState, options: { timeoutMs: number }): Promise<void> {
    if (this.state === state) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const onState = (to: VmLifecycleState, change: VmStateChange) => {
        if (to === state) {
          cleanup();
          resolve();
        } else if (to === "stopped" || to === "failed") {
          cleanup();
          reject(
            new EngineError(
              to === "failed" ? "qemu_exited" : "illegal_transition",
              `vm ${this.id} became ${to} while waiting for ${state}${change.failure ? `: ${change.failure.reason}` : ""}.`,
            ),
          );
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(
          new EngineError("qmp_timeout", `vm ${this.id} did not become ${state} within ${options.timeoutMs} ms (it is ${this.state}).`),
        );
      }, options.timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off("state", onState);
      };
      this.on("state", onState);
    });
  }

  // 2. Supervision -------------------------------------------------------------------------

  #onExit(code: number | null, signal: NodeJS.Signals | null): void {
    for (const stopWatching of this.#serialWatches) stopWatching();
    this.#restore?.zstd.kill("SIGKILL");
    void this.#qmp?.close();
    removeProcessDir(this.#processDir);
    if (this.spec.display && this.#vncSocketInode !== undefined) {
      // Only our own socket: a migration destination on this host may have bound the same path.
      try {
        if (statSync(this.spec.display.vncSocket).ino === this.#vncSocketInode) rmSync(this.spec.display.vncSocket);
      } catch {
        // Already gone.
      }
    }
    this.#host.forget(this);
    this.#host.log?.info({ vmId: this.id, pid: this.pid, code, signal, expected: this.#expectExit }, "QEMU exited");
    if (this.#expectExit || this.state === "stopped" || this.state === "failed") return;
    // The guest shut itself down (poweroff inside it): QEMU ends cleanly; that is a stop, not a crash.
    if (this.#guestPoweredOff && code === 0) {
      this.stopOutcome = "powered-off";
      this.#host.log?.info({ vmId: this.id }, "the guest powered itself off");
      this.#setState("stopped", "guest-poweroff");
      return;
    }
    const failure = this.#failure(`QEMU exited unexpectedly (${describeExit(code, signal)})`, code, signal);
    this.failure = failure;
    this.#host.log?.error({ vmId: this.id, ...failure }, "vm failed");
    this.#setState("failed", "supervise", failure);
  }

  #failure(reason: string, exitCode: number | null, signal: NodeJS.Signals | null): VmFailure {
    return { reason, exitCode, signal, stderrTail: this.#stderr.join("\n") };
  }

  #exitError(what: string, cause: unknown): EngineError {
    const stderr = this.#stderr.join("\n").trim();
    const reason = cause instanceof Error ? cause.message : String(cause);
    return new EngineError(
      "qemu_exited",
      `${what}: ${reason}${stderr ? ` QEMU said: ${stderr}` : ""}. Check the spec's paths and the QEMU installation.`,
      { vmId: this.id, stderrTail: stderr },
    );
  }

  /** Marks the vm failed on purpose (we killed its QEMU), with a reason. */
  async fail(reason: string): Promise<void> {
    if (this.state === "failed" || this.state === "stopped") return;
    this.#expectExit = true;
    await this.#kill();
    const exitCode = this.#process.exitCode;
    const signal = this.#process.signalCode;
    this.failure = this.#failure(reason, exitCode, signal);
    this.#setState("failed", "fail", this.failure);
  }

  async #kill(): Promise<void> {
    if (!this.#hasExited) this.#process.kill("SIGKILL");
    await this.#exited;
  }

  async #waitExit(timeoutMs: number): Promise<boolean> {
    if (this.#hasExited) return true;
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs);
    });
    const exited = await Promise.race([this.#exited.then(() => true as const), timedOut]);
    clearTimeout(timer);
    return exited;
  }

  // 3. Operations --------------------------------------------------------------------------

  /** Runs a QMP command the engine has no method for (screendump, send-key, query-*). */
  execute<T = unknown>(command: string, args?: Record<string, unknown>): Promise<T> {
    return this.#qmpClient.execute<T>(command, args);
  }

  /**
   * The guest's screen as a PNG, full size (for thumbnails and tests). QEMU writes it into the
   * vm's run folder (QMP screendump, format png since 7.1); it is read back and removed.
   */
  async screendump(): Promise<Buffer> {
    const file = path.join(this.#processDir, `screen-${process.hrtime.bigint()}.png`);
    try {
      await this.#qmpClient.execute("screendump", { filename: file, format: "png" });
      const handle = await open(file);
      try {
        return await handle.readFile();
      } finally {
        await handle.close();
      }
    } finally {
      rmSync(file, { force: true });
    }
  }

  /**
   * Resolves with the first serial line this QEMU process wrote that matches `pattern`
   * (lines written before the process started are ignored). Uses inotify, not polling.
   */
  waitForSerial(pattern: RegExp, options: { timeoutMs: number; fromOffset?: number }): Promise<RegExpMatchArray> {
    return new Promise((resolve, reject) => {
      const file = this.spec.serial.logFile;
      const fd = openSync(file, "r");
      let position = options.fromOffset ?? this.#serialOffset;
      let partial = "";
      const decoder = new TextDecoder();
      const buffer = new Uint8Array(64 * 1024);
      let done = false;
      const finish = (outcome: () => void) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        watcher.close();
        closeSync(fd);
        this.#serialWatches.delete(stopWatching);
        outcome();
      };
      const readNew = () => {
        if (done) return;
        for (;;) {
          const n = readSync(fd, buffer, 0, buffer.length, position);
          if (n === 0) break;
          position += n;
          const lines = (partial + decoder.decode(buffer.subarray(0, n), { stream: true })).split("\n");
          partial = lines.pop() ?? "";
          for (const line of lines) {
            // The guest's tty turns "\n" into "\r\n".
            const match = line.replace(/\r$/, "").match(pattern);
            if (match) return finish(() => resolve(match));
          }
        }
      };
      const stopWatching = () =>
        finish(() =>
          reject(new EngineError("qemu_exited", `vm ${this.id}'s QEMU exited before its serial log showed ${pattern}.`)),
        );
      const timer = setTimeout(
        () =>
          finish(() =>
            reject(
              new EngineError("qmp_timeout", `vm ${this.id}'s serial log did not show ${pattern} within ${options.timeoutMs} ms.`, {
                logFile: file,
              }),
            ),
          ),
        options.timeoutMs,
      );
      const watcher = watch(file, readNew);
      this.#serialWatches.add(stopWatching);
      readNew();
    });
  }

  /** After start: waits for the boot marker, then `running`; without one, `running` now. */
  async boot(options: { bootMarker?: string; bootTimeoutMs?: number }): Promise<void> {
    this.#bootMarker = options.bootMarker;
    if (options.bootTimeoutMs !== undefined) this.#bootTimeoutMs = options.bootTimeoutMs;
    this.#setState("booting", "start");
    const status = await this.#qmpClient.execute<{ status: string }>("query-status");
    if (status.status !== "running") await this.#qmpClient.execute("cont");
    this.#watchBoot(this.#serialOffset);
  }

  #watchBoot(fromOffset: number): void {
    const marker = this.#bootMarker;
    if (marker === undefined) {
      this.#setState("running", "start");
      return;
    }
    this.waitForSerial(new RegExp(escapeRegExp(marker)), { timeoutMs: this.#bootTimeoutMs, fromOffset }).then(
      () => {
        if (this.state === "booting") this.#setState("running", "boot");
      },
      (error: EngineError) => {
        if (this.state === "booting" && error.code === "qmp_timeout") {
          void this.fail(`the guest did not print its boot marker '${marker}' within ${this.#bootTimeoutMs} ms`);
        }
      },
    );
  }

  /**
   * ACPI power button (the guest powers off), then QMP quit after graceMs, then SIGKILL;
   * ends `stopped`, with stopOutcome saying which of the three ended QEMU.
   */
  async stop(options: { graceMs?: number } = {}): Promise<void> {
    if (this.state === "stopped" || this.state === "failed") return;
    assertTransition(this.id, this.state, "stopped", "stop");
    this.#expectExit = true;
    const graceMs = options.graceMs ?? 10_000;
    if ((this.state === "running" || this.state === "booting") && graceMs > 0) {
      await this.#qmp?.execute("system_powerdown").catch(() => undefined);
    }
    let outcome: VmStopOutcome = "quit";
    if (!(await this.#waitExit(graceMs))) {
      await this.#qmp?.execute("quit", undefined, { timeoutMs: 2000 }).catch(() => undefined);
      if (!(await this.#waitExit(3000))) {
        await this.#kill();
        outcome = "killed";
      }
    } else if (this.#guestPoweredOff) {
      outcome = "powered-off";
    }
    this.stopOutcome = outcome;
    this.#host.log?.info({ vmId: this.id, outcome, graceMs }, "how the vm stopped");
    this.#setState("stopped", "stop");
  }

  /** Hard reset (system_reset); the vm stays up and boots again. */
  async reset(): Promise<void> {
    assertTransition(this.id, this.state, "booting", "reset");
    const fromOffset = statSync(this.spec.serial.logFile).size;
    await this.#qmpClient.execute("system_reset");
    if (this.#bootMarker !== undefined) {
      this.#setState("booting", "reset");
      this.#watchBoot(fromOffset);
    }
  }

  // QEMU starts with the cap lifted (migrationDefaults); only a live migration with a
  // bandwidth of its own changes it, and the next save or migration puts it back.
  async #setMaxBandwidth(bytesPerSecond: number): Promise<void> {
    if (this.#maxBandwidth === bytesPerSecond) return;
    await this.#qmpClient.execute("migrate-set-parameters", { "max-bandwidth": bytesPerSecond });
    this.#maxBandwidth = bytesPerSecond;
  }

  // x-ignore-shared: a save leaves RAM that is a shared memory file out of the stream (and
  // the loading side must be told, or it misreads the stream). No -global property for it in 7.2.
  async #setIgnoreShared(on: boolean): Promise<void> {
    if (this.#ignoreShared === on) return;
    await this.#qmpClient.execute("migrate-set-capabilities", { capabilities: [{ capability: "x-ignore-shared", state: on }] });
    this.#ignoreShared = on;
  }

  /**
   * Pauses the guest and streams its state through `zstd -1` into `sink` (which is ended; its
   * chunks are lent, see GuestStateSink). zstd writes a file in runDir that the sink is fed from
   * as it grows (up to the compressed state's size, nameless once open), so a slow sink does
   * not hold QEMU's save back.
   * The vm is `suspended` afterwards: QEMU is alive and paused; stop it or keep it.
   * `sharedMemory` leaves the RAM in the shared memory file QEMU was launched with: the state
   * holds the devices alone and loads only beside that file (Engine.shareMemory).
   */
  async saveState(sink: GuestStateSink, options: { timeoutMs?: number; sharedMemory?: boolean } = {}): Promise<GuestStateManifest> {
    assertTransition(this.id, this.state, "suspending", "suspend");
    if (options.sharedMemory && !this.#memoryFile?.shared) {
      throw new EngineError(
        "save_failed",
        `vm ${this.id}'s RAM is not a shared memory file, so its devices cannot be saved without it. Launch it with a shared memory file (Engine.shareMemory).`,
        { vmId: this.id },
      );
    }
    const identity = await guestStateIdentity(this.spec, this.#host);
    const socketDir = createSocketDir(this.#processDir);
    this.#setState("suspending", "suspend");
    const qmp = this.#qmpClient;
    const timeoutMs = options.timeoutMs ?? 600_000;
    const socketPath = path.join(socketDir, "state-out.sock");
    const compressedFile = path.join(this.#processDir, "state-out.zst");
    const digest = new DigestStream();
    // zstd reads QEMU's socket and writes a file itself, as fast as it would alone; Node reads
    // the file behind it in large blocks to hash them and hand them to the sink. Piped through
    // Node instead, every 64 KiB read woke Node and stalled zstd: 1.3× raw QEMU.
    let zstd: Compression | undefined;
    let migrating = false;
    let migrationEnded: Promise<unknown> | undefined;
    const saveFailed = new AbortController();
    try {
      zstd = this.#host.compressor.listen(socketPath, compressedFile);
      // Keep stop → migrate → completed in order: a `cont` during the save would turn it into
      // a live migration (QEMU-NOTES). `stop` replies once the vCPUs are stopped; the helper
      // gets its socket listening meanwhile.
      await Promise.all([zstd.listening, qmp.execute("stop")]);
      await this.#setMaxBandwidth(unlimitedBandwidth);
      await this.#setIgnoreShared(options.sharedMemory === true);
      const finished = handled(qmp.waitForEvent("MIGRATION", { timeoutMs, filter: terminalMigrationStatus }));
      migrationEnded = finished;
      await qmp.execute("migrate", { uri: `unix:${socketPath}` });
      migrating = true;
      await this.#stateConnection(zstd.started, finished, socketPath);
      // Connected: the folder goes now, so a worker killed during the upload leaves none behind.
      removeSocketDir(this.#processDir);
      const streamed = handled(followFile(compressedFile, zstd.exit, digest, sink, saveFailed.signal));
      // A sink that fails ends the save at once, without waiting for QEMU to finish sending.
      const event = await Promise.race([finished, streamed.then(() => finished)]);
      if (event.data?.status !== "completed") {
        throw new EngineError("save_failed", `saving vm ${this.id}'s guest state failed: ${await migrationError(qmp)}.`);
      }
      migrating = false;
      await streamed;
    } catch (error) {
      saveFailed.abort(error);
      zstd?.kill();
      if (migrating) {
        await qmp.execute("migrate_cancel").catch(() => undefined);
        // A `cont` while QEMU is still finishing the save is refused ("Migration is not
        // finalized yet") and would leave the guest paused: let the cancel land first.
        await migrationEnded?.catch(() => undefined);
      }
      sink.abort(error as Error);
      if (!this.#qmp?.closed) {
        await qmp.execute("cont").catch(() => undefined);
        if (this.state === "suspending") this.#setState("running", "suspend");
      }
      throw error instanceof EngineError && error.code === "save_failed"
        ? error
        : new EngineError("save_failed", `saving vm ${this.id}'s guest state failed: ${(error as Error).message}. The vm keeps running; retry the suspend.`, {
            vmId: this.id,
          });
    } finally {
      removeSocketDir(this.#processDir);
      rmSync(compressedFile, { force: true });
    }
    this.#setState("suspended", "suspend");
    return {
      format: "ferry-guest-state/1",
      vmId: this.id,
      ...identity,
      compression: "zstd",
      ...(options.sharedMemory ? { sharedMemory: true as const } : {}),
      streamBytes: digest.bytes,
      sha256: digest.digest(),
      createdAt: new Date().toISOString(),
    };
  }

  // QEMU connects to the save's socket after `migrate` has replied: a socket it cannot reach
  // shows only as a failed MIGRATION event, and the connection would never come.
  async #stateConnection(
    connection: Promise<void>,
    finished: Promise<{ data?: Record<string, unknown> }>,
    socketPath: string,
  ): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const failed = handled(
      finished.then(async (event) => {
        throw new EngineError(
          "save_failed",
          `QEMU did not connect to ${socketPath} to save vm ${this.id}'s guest state (migration ${String(event.data?.status)}; ${await migrationError(this.#qmpClient)}). The vm keeps running; retry the suspend.`,
          { vmId: this.id, socketPath },
        );
      }),
    );
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new EngineError(
              "save_failed",
              `QEMU did not connect to ${socketPath} within ${stateConnectTimeoutMs} ms to save vm ${this.id}'s guest state. The vm keeps running; retry the suspend.`,
              { vmId: this.id, socketPath },
            ),
          ),
        stateConnectTimeoutMs,
      );
    });
    try {
      return await Promise.race([connection, failed, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Loads the guest state this QEMU was launched to restore and resumes it. A file is verified
   * (length and sha256 against the manifest) before QEMU reads a byte; a stream is verified as
   * it passes, and the guest runs only if it matched. `paused`: the guest does not run, the vm
   * ends `suspended` (to save it again).
   */
  async loadState(
    source: GuestStateSource,
    expected: { sha256: string; streamBytes: number; sharedMemory?: true },
    options: { timeoutMs?: number; paused?: boolean } = {},
  ): Promise<void> {
    const restore = this.#restore;
    if (!restore || restore.source !== source) {
      throw new EngineError(
        "restore_failed",
        `vm ${this.id}'s QEMU was not launched to load this guest state. Restore through Engine.restore, which launches it so.`,
        { vmId: this.id },
      );
    }
    this.#setState("resuming", "resume");
    const qmp = this.#qmpClient;
    const timeoutMs = options.timeoutMs ?? 600_000;
    let corrupt: string | undefined;
    try {
      if (expected.sharedMemory) await this.#setIgnoreShared(true);
      const finished = handled(qmp.waitForEvent("MIGRATION", { timeoutMs, filter: terminalMigrationStatus }));
      if (restore.fileDigest) {
        corrupt = streamCorruption(await restore.fileDigest, expected);
        if (corrupt) throw new EngineError("state_corrupt", corrupt);
        await qmp.execute("migrate-incoming", { uri: `fd:${stateInputFd}` });
      } else {
        await qmp.execute("migrate-incoming", { uri: `fd:${stateInputFd}` });
        // The stream's integrity is judged by its sha256, not by zstd's exit: zstd also fails
        // when QEMU gives up reading, and that is a restore failure, not a corrupt state.
        const digest = new DigestStream();
        await feed(source as NodeJS.ReadableStream, digest, restore.zstd.stdin!);
        corrupt = streamCorruption({ bytes: digest.bytes, sha256: digest.digest() }, expected);
        if (corrupt) throw new EngineError("state_corrupt", corrupt);
      }
      const event = await finished;
      if (event.data?.status !== "completed") {
        throw new EngineError("restore_failed", `QEMU could not load the guest state: ${await migrationError(qmp)}`);
      }
      this.#restore = undefined;
      // After a devices-only load the RAM is this vm's own (a copy-on-write mapping of the
      // memory file): its later saves and migrations must carry all of it.
      await this.#setIgnoreShared(false);
      if (options.paused) {
        this.#setState("suspended", "resume");
        return;
      }
      await qmp.execute("cont");
      this.#setState("running", "resume");
    } catch (error) {
      restore.zstd.kill("SIGKILL");
      const reason = corrupt
        ? `guest state for vm ${this.id} is corrupt: ${corrupt}`
        : `restoring vm ${this.id} failed: ${(error as Error).message}`;
      await this.fail(reason);
      throw corrupt
        ? new EngineError("state_corrupt", `${reason}. Nothing was resumed; restore from an intact copy of the guest state.`, {
            vmId: this.id,
          })
        : new EngineError("restore_failed", `${reason}${this.failure?.stderrTail ? ` QEMU said: ${this.failure.stderrTail.trim()}` : ""}. Nothing was resumed.`, {
            vmId: this.id,
          });
    }
  }

  /**
   * As a migration destination: listens on `uri` and becomes `running` when the incoming
   * migration completes (or `failed` if QEMU gives up).
   */
  async listenForMigration(uri: string): Promise<void> {
    const qmp = this.#qmpClient;
    this.#setState("resuming", "receive migration");
    const onEvent = (event: { event: string; data?: Record<string, unknown> }) => {
      if (event.event !== "MIGRATION" || !terminalMigrationStatus(event)) return;
      qmp.off("event", onEvent);
      if (event.data?.status !== "completed") return;
      void (async () => {
        const status = await qmp.execute<{ status: string }>("query-status");
        if (status.status !== "running") await qmp.execute("cont");
        if (this.state === "resuming") this.#setState("running", "receive migration");
      })().catch((error: Error) => this.fail(`the incoming migration completed but the vm did not run: ${error.message}`));
    };
    qmp.on("event", onEvent);
    try {
      await qmp.execute("migrate-incoming", { uri });
    } catch (error) {
      qmp.off("event", onEvent);
      throw new EngineError("migration_failed", `cannot listen for vm ${this.id}'s migration on ${uri}: ${(error as Error).message}.`, {
        vmId: this.id,
        uri,
      });
    }
  }

  /**
   * Live-migrates the running guest to a destination prepared with Engine.prepareIncoming.
   * On success the source QEMU quits (`stopped`); on failure or timeout it keeps running.
   */
  async liveMigrate(uri: string, options: LiveMigrateOptions): Promise<LiveMigrationFigures> {
    assertTransition(this.id, this.state, "migrating", "migrate");
    const qmp = this.#qmpClient;
    this.#setState("migrating", "migrate");
    let outcome: "completed" | string;
    try {
      if (options.autoConverge) {
        await qmp.execute("migrate-set-capabilities", { capabilities: [{ capability: "auto-converge", state: true }] });
      }
      await qmp.execute("migrate-set-parameters", { "downtime-limit": options.downtimeLimitMs });
      await this.#setMaxBandwidth(options.maxBandwidth ?? unlimitedBandwidth);
      const finished = handled(
        qmp.waitForEvent("MIGRATION", { timeoutMs: options.timeoutMs, filter: terminalMigrationStatus }),
      );
      await qmp.execute("migrate", { uri });
      try {
        const event = await finished;
        outcome = event.data?.status === "completed" ? "completed" : await migrationError(qmp);
      } catch (error) {
        if (!(error instanceof EngineError) || error.code !== "qmp_timeout") throw error;
        const cancelled = handled(qmp.waitForEvent("MIGRATION", { timeoutMs: 10_000, filter: terminalMigrationStatus }));
        await qmp.execute("migrate_cancel");
        await cancelled.catch(() => undefined);
        outcome = `it did not complete within ${options.timeoutMs} ms and was cancelled`;
      }
    } catch (error) {
      outcome = (error as Error).message;
    }
    if (outcome !== "completed") {
      if (this.state === "migrating") this.#setState("running", "migrate");
      throw new EngineError("migration_failed", `live migration of vm ${this.id} to ${uri} failed: ${outcome}. The vm keeps running here.`, {
        vmId: this.id,
        uri,
      });
    }
    // In 7.2 query-migrate can say `completed` with zero times while the source is still in
    // finish-migrate; the figures are final once the run state is postmigrate, and QEMU
    // sends no event for that, so ask until it is (a few round trips at most).
    for (let attempt = 0; attempt < 1000; attempt++) {
      const status = await qmp.execute<{ status: string }>("query-status");
      if (status.status === "postmigrate") break;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const info = await qmp.execute<{
      "total-time"?: number;
      downtime?: number;
      "setup-time"?: number;
      ram?: { transferred: number };
    }>("query-migrate");
    this.#expectExit = true;
    await qmp.execute("quit").catch(() => undefined);
    if (!(await this.#waitExit(5000))) await this.#kill();
    this.#setState("stopped", "migrate");
    return {
      downtimeMs: info.downtime ?? 0,
      totalTimeMs: info["total-time"] ?? 0,
      ...(info["setup-time"] === undefined ? {} : { setupTimeMs: info["setup-time"] }),
      bytesSent: info.ram?.transferred ?? 0,
    };
  }
}

function removeProcessDir(processDir: string): void {
  removeSocketDir(processDir);
  rmSync(processDir, { recursive: true, force: true });
}

function terminalMigrationStatus(event: { data?: Record<string, unknown> }): boolean {
  const status = event.data?.status;
  return status === "completed" || status === "failed" || status === "cancelled";
}

async function migrationError(qmp: QmpClient): Promise<string> {
  const info = await qmp
    .execute<{ status?: string; "error-desc"?: string }>("query-migrate")
    .catch((error: Error) => ({ status: "unknown", "error-desc": error.message }));
  return `QEMU reports migration ${info.status ?? "unknown"}${info["error-desc"] ? `: ${info["error-desc"]}` : ""}`;
}

// Below this many new bytes, followFile waits for more: each read is a trip through libuv's
// thread pool, and zstd writes 128 KiB at a time.
const followMinBlock = 1024 * 1024;
const followMaxBlock = 4 * 1024 * 1024;

// The blocks a finished save left for the next (see guest-state-sink.ts; 8 MiB kept for the
// worker's life): a save takes blocksPerSave, reading into one while the sink writes the
// other, and gives back those the sink is done with. A second save at once allocates its own.
const blocksPerSave = 2;
const spareBlocks: Buffer[] = [];

// Passes `file` to `digest` and `sink` (which is ended) while zstd is still writing it, and
// to its end once zstd exited 0. Woken by inotify as the file grows; the sink's pace slows
// only this reader, never zstd or QEMU. A sink's failure ends it at once, and so does `signal`
// (the save failed otherwise: a write the sink never settles must not hold it).
async function followFile(
  file: string,
  writerExit: Promise<number | null>,
  digest: DigestStream,
  sink: GuestStateSink,
  signal: AbortSignal,
): Promise<void> {
  const handle = await open(file, "r");
  let exitCode: number | null | undefined;
  let grew = false;
  let wake: (() => void) | undefined;
  const watcher = watch(file, () => {
    grew = true;
    wake?.();
  });
  void writerExit.then((code) => {
    exitCode = code;
    wake?.();
  });
  let stop!: (error: unknown) => void;
  const stopped = handled(new Promise<never>((_, reject) => (stop = reject)));
  signal.addEventListener("abort", () => stop(signal.reason), { once: true });
  const blocks = Array.from({ length: blocksPerSave }, () => spareBlocks.pop() ?? Buffer.allocUnsafe(followMaxBlock));
  // The write under way, if any, and the block lent to it (the sink holds it until that settles).
  let lent: { index: number; written: Promise<void> } | undefined;
  try {
    // Open and watched, the file needs no name: nothing is left behind even if this process is
    // killed, and its blocks are freed as the last descriptor closes, off the save's path
    // (removing the 20 MB file at the end took ~3 ms of a 256 MiB save).
    rmSync(file);
    let position = 0;
    for (let next = 0; ; ) {
      // Exit is noted before the size is taken, so an exited zstd's last bytes are never missed.
      const exited = exitCode !== undefined;
      grew = false;
      const available = fstatSync(handle.fd).size - position;
      if (available >= followMinBlock || (exited && available > 0)) {
        // Not the block of the write under way: this block's last write settled before that one began.
        const index = next++ % blocks.length;
        const { bytesRead } = await handle.read(blocks[index]!, 0, Math.min(available, followMaxBlock), position);
        position += bytesRead;
        const chunk = blocks[index]!.subarray(0, bytesRead);
        digest.update(chunk);
        // One write at a time, in order: a sink may write each at its file's current offset.
        await Promise.race([lent?.written, stopped]);
        signal.throwIfAborted();
        const current: { index: number; written: Promise<void> } = {
          index,
          written: lend(sink, chunk).then(() => {
            if (lent === current) lent = undefined;
          }),
        };
        current.written.catch(stop);
        lent = current;
        continue;
      }
      if (exited) break;
      if (!grew) {
        await Promise.race([
          new Promise<void>((resolve) => {
            wake = resolve;
            if (grew || exitCode !== undefined) resolve();
          }),
          stopped,
        ]);
        wake = undefined;
      }
    }
    await Promise.race([lent?.written, stopped]);
  } finally {
    watcher.close();
    void handled(handle.close());
    // A block still lent to a failed sink is left to it.
    for (const [index, block] of blocks.entries()) if (index !== lent?.index && spareBlocks.length < blocksPerSave) spareBlocks.push(block);
  }
  if (exitCode !== 0) throw new Error(`zstd exited ${exitCode} while compressing it`);
  await sink.end();
}

// A sink's write, with a synchronous throw turned into a rejection.
async function lend(sink: GuestStateSink, chunk: Buffer): Promise<void> {
  await sink.write(chunk);
}

// Copies `source` into `target` through `digest`. If the target breaks (zstd or QEMU gave up)
// the rest of the source is still read and hashed, so a corrupt stream is told apart from a
// QEMU failure.
async function feed(source: NodeJS.ReadableStream, digest: DigestStream, target: Writable): Promise<void> {
  let broken = false;
  target.on("error", () => {
    broken = true;
  });
  for await (const chunk of source as AsyncIterable<Buffer>) {
    // zstd gets each chunk before it is hashed, so decompressing and hashing overlap.
    const full = broken || target.destroyed ? false : !target.write(chunk);
    digest.update(chunk);
    if (full) await drained(target);
  }
  if (!broken && !target.destroyed) target.end();
}

function drained(target: Writable): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      target.off("drain", done);
      target.off("close", done);
      target.off("error", done);
      resolve();
    };
    target.on("drain", done);
    target.on("close", done);
    target.on("error", done);
  });
}

// Marks a promise as handled now (it is awaited later, maybe after it rejected), so an early
// rejection is not reported as unhandled and does not crash the worker.
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

function describeExit(code: number | null, signal: NodeJS.Signals | null): string {
  return signal ? `killed by ${signal}` : `exit code ${code}`;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}
