// Live migration and worker drain, for the portal UI (tRPC) and programs (REST under /api/v1).
// Requests are checked here with the engine's target rules, so a refusal comes back at once
// with its reason; the controller (apps/controller/src/migration.ts) runs the migration.
import { type MigratingVm, type MigrationHost, chooseMigrationTarget, memoryLayoutOf } from "@ferry/engine";
import { Prisma, type Vm, type Worker } from "@ferry/db";
import { z } from "zod";

import { PortalError } from "../errors.ts";
import { requireOperator } from "../access.ts";
import { auditedProcedure, authedProcedure, createTRPCRouter, type PortalContext } from "../trpc.ts";
import { findVm, toView, vmView } from "./vm.ts";

/** A worker that has not heartbeated for this long takes no migrations (the controller's default timeout). */
const workerSilentAfterMs = 10_000;

const workerId = z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, { error: "must be a worker id, e.g. w2" });

function hostOf(worker: Worker, now: Date): MigrationHost {
  return {
    id: worker.id,
    alive: worker.status !== "offline" && now.getTime() - worker.lastHeartbeatAt.getTime() <= workerSilentAfterMs,
    status: worker.status,
    accelerator: worker.accelerator,
    cpuFlags: worker.cpuFlags,
    vcpusFree: worker.vcpusFree,
    memoryMiBFree: worker.memoryMiBFree,
    sharedStorage: worker.sharedStorage,
    qemuVersion: worker.qemuVersion,
  };
}

/** The vm as the engine's migration rules see it, running on `source`. */
function migratingVmOf(vm: Vm, source: MigrationHost): MigratingVm {
  return { id: vm.id, cpuModel: vm.cpuModel, accelerator: vm.accelerator ?? source.accelerator, vcpus: vm.vcpus, memoryMiB: vm.memoryMiB, memoryLayout: memoryLayoutOf(vm.memoryLayout) };
}

async function askController(ctx: PortalContext, vmId: string, why: string): Promise<void> {
  try {
    await ctx.services.controllerQueue.add("vm.reconcile", { vmId }, { jobId: `vm.reconcile.${vmId}.${why}.${Date.now()}`, removeOnComplete: true, removeOnFail: 1000 });
  } catch (error) {
    // The request is saved; the controller's periodic loop picks it up a little later.
    ctx.services.log.warn({ err: error, vmId }, "could not queue vm.reconcile; the controller's next loop will pick the vm up");
  }
}

/** Draining a worker is an operator's decision. */
const workerAction = (action: string) =>
  auditedProcedure(action).use(({ ctx, next }) => {
    requireOperator(ctx.viewer, "drain or activate workers");
    return next();
  });

/** Guests on a worker that still need a live migration away from it during a drain. */
const drainStates = ["running", "migrating"];

const drainView = z.object({
  id: z.string(),
  status: z.string(),
  /** vms still running on the worker (migrating away, or waiting for a target) */
  vmsLeft: z.number().int(),
});

