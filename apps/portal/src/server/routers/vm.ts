// vm procedures, shared by the portal UI (tRPC) and programs (REST under /api/v1).
// They only write what is wanted (desired state, generation) and ask the controller to
// reconcile; what actually runs is reported back by the workers.
import { checkCompatibility } from "@ferry/engine";
import { redisKeys } from "@ferry/jobs";
import { Prisma, type Db, isoTimestampSql, queryPrepared, type Vm } from "@ferry/db";
import { signConsoleToken } from "@ferry/tokens";
import { z } from "zod";
import { guestImages, profileNames } from "../catalog.ts";
import { PortalError } from "../errors.ts";
import { displayName, recordId } from "../fields.ts";
import { type Need, authorizeWithMembership, findProject, isOperator } from "../access.ts";
import { visibleProjectsSql } from "../access-sql.ts";
import { createOnce } from "../idempotency.ts";
import { checkQuota, lockProject } from "../quota.ts";
import { type AuditTarget, type AuthedContext, type AuthedRead, auditedProcedure, authedProcedure, createTRPCRouter, mappedOutput, type PortalContext, type Viewer } from "../trpc.ts";
import { desiredStateOf, refusalOf, type VmAction } from "../vm-actions.ts";
import type { VmVersion } from "../vm-views.ts";

const vmId = recordId;

const createInput = z.strictObject({
  name: displayName,
  image: z.string().min(1).max(200),
  vcpus: z.number().int().min(1, { error: "must be between 1 and 16" }).max(16, { error: "must be between 1 and 16" }),
  memoryMiB: z.number().int().min(1).max(1_048_576),
  profile: z.string().min(1).max(100).default("standard"),
  /** the project the vm belongs to; a token's own project when omitted, or the person's only project */
  projectId: z.string().min(1).max(100).optional(),
});

const progressSchema = z.object({ done: z.number(), total: z.number() });

/** The VM object every endpoint returns. */
export const vmView = z.object({
  id: z.string(),
  name: z.string(),
  ownerId: z.string(),
  projectId: z.string(),
  image: z.string(),
  vcpus: z.number().int(),
  memoryMiB: z.number().int(),
  profile: z.string(),
  cpuModel: z.string(),
  state: z.string(),
  desiredState: z.string(),
  stateReason: z.string().nullable(),
  workerId: z.string().nullable(),
  /** where a live migration in progress goes (null: the controller picks, or no migration) */
  targetWorkerId: z.string().nullable(),
  accelerator: z.string().nullable(),
  generation: z.number().int(),
  operation: z.string().nullable(),
  progress: progressSchema.nullable(),
  createdAt: z.string(),
  stateChangedAt: z.string(),
});
export type VmView = z.infer<typeof vmView>;

/** The columns of a Vm row the view shows. */
type ViewedVm = Pick<Vm, keyof VmView>;

/** The same columns read by `viewedColumns`: timestamps already as the view's text. */
type ViewedRow = Omit<ViewedVm, "createdAt" | "stateChangedAt"> & { createdAt: string; stateChangedAt: string };

/** The view's columns for a raw query (`queryPrepared`), in the view's order. */
const viewedColumns = Prisma.sql`vm.id, vm.name, vm."ownerId", vm."projectId", vm.image, vm.vcpus, vm."memoryMiB", vm.profile, vm."cpuModel", vm.state, vm."desiredState", vm."stateReason", vm."workerId", vm."targetWorkerId", vm.accelerator, vm.generation, vm.operation, vm.progress, ${isoTimestampSql(`vm."createdAt"`)} AS "createdAt", ${isoTimestampSql(`vm."stateChangedAt"`)} AS "stateChangedAt"`;

/** A Vm row as the API shows it. */
export function toView(vm: ViewedVm | ViewedRow): VmView {
  // Most vms have no operation in progress; a failed safeParse of null builds a whole ZodError.
  const progress = vm.progress === null ? null : progressSchema.safeParse(vm.progress);
  return {
    id: vm.id,
    name: vm.name,
    ownerId: vm.ownerId,
    projectId: vm.projectId,
    image: vm.image,
    vcpus: vm.vcpus,
    memoryMiB: vm.memoryMiB,
    profile: vm.profile,
    cpuModel: vm.cpuModel,
    state: vm.state,
    desiredState: vm.desiredState,
    stateReason: vm.stateReason,
    workerId: vm.workerId,
    targetWorkerId: vm.targetWorkerId,
    accelerator: vm.accelerator,
    generation: vm.generation,
    operation: vm.operation,
    progress: progress?.success ? progress.data : null,
    createdAt: typeof vm.createdAt === "string" ? vm.createdAt : vm.createdAt.toISOString(),
    stateChangedAt: typeof vm.stateChangedAt === "string" ? vm.stateChangedAt : vm.stateChangedAt.toISOString(),
  };
}

