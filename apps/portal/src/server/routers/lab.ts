// Hosted labs: lab templates published from a vm, and vms cloned from them. Like the vm
// procedures, these only write what is wanted and ask the controller to reconcile:
//
// - publish: the template's next version, `publishing`, and the vm asked to suspend; the
//   controller has a worker copy the guest state as the version's golden point (ready).
// - instances: a vm with the version's spec, suspended at the golden point and wanted running,
//   so it is placed like a resume on any compatible worker and continues from there.
// - reset: the clone's own guest state forgotten, so it continues from the golden point again.
import { type Db, Prisma } from "@ferry/db";
import { z } from "zod";
import { type Need, authorize, findProject, visibleProjectIds } from "../access.ts";
import { PortalError } from "../errors.ts";
import { displayName, recordId } from "../fields.ts";
import { assertSomeWorkerCanRun, createClone, resetClone } from "../lab-clones.ts";
import { checkQuota, lockProject } from "../quota.ts";
import { auditedProcedure, authedProcedure, createTRPCRouter, type Viewer } from "../trpc.ts";
import { findVm, requestReconcile, toView, vmView } from "./vm.ts";

const id = recordId;
const name = displayName;

const versionView = z.object({
  id: z.string(),
  version: z.number().int(),
  /** publishing | ready | failed */
  status: z.string(),
  statusReason: z.string().nullable(),
  sourceVmId: z.string(),
  image: z.string(),
  vcpus: z.number().int(),
  memoryMiB: z.number().int(),
  profile: z.string(),
  cpuModel: z.string(),
  accelerator: z.string().nullable(),
  storedBytes: z.number().nullable(),
  createdAt: z.string(),
  publishedAt: z.string().nullable(),
});

/** The lab template object every endpoint returns: its versions newest first. */
const templateView = z.object({ id: z.string(), name: z.string(), ownerId: z.string(), projectId: z.string(), createdAt: z.string(), versions: z.array(versionView) });
type TemplateView = z.infer<typeof templateView>;

export type TemplateRow = Prisma.LabTemplateGetPayload<{ include: { versions: true } }>;

function toTemplateView(template: TemplateRow): TemplateView {
  return {
    id: template.id,
    name: template.name,
    ownerId: template.ownerId,
    projectId: template.projectId,
    createdAt: template.createdAt.toISOString(),
    versions: [...template.versions]
      .sort((a, b) => b.version - a.version)
      .map((v) => ({
        id: v.id,
        version: v.version,
        status: v.status,
        statusReason: v.statusReason,
        sourceVmId: v.sourceVmId,
        image: v.image,
        vcpus: v.vcpus,
        memoryMiB: v.memoryMiB,
        profile: v.profile,
        cpuModel: v.cpuModel,
        accelerator: v.accelerator,
        storedBytes: v.storedBytes === null ? null : Number(v.storedBytes),
        createdAt: v.createdAt.toISOString(),
        publishedAt: v.publishedAt?.toISOString() ?? null,
      })),
  };
}

/** The template with this id if the viewer may do `need` in its project; not_found when they cannot see it, so ids cannot be probed. */
export async function findTemplate(db: Db, viewer: Viewer, templateId: string, need: Need): Promise<TemplateRow> {
  const notFound = () => new PortalError("not_found", `no lab template with id "${templateId}" is visible to you; list them with GET /api/v1/templates`, { id: templateId });
  const template = await db.labTemplate.findUnique({ where: { id: templateId }, include: { versions: true, project: { select: { id: true, organizationId: true } } } });
  if (template === null) throw notFound();
  await authorize(db, viewer, template.project, need, notFound);
  const { project: _project, ...row } = template;
  return row;
}

/** The version to clone: the one asked for, else the newest ready one; refused unless it is ready. */
export function versionToClone(template: TemplateRow, asked: number | undefined): TemplateRow["versions"][number] {
  const ready = template.versions.filter((v) => v.status === "ready").sort((a, b) => b.version - a.version);
  const version = asked === undefined ? ready[0] : template.versions.find((v) => v.version === asked);
  if (version === undefined) {
    throw new PortalError(
      "not_found",
      asked === undefined
        ? `lab template ${template.name} has no published version yet; wait for its version to be ready, or publish it`
        : `lab template ${template.name} has no version ${asked}; it has ${template.versions.map((v) => v.version).join(", ") || "none"}`,
      { id: template.id },
    );
  }
  if (version.status !== "ready" || version.goldenStateId === null) {
    throw new PortalError("action_refused", `version ${version.version} of lab template ${template.name} is ${version.status}${version.statusReason ? ` (${version.statusReason})` : ""}; clone a ready version`, {
      id: template.id,
      version: version.version,
    });
  }
  return version;
}