export const migrationRouter = createTRPCRouter({
  migrate: auditedProcedure("vm.migrate")
    .meta({
      openapi: {
        method: "POST",
        path: "/vms/{id}/migrate",
        protect: true,
        tags: ["vms"],
        summary: "Live-migrate a running vm to another worker (the given one, or the best compatible one)",
      },
    })
    .input(z.strictObject({ id: z.string().min(1).max(100), workerId: workerId.optional() }))
    .output(vmView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const vm = await findVm(db, ctx.viewer, input.id, "write", ctx.audit);
      if (vm.state === "migrating" || vm.operation === "migrate") {
        throw new PortalError(
          "action_refused",
          `vm ${vm.name} is already being migrated${vm.targetWorkerId ? ` to worker ${vm.targetWorkerId}` : ""}; wait for it to finish, then ask again`,
          { id: vm.id, targetWorkerId: vm.targetWorkerId },
        );
      }
      if (vm.state !== "running" || vm.desiredState !== "running" || vm.operation !== null || vm.workerId === null) {
        throw new PortalError(
          "action_refused",
          `cannot migrate vm ${vm.name}: it is ${vm.state}${vm.operation ? ` (${vm.operation} in progress)` : ""}; only a running vm can be live-migrated`,
          { id: vm.id, state: vm.state },
        );
      }
      const now = new Date();
      const hosts = (await db.worker.findMany({ orderBy: { id: "asc" } })).map((w) => hostOf(w, now));
      const source = hosts.find((h) => h.id === vm.workerId);
      if (!source) throw new PortalError("action_refused", `vm ${vm.name} runs on worker ${vm.workerId}, which is not registered any more`, { id: vm.id });
      const choice = chooseMigrationTarget(
        migratingVmOf(vm, source),
        source,
        hosts,
        input.workerId,
      );
      if (!choice.ok) throw new PortalError("migration_refused", choice.reason, { id: vm.id, workerId: input.workerId });
      const updated = await db.$transaction(async (tx) => {
        // Conditional on what we checked, so of two concurrent requests only one starts.
        const { count } = await tx.vm.updateMany({
          where: { id: vm.id, generation: vm.generation, state: "running", operation: null },
          data: {
            state: "migrating",
            operation: "migrate",
            targetWorkerId: input.workerId ?? null,
            stateReason: null,
            progress: Prisma.DbNull,
            stateChangedAt: now,
          },
        });
        if (count === 0) {
          throw new PortalError("action_refused", `cannot migrate vm ${vm.name}: it changed while the request was handled (another migration or action); look at its state and try again`, {
            id: vm.id,
          });
        }
        await tx.vmEvent.create({
          data: {
            vmId: vm.id,
            kind: "action.migrate",
            message: `live migration ${input.workerId ? `to worker ${input.workerId}` : `(the controller picks the worker; ${choice.workerId} fits)`} requested by ${ctx.viewer.email}`,
          },
        });
        return tx.vm.findUniqueOrThrow({ where: { id: vm.id } });
      });
      await askController(ctx, vm.id, "migrate");
      return toView(updated);
    }),

  targets: authedProcedure
    .meta({
      openapi: {
        method: "GET",
        path: "/vms/{id}/migration-targets",
        protect: true,
        tags: ["vms"],
        summary: "The workers a running vm could live-migrate to, each with the reason it cannot if so",
      },
    })
    .input(z.strictObject({ id: z.string().min(1).max(100) }))
    .output(z.object({ items: z.array(z.object({ workerId: z.string(), ok: z.boolean(), reason: z.string().nullable() })) }))
    .query(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const vm = await findVm(db, ctx.viewer, input.id, "write");
      const now = new Date();
      const hosts = (await db.worker.findMany({ orderBy: { id: "asc" } })).map((w) => hostOf(w, now));
      const source = hosts.find((h) => h.id === vm.workerId);
      if (!source) return { items: [] };
      const guest = migratingVmOf(vm, source);
      return {
        items: hosts
          .filter((h) => h.id !== source.id)
          .map((h) => {
            const choice = chooseMigrationTarget(guest, source, hosts, h.id);
            return { workerId: h.id, ok: choice.ok, reason: choice.ok ? null : choice.reason };
          }),
      };
    }),

  drain: workerAction("worker.drain")
    .meta({
      openapi: {
        method: "POST",
        path: "/workers/{id}/drain",
        protect: true,
        tags: ["workers"],
        summary: "Take a worker out of placement and live-migrate every guest away (maintenance mode)",
      },
    })
    .input(z.strictObject({ id: workerId }))
    .output(drainView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const worker = await db.worker.findUnique({ where: { id: input.id } });
      if (!worker) throw new PortalError("not_found", `no worker "${input.id}"; list workers with GET /api/v1/workers`, { id: input.id });
      if (worker.status === "offline") {
        throw new PortalError("action_refused", `worker ${worker.id} is offline: its guests cannot be migrated away; start it first`, { id: worker.id });
      }
      await db.worker.update({ where: { id: worker.id }, data: { status: "draining" } });
      const vms = await db.vm.findMany({ where: { workerId: worker.id, state: { in: drainStates } }, select: { id: true } });
      for (const vm of vms) await askController(ctx, vm.id, "drain");
      ctx.services.log.info({ workerId: worker.id, vms: vms.length, by: ctx.viewer.email }, "worker drain requested");
      return { id: worker.id, status: "draining", vmsLeft: vms.length };
    }),

  activate: workerAction("worker.activate")
    .meta({ openapi: { method: "POST", path: "/workers/{id}/activate", protect: true, tags: ["workers"], summary: "Put a drained worker back into placement" } })
    .input(z.strictObject({ id: workerId }))
    .output(drainView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const { count } = await db.worker.updateMany({ where: { id: input.id, status: "draining" }, data: { status: "online" } });
      const worker = await db.worker.findUnique({ where: { id: input.id } });
      if (!worker) throw new PortalError("not_found", `no worker "${input.id}"; list workers with GET /api/v1/workers`, { id: input.id });
      if (count === 0) throw new PortalError("action_refused", `worker ${worker.id} is ${worker.status}, not draining; nothing to activate`, { id: worker.id });
      const vmsLeft = await db.vm.count({ where: { workerId: worker.id, state: { in: drainStates } } });
      return { id: worker.id, status: "online", vmsLeft };
    }),
});