/**
 * The vm with this id if the viewer may do `need` with it; vm_not_found when they cannot see
 * it (someone else's vm is reported as missing, so ids cannot be probed), forbidden when
 * their role or token falls short.
 */
export async function findVm(db: Db, viewer: Viewer, id: string, need: Need = "read", audit?: AuditTarget): Promise<Vm> {
  const [row] = await db.$queryRaw<(Vm & { membershipRole: string | null })[]>(vmWithMembershipSql(Prisma.sql`vm.*`, viewer, id));
  const { membershipRole: _, ...vm } = authorizedVmRow(row, viewer, id, need);
  if (audit) audit.projectId = vm.projectId;
  return vm;
}

/** `findVm(db, viewer, id, "read")` as the API shows the vm: the same rule, one prepared query of the view's columns. */
async function readVmView(db: Db, viewer: Viewer, id: string): Promise<VmView> {
  const [row] = await queryPrepared<ViewedRow & { membershipRole: string | null }>(db, vmWithMembershipSql(viewedColumns, viewer, id));
  return toView(authorizedVmRow(row, viewer, id, "read"));
}

/** One query: `columns` of the vm with this id, and the viewer's role in its project's organization. */
function vmWithMembershipSql(columns: Prisma.Sql, viewer: Viewer, id: string): Prisma.Sql {
  return Prisma.sql`
    SELECT ${columns}, m.role AS "membershipRole" FROM vm
    JOIN project p ON p.id = vm."projectId"
    LEFT JOIN membership m ON m."organizationId" = p."organizationId" AND m."userId" = ${viewer.id}
    WHERE vm.id = ${id}`;
}

/** The row `vmWithMembershipSql` read, if the viewer may do `need` with its vm (see findVm). */
function authorizedVmRow<Row extends { projectId: string; membershipRole: string | null }>(row: Row | undefined, viewer: Viewer, id: string, need: Need): Row {
  const notFound = () => new PortalError("vm_not_found", `no vm with id "${id}" is visible to you; list your vms with GET /api/v1/vms`, { id });
  if (row === undefined) throw notFound();
  authorizeWithMembership(viewer, { id: row.projectId }, row.membershipRole, need, notFound);
  return row;
}

/** The project a new vm goes to: the one asked for, else the token's, else the person's only one. */
async function projectForCreate(ctx: PortalContext & { viewer: Viewer }, asked: string | undefined) {
  const { db } = ctx.services;
  const projectId = asked ?? ctx.viewer.token?.projectId;
  if (projectId !== undefined) return findProject(db, ctx.viewer, projectId, "write");
  // Projects the person is a member of: an operator sees every project but works in their own.
  const projects = await db.project.findMany({
    where: { organization: { memberships: { some: { userId: ctx.viewer.id } } } },
    select: { id: true, name: true },
    take: 11,
    orderBy: { createdAt: "asc" },
  });
  if (projects.length === 1 && projects[0]) return findProject(db, ctx.viewer, projects[0].id, "write");
  throw new PortalError(
    "project_required",
    projects.length === 0
      ? "you are not a member of any project; ask an organization owner to add you"
      : `you are in several projects; say which with "projectId" (${projects.map((p) => `${p.name}: ${p.id}`).join(", ")})`,
    { projects },
  );
}

export async function requestReconcile(ctx: PortalContext, vm: { id: string; generation: number }): Promise<void> {
  try {
    await ctx.services.controllerQueue.add(
      "vm.reconcile",
      { vmId: vm.id },
      { jobId: `vm.reconcile.${vm.id}.${vm.generation}`, removeOnComplete: true, removeOnFail: 1000 },
    );
  } catch (error) {
    // The desired state is already saved and the controller's periodic loop will find it;
    // the job only makes that happen sooner.
    ctx.services.log.warn({ err: error, vmId: vm.id }, "could not queue vm.reconcile; the controller's next loop will pick the vm up");
  }
}