export const labRouter = createTRPCRouter({
  publish: auditedProcedure("template.publish")
    .meta({
      openapi: {
        method: "POST",
        path: "/templates",
        protect: true,
        tags: ["labs"],
        summary: "Publish a running or suspended vm as the next version of your lab template of that name (suspends the vm)",
      },
    })
    .input(z.strictObject({ vmId: id, name }))
    .output(templateView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const vm = await findVm(db, ctx.viewer, input.vmId, "write", ctx.audit);
      if (!(vm.state === "running" && vm.desiredState === "running") && vm.state !== "suspended") {
        throw new PortalError("action_refused", `cannot publish vm ${vm.name}: it is ${vm.state}; publish a running or suspended vm`, { id: vm.id, state: vm.state });
      }
      const templateId = await db.$transaction(async (tx) => {
        if (vm.state === "running") {
          await lockProject(tx, vm.projectId);
          await checkQuota(tx, await tx.project.findUniqueOrThrow({ where: { id: vm.projectId } }), { storesState: true }, vm.id);
          const { count } = await tx.vm.updateMany({
            where: { id: vm.id, generation: vm.generation },
            data: { desiredState: "suspended", generation: vm.generation + 1, operation: "suspend", progress: Prisma.DbNull },
          });
          if (count === 0) throw new PortalError("action_refused", `cannot publish vm ${vm.name}: it changed while the request was handled; look at its state and try again`, { id: vm.id });
        }
        const template =
          (await tx.labTemplate.findUnique({ where: { projectId_name: { projectId: vm.projectId, name: input.name } } })) ??
          (await tx.labTemplate.create({ data: { name: input.name, ownerId: ctx.viewer.id, projectId: vm.projectId } }));
        const last = await tx.labTemplateVersion.aggregate({ where: { templateId: template.id }, _max: { version: true } });
        await tx.labTemplateVersion.create({
          data: {
            templateId: template.id,
            version: (last._max.version ?? 0) + 1,
            sourceVmId: vm.id,
            image: vm.image,
            vcpus: vm.vcpus,
            memoryMiB: vm.memoryMiB,
            profile: vm.profile,
            cpuModel: vm.cpuModel,
          },
        });
        await tx.vmEvent.create({ data: { vmId: vm.id, kind: "action.publish", message: `published as lab template ${input.name} by ${ctx.viewer.email}` } });
        return template.id;
      });
      await requestReconcile(ctx, { id: vm.id, generation: vm.generation + 1 });
      return toTemplateView(await findTemplate(db, ctx.viewer, templateId, "read"));
    }),

  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/templates", protect: true, tags: ["labs"], summary: "The lab templates of your projects (or of one) and their versions, newest first" } })
    .input(z.strictObject({ projectId: id.optional(), limit: z.number().int().min(1).max(100).default(50), cursor: id.optional() }).default({ limit: 50 }))
    .output(z.object({ items: z.array(templateView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const projectIds = input.projectId !== undefined ? [(await findProject(db, ctx.viewer, input.projectId, "read")).id] : await visibleProjectIds(db, ctx.viewer);
      const rows = await db.labTemplate.findMany({
        where: projectIds === null ? {} : { projectId: { in: projectIds } },
        include: { versions: true },
        orderBy: [{ createdAt: "desc" }, { id: "desc" }],
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { id: input.cursor }, skip: 1 } : {}),
      });
      const items = rows.slice(0, input.limit).map(toTemplateView);
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),

  createInstance: auditedProcedure("template.instance")
    .meta({
      openapi: {
        method: "POST",
        path: "/templates/{id}/instances",
        protect: true,
        tags: ["labs"],
        summary: "Clone a vm from a template version (the newest ready one by default): it continues from the golden point",
      },
    })
    .input(z.strictObject({ id, name, version: z.number().int().min(1).optional(), projectId: id.optional() }))
    .output(vmView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const template = await findTemplate(db, ctx.viewer, input.id, "read");
      // The clone goes to the project asked for (one the viewer may create vms in), else the template's.
      const project = await findProject(db, ctx.viewer, input.projectId ?? template.projectId, "write");
      ctx.audit.projectId = project.id;
      const version = versionToClone(template, input.version);
      await assertSomeWorkerCanRun(db, version);
      const vm = await db.$transaction((tx) => createClone(tx, { project, templateName: template.name, version, ownerId: ctx.viewer.id, actorEmail: ctx.viewer.email }, input.name));
      ctx.audit.targetId = vm.id;
      await requestReconcile(ctx, vm);
      return toView(vm);
    }),

  reset: auditedProcedure("vm.reset")
    .meta({ openapi: { method: "POST", path: "/vms/{id}/reset", protect: true, tags: ["labs"], summary: "Take a lab clone back to its template version's golden point (its changes are lost)" } })
    .input(z.strictObject({ id }))
    .output(vmView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const vm = await findVm(db, ctx.viewer, input.id, "write", ctx.audit);
      const updated = await resetClone(db, vm, ctx.viewer.email);
      await requestReconcile(ctx, updated);
      return toView(updated);
    }),
});
