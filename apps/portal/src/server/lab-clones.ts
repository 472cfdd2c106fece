// Making and resetting lab clones, shared by the template routes (one clone at a time) and
// lab classes (a clone per student, made at start or on the student's first visit).
import { checkCompatibility } from "@ferry/engine";
import { type Db, Prisma, type Project, type Vm } from "@ferry/db";
import { PortalError } from "./errors.ts";
import { checkQuota, lockProject } from "./quota.ts";

/** Refuse a golden point no online worker can load (CPU model, accelerator); with no worker online, placement waits. */
export async function assertSomeWorkerCanRun(db: Db, version: { version: number; cpuModel: string; accelerator: string | null }): Promise<void> {
  const workers = await db.worker.findMany({ where: { status: "online" }, orderBy: { id: "asc" } });
  if (workers.length === 0) return;
  const refusals: string[] = [];
  for (const worker of workers) {
    const accelerator = worker.accelerator === "kvm" ? "kvm" : "tcg";
    const verdict = checkCompatibility(
      { cpuModel: version.cpuModel, accelerator: version.accelerator === "kvm" ? "kvm" : "tcg", vcpus: 0, memoryMiB: 0, machineType: "" },
      { accelerator, cpuFlags: worker.cpuFlags, freeVcpus: 0, freeMemoryMiB: 0 },
    );
    if (verdict.ok) return;
    refusals.push(`${worker.id}: ${verdict.reasons.join(" ")}`);
  }
  throw new PortalError(
    "incompatible_worker",
    `no worker can run version ${version.version}'s golden point (CPU model ${version.cpuModel}, accelerator ${version.accelerator}): ${refusals.join("; ")}. Publish the template again from a vm on a compatible worker, or add one`,
    { reasons: refusals },
  );
}

/** Where clones come from and who makes them. */
export interface CloneSource {
  project: Pick<Project, "id" | "name" | "quotaVcpus" | "quotaMemoryMiB" | "quotaVms" | "quotaStateBytes">;
  templateName: string;
  version: Prisma.LabTemplateVersionGetPayload<object>;
  ownerId: string;
  /** who asked, for the vm's event log */
  actorEmail: string;
}

/**
 * Make one clone per name inside `tx`: vms with the version's spec, suspended at its golden
 * point and wanted running, so each is placed like a resume on any compatible worker. The
 * project's quota is checked for all of them at once. The caller asks for reconciles after commit.
 */
export async function createClones(tx: Prisma.TransactionClient, source: CloneSource, names: string[]): Promise<Vm[]> {
  await reserveRoom(tx, source, names.length);
  const clones: Vm[] = [];
  for (const name of names) clones.push(await insertClone(tx, source, name));
  return clones;
}

/** One clone, as `createClones` makes them. */
export async function createClone(tx: Prisma.TransactionClient, source: CloneSource, name: string): Promise<Vm> {
  await reserveRoom(tx, source, 1);
  return insertClone(tx, source, name);
}

async function reserveRoom(tx: Prisma.TransactionClient, { project, version }: CloneSource, count: number): Promise<void> {
  await lockProject(tx, project.id);
  await checkQuota(tx, project, { vms: count, vcpus: version.vcpus * count, memoryMiB: version.memoryMiB * count });
}

async function insertClone(tx: Prisma.TransactionClient, source: CloneSource, name: string): Promise<Vm> {
  const { project, version, templateName } = source;
  const created = await tx.vm.create({
    data: {
      name,
      ownerId: source.ownerId,
      projectId: project.id,
      image: version.image,
      vcpus: version.vcpus,
      memoryMiB: version.memoryMiB,
      profile: version.profile,
      cpuModel: version.cpuModel,
      accelerator: version.accelerator,
      state: "suspended",
      stateReason: `at the golden point of lab template ${templateName} version ${version.version}`,
      desiredState: "running",
      operation: "resume",
      sourceTemplateVersionId: version.id,
    },
  });
  await tx.vmEvent.create({
    data: { vmId: created.id, kind: "action.create", message: `cloned from lab template ${templateName} version ${version.version} by ${source.actorEmail}` },
  });
  return created;
}

/**
 * Take a clone back to its version's golden point: its own guest states are forgotten; a
 * running clone is reset by its worker (the controller sends vm.reset), any other is suspended
 * at the golden point again and resumes from there wherever it fits. Returns the updated row.
 */
export async function resetClone(db: Db, vm: Vm, actorEmail: string): Promise<Vm> {
  const version = vm.sourceTemplateVersionId ? await db.labTemplateVersion.findUnique({ where: { id: vm.sourceTemplateVersionId } }) : null;
  if (version === null || version.goldenStateId === null) {
    throw new PortalError("action_refused", `cannot reset vm ${vm.name}: it was not cloned from a lab template (or its version is gone); only lab clones have a golden point to go back to`, { id: vm.id });
  }
  const runs = vm.state === "running" && vm.workerId !== null;
  if (!runs && !["suspended", "stopped", "failed"].includes(vm.state)) {
    throw new PortalError("action_refused", `cannot reset vm ${vm.name} while it is ${vm.state}; try again when it is running, suspended or stopped`, { id: vm.id, state: vm.state });
  }
  return db.$transaction(async (tx) => {
    if (vm.desiredState !== "running") {
      await lockProject(tx, vm.projectId);
      await checkQuota(tx, await tx.project.findUniqueOrThrow({ where: { id: vm.projectId } }), { vcpus: vm.vcpus, memoryMiB: vm.memoryMiB }, vm.id);
    }
    const { count } = await tx.vm.updateMany({
      where: { id: vm.id, generation: vm.generation, state: vm.state },
      data: {
        guestStateId: null,
        desiredState: "running",
        generation: vm.generation + 1,
        operation: "reset",
        progress: Prisma.DbNull,
        ...(runs ? {} : { state: "suspended", stateReason: `reset to the golden point of version ${version.version}`, workerId: null, stateChangedAt: new Date() }),
      },
    });
    if (count === 0) throw new PortalError("action_refused", `cannot reset vm ${vm.name}: it changed while the request was handled; look at its state and try again`, { id: vm.id });
    await tx.vmEvent.create({ data: { vmId: vm.id, kind: "action.reset", message: `reset to the golden point of version ${version.version} by ${actorEmail}` } });
    return tx.vm.findUniqueOrThrow({ where: { id: vm.id } });
  });
}