async function requestAction(
  ctx: PortalContext & { viewer: Viewer; audit: AuditTarget },
  id: string,
  action: VmAction,
  note?: string,
  check?: (vm: Vm) => Promise<{ targetWorkerId?: string }>,
): Promise<VmView> {
  const { db } = ctx.services;
  const vm = await findVm(db, ctx.viewer, id, "write", ctx.audit);
  const refusal = refusalOf(action, vm);
  if (refusal !== null) throw new PortalError("action_refused", refusal, { id: vm.id, state: vm.state, desiredState: vm.desiredState });
  const extra = check ? await check(vm) : {};
  const generation = vm.generation + 1;
  const updated = await db.$transaction(async (tx) => {
    const takesRoom = (action === "start" || action === "resume") && vm.desiredState !== "running";
    if (takesRoom || action === "suspend") {
      await lockProject(tx, vm.projectId);
      const project = await tx.project.findUniqueOrThrow({ where: { id: vm.projectId } });
      await checkQuota(tx, project, action === "suspend" ? { storesState: true } : { vcpus: vm.vcpus, memoryMiB: vm.memoryMiB }, vm.id);
    }
    // Conditional on the generation we read, so two concurrent actions cannot both pass the check.
    const { count } = await tx.vm.updateMany({
      where: { id: vm.id, generation: vm.generation },
      data: {
        desiredState: desiredStateOf[action],
        generation,
        operation: action,
        progress: Prisma.DbNull,
        ...(action === "reboot" ? { rebootSeq: { increment: 1 } } : {}),
        ...(action === "delete" ? { deletedAt: new Date() } : {}),
        ...extra,
      },
    });
    if (count === 0) {
      throw new PortalError("action_refused", `cannot ${action} vm ${vm.name}: it changed while the request was handled; look at its state and try again`, { id: vm.id });
    }
    await tx.vmEvent.create({
      data: { vmId: vm.id, kind: `action.${action}`, message: `${action} requested by ${ctx.viewer.email}${ctx.ip ? ` from ${ctx.ip}` : ""}${note ? `; ${note}` : ""}` },
    });
    return tx.vm.findUniqueOrThrow({ where: { id: vm.id } });
  });
  await requestReconcile(ctx, updated);
  return toView(updated);
}

const byId = z.strictObject({ id: vmId });
const action = (verb: VmAction, summary: string) =>
  auditedProcedure(`vm.${verb}`)
    .meta({ openapi: { method: "POST", path: `/vms/{id}/${verb}`, protect: true, tags: ["vms"], summary } })
    .input(byId)
    .output(vmView)
    .mutation(({ ctx, input }) => requestAction(ctx, input.id, verb));

const listInput = z
  .strictObject({ limit: z.number().int().min(1).max(100).default(50), cursor: vmId.optional(), projectId: z.string().min(1).max(100).optional() })
  .default({ limit: 50 });

/** One page of the vms the viewer may see, newest first. */
async function listVms(ctx: AuthedContext, input: z.output<typeof listInput>): Promise<{ items: VmView[]; nextCursor: string | null }> {
  const { db } = ctx.services;
  const visible =
    input.projectId !== undefined ? Prisma.sql`vm."projectId" = ${(await findProject(db, ctx.viewer, input.projectId, "read")).id}` : visibleProjectsSql(ctx.viewer, `vm."projectId"`);
  // One query, in the order of the (projectId, createdAt, id) index: the cursor is the last
  // vm of the previous page, itself looked up among the visible ones only. The page size is
  // in the statement's text (one statement per size, 1-100): with LIMIT as a parameter
  // PostgreSQL costs the generic plan for a tenth of the table and plans every execution
  // anew (0.25 of its 0.4 ms per page); with it in the text it keeps one plan. It reads ids
  // and row versions only: the views come from those this process keeps (vm-views.ts).
  const after = input.cursor
    ? Prisma.sql`AND (vm."createdAt", vm.id) < (SELECT c."createdAt", c.id FROM vm c WHERE c.id = ${input.cursor} AND ${visibleProjectsSql(ctx.viewer, `c."projectId"`)})`
    : Prisma.empty;
  const rows = await queryPrepared<VmVersion>(
    db,
    Prisma.sql`
      SELECT vm.id, vm.xmin::text AS version FROM vm
      WHERE vm.state <> 'deleted' AND ${visible} ${after}
      ORDER BY vm."createdAt" DESC, vm.id DESC
      LIMIT ${Prisma.raw(String(input.limit + 1))}`,
  );
  const page = rows.slice(0, input.limit);
  const items = await ctx.services.vmViews.of(page, async (ids) =>
    (await queryPrepared<ViewedRow & { version: string }>(db, Prisma.sql`SELECT ${viewedColumns}, vm.xmin::text AS version FROM vm WHERE vm.id = ANY(${ids})`)).map(
      (row) => ({ version: row.version, view: toView(row) }),
    ),
  );
  return { items, nextCursor: rows.length > input.limit ? (page.at(-1)?.id ?? null) : null };
}

