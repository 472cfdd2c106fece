// What every job handler shares: the engine, the vms this worker hosts, and how to report a
// vm's state to the controller. Reports go out one at a time, in order, on vm-events.
import { join } from "node:path";

import type { Db } from "@ferry/db";
import { type Engine, type GuestImage, type Vm, type VmSpec, loadImage, specForVm } from "@ferry/engine";
import { type VmDefinition, type VmState, type VmStateEvent, queueNames } from "@ferry/jobs";
import { Queue } from "bullmq";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

import type { GuestStates } from "./guest-state-store.ts";
import type { SerialRelay } from "./serial-relay.ts";

/** A vm this worker has received jobs for, with its QEMU process when one runs. */
export interface HostedVm {
  vmId: string;
  dir: string;
  definition: VmDefinition;
  /** the newest generation of any job seen for this vm; reports carry it */
  generation: number;
  engineVm: Vm | undefined;
  /** set by a reboot job until the guest runs again, so `booting` is reported as `rebooting` */
  rebooting: boolean;
  /** set while vm.migrate runs: a failed migration's return to `running` is the controller's to report */
  migrating: boolean;
  /** set while vm.suspend runs: a failed suspend's return to `running` is reported by the job, with its reason */
  suspending: boolean;
  /** the live migration whose incoming QEMU this is (destination side), for vm.discard */
  incomingMigrationId: string | undefined;
}

/** The worker's identity, paths and services, fixed for the life of the process. */
export interface WorkerContextOptions {
  workerId: string;
  stateDir: string;
  imagesDir: string;
  accelerator: "kvm" | "tcg";
  stopGraceMs: number;
  /** Folder shared with other workers (same path everywhere): vm disks live there so a guest can move. */
  sharedStorage?: string;
  /** Host this worker's QEMUs listen on for incoming live migrations. */
  migrationHost: string;
  engine: Engine;
  /** Suspended vms' guest states, in object storage shared by the cluster. */
  guestStates: GuestStates;
  db: Db;
  redis: Redis;
  prefix: string;
  serial: SerialRelay;
  log: Logger;
}

/** Engine states the supervisor reports; the others are reported by the job causing them. */
const supervisedStates = new Set(["booting", "running", "failed"]);

/** The worker's shared state and services, handed to every job. */
export class WorkerContext {
  readonly vms = new Map<string, HostedVm>();
  readonly #events: Queue;
  readonly #images = new Map<string, Promise<GuestImage>>();
  #reports: Promise<unknown> = Promise.resolve();

  constructor(readonly options: WorkerContextOptions) {
    this.#events = new Queue(queueNames.vmEvents, { connection: options.redis, prefix: options.prefix });
  }

  get workerId(): string {
    return this.options.workerId;
  }

  get log(): Logger {
    return this.options.log;
  }

  /** The hosted vm for a job's definition, created on first sight. */
  hosted(definition: VmDefinition, generation: number): HostedVm {
    let hosted = this.vms.get(definition.vmId);
    if (!hosted) {
      hosted = {
        vmId: definition.vmId,
        dir: join(this.options.stateDir, "vms", definition.vmId),
        definition,
        generation,
        engineVm: undefined,
        rebooting: false,
        migrating: false,
        suspending: false,
        incomingMigrationId: undefined,
      };
      this.vms.set(definition.vmId, hosted);
    }
    hosted.definition = definition;
    return hosted;
  }