/** The list and get procedures' inputs and resolvers, which the REST API's polled reads also run (rest.ts). */
export const vmReads = {
  list: { input: listInput, resolve: listVms } satisfies AuthedRead<typeof listInput, unknown>,
  get: { input: byId, resolve: (ctx: AuthedContext, input: z.output<typeof byId>) => readVmView(ctx.services.db, ctx.viewer, input.id) } satisfies AuthedRead<typeof byId, unknown>,
};

export const vmRouter = createTRPCRouter({
  create: auditedProcedure("vm.create")
    .meta({
      openapi: {
        method: "POST",
        path: "/vms",
        protect: true,
        tags: ["vms"],
        summary: "Create a vm and start it. With an Idempotency-Key header, a retried request returns the first one's vm instead of making another.",
        successDescription: "the created vm",
      },
    })
    .input(createInput)
    .output(vmView)
    .mutation(async ({ ctx, input }) => {
      const { db, settings } = ctx.services;
      const images = guestImages();
      const image = images.find((candidate) => candidate.name === input.image);
      if (image === undefined) {
        throw new PortalError("unknown_image", `unknown image "${input.image}"; known images: ${images.map((i) => i.name).join(", ")}`, {
          image: input.image,
          knownImages: images.map((i) => i.name),
        });
      }
      const profiles = profileNames();
      if (!profiles.includes(input.profile)) {
        throw new PortalError("unknown_profile", `unknown hardware profile "${input.profile}"; known profiles: ${profiles.join(", ")}`, {
          profile: input.profile,
          knownProfiles: profiles,
        });
      }
      if (input.memoryMiB < image.minMemoryMiB) {
        throw new PortalError("memory_too_small", `image ${image.name} needs at least ${image.minMemoryMiB} MiB; ask for ${image.minMemoryMiB} MiB or more`, {
          memoryMiB: input.memoryMiB,
          minMemoryMiB: image.minMemoryMiB,
        });
      }
      const largest = await db.worker.aggregate({ _max: { memoryMiBTotal: true } });
      const largestMemoryMiB = largest._max.memoryMiBTotal;
      if (largestMemoryMiB !== null && input.memoryMiB > largestMemoryMiB) {
        throw new PortalError(
          "memory_exceeds_workers",
          `no worker has ${input.memoryMiB} MiB; the largest has ${largestMemoryMiB} MiB. Ask for ${largestMemoryMiB} MiB or less, or add a bigger worker`,
          { memoryMiB: input.memoryMiB, largestWorkerMemoryMiB: largestMemoryMiB },
        );
      }
      const project = await projectForCreate(ctx, input.projectId);
      ctx.audit.projectId = project.id;
      const vm = await createOnce(ctx, input, async (tx) => {
        await lockProject(tx, project.id);
        await checkQuota(tx, project, { vms: 1, vcpus: input.vcpus, memoryMiB: input.memoryMiB });
        const created = await tx.vm.create({
          data: {
            name: input.name,
            ownerId: ctx.viewer.id,
            projectId: project.id,
            image: input.image,
            vcpus: input.vcpus,
            memoryMiB: input.memoryMiB,
            profile: input.profile,
            cpuModel: settings.cpuModel,
            desiredState: "running",
            state: "pending",
            operation: "create",
          },
        });
        await tx.vmEvent.create({
          data: { vmId: created.id, kind: "action.create", message: `created by ${ctx.viewer.email}${ctx.ip ? ` from ${ctx.ip}` : ""}` },
        });
        return created;
      });
      ctx.audit.targetId = vm.id;
      await requestReconcile(ctx, vm);
      return toView(vm);
    }),

  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/vms", protect: true, tags: ["vms"], summary: "List vms, newest first" } })
    .input(vmReads.list.input)
    .output(mappedOutput(z.object({ items: z.array(vmView), nextCursor: z.string().nullable() })))
    .query(({ ctx, input }) => vmReads.list.resolve(ctx, input)),

  get: authedProcedure
    .meta({ openapi: { method: "GET", path: "/vms/{id}", protect: true, tags: ["vms"], summary: "One vm" } })
    .input(vmReads.get.input)
    .output(mappedOutput(vmView))
    .query(({ ctx, input }) => vmReads.get.resolve(ctx, input)),

  start: action("start", "Start a stopped vm"),
  stop: action("stop", "Stop a vm (its disk is kept)"),
  reboot: action("reboot", "Reboot a running vm"),
  suspend: action("suspend", "Save a running vm's guest state and stop it"),
  resume: auditedProcedure("vm.resume")
    .meta({ openapi: { method: "POST", path: "/vms/{id}/resume", protect: true, tags: ["vms"], summary: "Resume a suspended vm, optionally on a given worker" } })
    .input(z.strictObject({ id: vmId, workerId: z.string().regex(/^[a-z0-9-]+$/, { error: "must be a worker id ([a-z0-9-]+)" }).optional() }))
    .output(vmView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const workerId = input.workerId;
      if (workerId === undefined) return requestAction(ctx, input.id, "resume");
      // Which workers exist is the operator's business: a tenant names one blind, and an
      // unknown one is reported without listing the others.
      const listWorkers = isOperator(ctx.viewer);
      return requestAction(ctx, input.id, "resume", `on worker ${workerId}`, async (vm) => {
        const worker = await db.worker.findUnique({ where: { id: workerId } });
        if (worker === null || worker.status !== "online") {
          const online = await db.worker.findMany({ where: { status: "online" }, select: { id: true }, orderBy: { id: "asc" } });
          throw new PortalError(
            "unknown_worker",
            `worker "${workerId}" ${worker === null ? "is not registered" : `is ${worker.status}`}${listWorkers ? `; online workers: ${online.map((w) => w.id).join(", ") || "none"}` : "; leave workerId out to let Ferry choose"}`,
            { workerId },
          );
        }
        // The guest state loads only where the engine's compatibility rules allow it (CPU
        // model, the accelerator it was saved under, free capacity).
        const saved = vm.guestStateId ? await db.guestState.findUnique({ where: { id: vm.guestStateId } }) : null;
        const workerAccelerator = worker.accelerator === "kvm" ? "kvm" : "tcg";
        const savedAccelerator = saved?.accelerator ?? vm.accelerator;
        const verdict = checkCompatibility(
          {
            cpuModel: vm.cpuModel,
            accelerator: savedAccelerator === "kvm" || savedAccelerator === "tcg" ? savedAccelerator : workerAccelerator,
            vcpus: vm.vcpus,
            memoryMiB: vm.memoryMiB,
            machineType: "",
          },
          { accelerator: workerAccelerator, cpuFlags: worker.cpuFlags, freeVcpus: worker.vcpusFree, freeMemoryMiB: worker.memoryMiBFree },
        );
        if (!verdict.ok) {
          throw new PortalError("incompatible_worker", `cannot resume vm ${vm.name} on worker ${workerId}: ${verdict.reasons.join(" ")}`, {
            workerId,
            reasons: verdict.reasons,
          });
        }
        return { targetWorkerId: workerId };
      });
    }),
  guestStates: authedProcedure
    .meta({ openapi: { method: "GET", path: "/vms/{id}/guest-states", protect: true, tags: ["vms"], summary: "The vm's saved guest states, newest first" } })
    .input(byId)
    .output(
      z.object({
        items: z.array(
          z.object({
            id: z.string(),
            createdAt: z.string(),
            storedBytes: z.number(),
            workerId: z.string(),
            cpuModel: z.string(),
            accelerator: z.string(),
            memoryMiB: z.number().int(),
            vcpus: z.number().int(),
            /** the state the next resume continues from */
            current: z.boolean(),
          }),
        ),
      }),
    )
    .query(async ({ ctx, input }) => {
      const vm = await findVm(ctx.services.db, ctx.viewer, input.id);
      const rows = await ctx.services.db.guestState.findMany({ where: { vmId: vm.id }, orderBy: { createdAt: "desc" } });
      return {
        items: rows.map((row) => ({
          id: row.id,
          createdAt: row.createdAt.toISOString(),
          storedBytes: Number(row.storedBytes),
          workerId: row.workerId,
          cpuModel: row.cpuModel,
          accelerator: row.accelerator,
          memoryMiB: row.memoryMiB,
          vcpus: row.vcpus,
          current: row.id === vm.guestStateId,
        })),
      };
    }),
  delete: auditedProcedure("vm.delete")
    .meta({ openapi: { method: "DELETE", path: "/vms/{id}", protect: true, tags: ["vms"], summary: "Delete a vm and its disk" } })
    .input(byId)
    .output(vmView)
    .mutation(({ ctx, input }) => requestAction(ctx, input.id, "delete")),

  consoleLog: authedProcedure
    .meta({ openapi: { method: "GET", path: "/vms/{id}/console-log", protect: true, tags: ["vms"], summary: "The vm's serial console output" } })
    .input(z.strictObject({ id: vmId, tail: z.number().int().min(1).max(100_000).optional() }))
    .output(z.object({ vmId: z.string(), text: z.string() }))
    .query(async ({ ctx, input }) => {
      const vm = await findVm(ctx.services.db, ctx.viewer, input.id);
      const entries = await ctx.services.redis.xrange(redisKeys.serialLog(ctx.services.settings.queuePrefix, vm.id), "-", "+");
      let text = entries.map(([, fields]) => fieldValue(fields, "data")).join("");
      if (input.tail !== undefined) text = lastLines(text, input.tail);
      return { vmId: vm.id, text };
    }),

  events: authedProcedure
    .meta({ openapi: { method: "GET", path: "/vms/{id}/events", protect: true, tags: ["vms"], summary: "What happened to the vm, newest last" } })
    .input(z.strictObject({ id: vmId, limit: z.number().int().min(1).max(500).default(100) }))
    .output(z.object({ items: z.array(z.object({ at: z.string(), kind: z.string(), message: z.string() })) }))
    .query(async ({ ctx, input }) => {
      const vm = await findVm(ctx.services.db, ctx.viewer, input.id);
      const rows = await ctx.services.db.vmEvent.findMany({ where: { vmId: vm.id }, orderBy: { id: "desc" }, take: input.limit });
      return { items: rows.reverse().map((row) => ({ at: row.at.toISOString(), kind: row.kind, message: row.message })) };
    }),

  console: auditedProcedure("vm.console")
    .meta({ openapi: { method: "POST", path: "/vms/{id}/console", protect: true, tags: ["vms"], summary: "A single-use, 60 s console URL for a running vm" } })
    .input(byId)
    .output(z.object({ url: z.string(), token: z.string(), expiresAt: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const vm = await findVm(ctx.services.db, ctx.viewer, input.id, "console", ctx.audit);
      if (vm.state !== "running") {
        throw new PortalError("action_refused", `cannot open the console of vm ${vm.name}: it is ${vm.state}; ${vm.state === "suspended" ? "resume" : "start"} it first`, {
          id: vm.id,
          state: vm.state,
        });
      }
      const { settings } = ctx.services;
      const { token, expiresAt } = signConsoleToken({ vmId: vm.id, userId: ctx.viewer.id, apiTokenId: ctx.viewer.token?.id, sessionId: ctx.viewer.sessionId ?? undefined, secret: settings.clusterSecret, ttlSeconds: 60 });
      return { url: `${settings.consolePublicUrl}/console?token=${encodeURIComponent(token)}`, token, expiresAt: expiresAt.toISOString() };
    }),
});

function fieldValue(fields: string[], name: string): string {
  const index = fields.indexOf(name);
  return index >= 0 && index % 2 === 0 ? (fields[index + 1] ?? "") : "";
}

function lastLines(text: string, count: number): string {
  const lines = text.split("\n");
  // A trailing newline leaves an empty last element that is not a line of its own.
  const keep = text.endsWith("\n") ? count + 1 : count;
  return lines.slice(-keep).join("\n");
}