  /** The guest image, loaded once per name. */
  image(name: string): Promise<GuestImage> {
    let image = this.#images.get(name);
    if (!image) {
      image = loadImage(this.options.imagesDir, name);
      image.catch(() => this.#images.delete(name));
      this.#images.set(name, image);
    }
    return image;
  }

  /**
   * The engine spec for a hosted vm (throws EngineError invalid_spec / image_not_found). It
   * carries the vm's recorded memory layout, except for a cold boot, which chooses anew for this
   * host's QEMU (reported with the vm's state, so the vm's row records it).
   */
  async spec(hosted: HostedVm, options: { coldBoot?: boolean } = {}): Promise<{ spec: VmSpec; image: GuestImage }> {
    const { definition } = hosted;
    const image = await this.image(definition.image);
    const spec = {
      ...specForVm({
        id: definition.vmId,
        vcpus: definition.vcpus,
        memoryMiB: definition.memoryMiB,
        profile: definition.profile,
        cpuModel: definition.cpuModel,
        image,
        vmDir: hosted.dir,
      }),
      ...(options.coldBoot
        ? { memoryLayout: this.options.engine.coldBootMemoryLayout }
        : definition.memoryLayout === undefined
          ? {}
          : { memoryLayout: definition.memoryLayout }),
    };
    const shared = this.options.sharedStorage;
    if (shared === undefined) return { spec, image };
    // Disks go to the shared folder, at the same path on every worker, so a live migration
    // hands the destination the very overlay the source was writing; sockets and logs stay local.
    const disks = spec.disks.map((disk) => ({ ...disk, overlay: join(shared, "vms", definition.vmId, `${disk.id}.qcow2`) }));
    return { spec: { ...spec, disks }, image };
  }

  /** Whether the vm's QEMU is alive (so it holds capacity and has a console). */
  static isAlive(vm: Vm | undefined): vm is Vm {
    return vm !== undefined && vm.state !== "stopped" && vm.state !== "failed";
  }

  /** Report a vm's state on vm-events, after every report sent before it. */
  report(
    vm: { vmId: string; generation: number },
    state: VmState,
    extra: { reason?: string; progress?: VmStateEvent["progress"]; refused?: boolean; byGuest?: boolean } = {},
  ): Promise<void> {
    // The layout of the QEMU running the vm: a cold boot's choice reaches the vm's row this way.
    const engineVm = this.vms.get(vm.vmId)?.engineVm;
    const memoryLayout = WorkerContext.isAlive(engineVm) ? engineVm.spec.memoryLayout : undefined;
    const event: VmStateEvent = {
      vmId: vm.vmId,
      workerId: this.workerId,
      state,
      generation: vm.generation,
      accelerator: this.options.accelerator,
      ...(memoryLayout === undefined ? {} : { memoryLayout }),
      at: new Date().toISOString(),
      ...(extra.reason === undefined ? {} : { reason: extra.reason }),
      ...(extra.progress === undefined ? {} : { progress: extra.progress }),
      ...(extra.refused ? { refused: true } : {}),
      ...(extra.byGuest ? { byGuest: true } : {}),
    };
    const sent = this.#reports.then(() => this.#events.add("vm.state", event, {
        removeOnComplete: true,
        removeOnFail: 1000,
        // A controller that cannot reach its database retries rather than losing the state.
        attempts: 5,
        backoff: { type: "exponential", delay: 500 },
      }));
    this.#reports = sent.catch((error: unknown) => this.log.error({ err: error, vmId: vm.vmId, state }, "reporting a vm state failed"));
    this.log.info({ vmId: vm.vmId, state, generation: vm.generation, reason: extra.reason }, "vm state reported");
    return sent.then(() => undefined);
  }

  /**
   * Watch an engine vm: its boot completing, a reset's reboot and its QEMU dying on its own
   * are reported from here. Stops, suspends and deletes are reported by their jobs.
   */
  supervise(hosted: HostedVm, vm: Vm): void {
    hosted.engineVm = vm;
    vm.on("state", (state, change) => {
      if (hosted.engineVm !== vm) return;
      if (state === "stopped" && change.action === "guest-poweroff") {
        hosted.engineVm = undefined;
        void this.options.serial.unfollow(hosted.vmId);
        void this.report(hosted, "stopped", { reason: "the guest powered itself off", byGuest: true });
        return;
      }
      if (!supervisedStates.has(state)) return;
      if ((hosted.migrating || hosted.suspending) && state === "running") return;
      if (state === "failed") {
        const failure = change.failure ?? vm.failure;
        const reason = failure
          ? `${failure.reason}${failure.stderrTail.trim() ? `; QEMU said: ${failure.stderrTail.trim()}` : ""}`
          : "QEMU failed";
        void this.report(hosted, "failed", { reason });
        return;
      }
      if (state === "running") hosted.rebooting = false;
      void this.report(hosted, state === "booting" && hosted.rebooting ? "rebooting" : (state as VmState));
    });
  }

  /** Capacity held by vms whose QEMU is alive, for the heartbeat. */
  used(): { vcpus: number; memoryMiB: number } {
    let vcpus = 0;
    let memoryMiB = 0;
    for (const hosted of this.vms.values()) {
      if (!WorkerContext.isAlive(hosted.engineVm)) continue;
      vcpus += hosted.definition.vcpus;
      memoryMiB += hosted.definition.memoryMiB;
    }
    return { vcpus, memoryMiB };
  }

  async close(): Promise<void> {
    await this.#reports;
    await this.#events.close();
  }
}
