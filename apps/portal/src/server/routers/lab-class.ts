// Lab classes, the instructor's side: a class made from a template version, a roster of
// students (by email, or by a join code), a schedule and time limits. Starting a class checks
// the cluster has room for the roster (or queues it) and pre-warms a clone per student; the
// controller's class pass (apps/controller/src/lab-classes.ts) counts each student's time and
// suspends a vm whose time ran out, and every vm at closesAt. Students reach their seat
// through lab-seat.ts; they are not members of the class's organization.
import { randomInt } from "node:crypto";
import { type Db, Prisma, type Vm } from "@ferry/db";
import { labSeatTime } from "@ferry/jobs";
import { signConsoleToken, signLabLink } from "@ferry/tokens";
import { z } from "zod";
import { type Need, authorize, findProject, visibleProjectIds } from "../access.ts";
import { revokeAccess } from "../access-revocation.ts";
import { PortalError } from "../errors.ts";
import { displayName, recordId } from "../fields.ts";
import { type CloneSource, assertSomeWorkerCanRun, createClones, resetClone } from "../lab-clones.ts";
import { type AuditTarget, auditedProcedure, authedProcedure, createTRPCRouter, type PortalContext, type Viewer } from "../trpc.ts";
import { findTemplate, versionToClone } from "./lab.ts";
import { requestReconcile } from "./vm.ts";

const id = recordId;
/** The most students one class may have. */
export const maxRoster = 500;
export const instant = z.iso.datetime({ offset: true, error: "must be an ISO 8601 date-time with a time zone, e.g. 2030-01-31T09:00:00Z" });
const minutes = (max: number) => z.number().int({ error: `must be a whole number of minutes, 1 to ${max}` }).min(1, { error: `must be 1 to ${max} minutes` }).max(max, { error: `must be 1 to ${max} minutes` });
const sessionMinutes = minutes(24 * 60);
const totalMinutes = minutes(100_000);
const instructions = z.string().max(100_000, { error: "must be at most 100000 characters of Markdown" });
const emails = z
  .array(z.email({ error: "must be an email address" }).max(254))
  .min(1, { error: "must name at least one student" })
  .max(maxRoster, { error: `must name at most ${maxRoster} students` });
const whenFull = z.enum(["refuse", "queue"], { error: 'must be "refuse" or "queue"' });

/** A student's place in a class, as the instructor sees it. */
export const seatSummary = z.object({
  id: z.string(),
  email: z.string(),
  userId: z.string().nullable(),
  vmId: z.string().nullable(),
  vmState: z.string().nullable(),
  workerId: z.string().nullable(),
  usedSeconds: z.number().int(),
  extraMinutes: z.number().int(),
  /** of the student's total (with extensions), before the class closes */
  secondsLeft: z.number().int(),
  /** of the running session, or of the next one */
  sessionSecondsLeft: z.number().int(),
  /** the instructor holding the console with control, announced to the student */
  controlledBy: z.object({ id: z.string(), name: z.string() }).nullable(),
});
export type SeatSummary = z.infer<typeof seatSummary>;

/** The class object the list returns. */
export const classView = z.object({
  id: z.string(),
  projectId: z.string(),
  templateId: z.string(),
  templateName: z.string(),
  templateVersionId: z.string(),
  templateVersion: z.number().int(),
  name: z.string(),
  instructions: z.string(),
  instructorId: z.string(),
  opensAt: z.string(),
  closesAt: z.string(),
  sessionMinutes: z.number().int(),
  totalMinutes: z.number().int(),
  joinCode: z.string().nullable(),
  joinCodeExpiresAt: z.string().nullable(),
  /** scheduled | started | ended */
  status: z.string(),
  /** refuse | queue */
  whenFull: z.string(),
  createdAt: z.string(),
  startedAt: z.string().nullable(),
  endedAt: z.string().nullable(),
  seatCount: z.number().int(),
});
/** The class object every other endpoint returns: the list's, with its seats. */
export const classDetail = classView.extend({ seats: z.array(seatSummary) });
type ClassDetail = z.infer<typeof classDetail>;

const classInclude = { template: { select: { name: true } }, templateVersion: { select: { version: true } }, _count: { select: { seats: true } } } satisfies Prisma.LabClassInclude;
export type ClassRow = Prisma.LabClassGetPayload<{ include: typeof classInclude }>;
type SeatRow = Prisma.LabSeatGetPayload<{ include: { vm: true } }>;

function toClassView(row: ClassRow): z.infer<typeof classView> {
  return {
    id: row.id,
    projectId: row.projectId,
    templateId: row.templateId,
    templateName: row.template.name,
    templateVersionId: row.templateVersionId,
    templateVersion: row.templateVersion.version,
    name: row.name,
    instructions: row.instructions,
    instructorId: row.instructorId,
    opensAt: row.opensAt.toISOString(),
    closesAt: row.closesAt.toISOString(),
    sessionMinutes: row.sessionMinutes,
    totalMinutes: row.totalMinutes,
    joinCode: row.joinCode,
    joinCodeExpiresAt: row.joinCodeExpiresAt?.toISOString() ?? null,
    status: row.status,
    whenFull: row.whenFull,
    createdAt: row.createdAt.toISOString(),
    startedAt: row.startedAt?.toISOString() ?? null,
    endedAt: row.endedAt?.toISOString() ?? null,
    seatCount: row._count.seats,
  };
}

/** The names of the instructors holding consoles with control, by id. */
export async function controllerNames(db: Db, seats: { controlledById: string | null }[]): Promise<Map<string, string>> {
  const ids = [...new Set(seats.map((seat) => seat.controlledById).filter((userId) => userId !== null))];
  if (ids.length === 0) return new Map();
  const users = await db.user.findMany({ where: { id: { in: ids } }, select: { id: true, name: true } });
  return new Map(users.map((user) => [user.id, user.name]));
}

export function toSeatSummary(klass: Pick<ClassRow, "sessionMinutes" | "totalMinutes" | "closesAt">, seat: SeatRow, names: Map<string, string>, now: Date): SeatSummary {
  const time = labSeatTime(klass, seat, now);
  return {
    id: seat.id,
    email: seat.email,
    userId: seat.userId,
    vmId: seat.vmId,
    vmState: seat.vm?.state ?? null,
    workerId: seat.vm?.workerId ?? null,
    usedSeconds: seat.usedSeconds,
    extraMinutes: seat.extraMinutes,
    secondsLeft: time.secondsLeft,
    sessionSecondsLeft: time.sessionSecondsLeft,
    controlledBy: seat.controlledById === null ? null : { id: seat.controlledById, name: names.get(seat.controlledById) ?? "an instructor" },
  };
}

async function toClassDetail(db: Db, classId: string): Promise<ClassDetail> {
  const [row, seats] = await Promise.all([
    db.labClass.findUniqueOrThrow({ where: { id: classId }, include: classInclude }),
    db.labSeat.findMany({ where: { classId }, include: { vm: true }, orderBy: [{ email: "asc" }] }),
  ]);
  const names = await controllerNames(db, seats);
  const now = new Date();
  return { ...toClassView(row), seats: seats.map((seat) => toSeatSummary(row, seat, names, now)) };
}

/** The class with this id if the viewer may do `need` in its project; not_found when they cannot see it. */
async function findClass(db: Db, viewer: Viewer, classId: string, need: Need, audit?: AuditTarget): Promise<ClassRow> {
  const notFound = () => new PortalError("not_found", `no lab class with id "${classId}" is visible to you; list them with GET /api/v1/classes`, { id: classId });
  const row = await db.labClass.findUnique({ where: { id: classId }, include: { ...classInclude, project: { select: { id: true, organizationId: true } } } });
  if (row === null) throw notFound();
  await authorize(db, viewer, row.project, need, notFound);
  if (audit) audit.projectId = row.projectId;
  const { project: _project, ...klass } = row;
  return klass;
}

/** The seat `seatId` of the class; not_found when it is not one of its seats. */
async function findSeat(db: Db, klass: ClassRow, seatId: string): Promise<SeatRow> {
  const seat = await db.labSeat.findUnique({ where: { id: seatId }, include: { vm: true } });
  if (seat === null || seat.classId !== klass.id) {
    throw new PortalError("not_found", `class ${klass.name} has no seat with id "${seatId}"; its seats are listed by GET /api/v1/classes/${klass.id}`, { id: seatId });
  }
  return seat;
}

/** An input refused for one field, worded like the schema's own refusals. */
function invalidField(path: string, message: string): PortalError {
  return new PortalError("invalid_input", `invalid input: ${path}: ${message}. Fix this field and send the request again.`, { issues: [{ path: path.split("."), message }] });
}

function checkSchedule(opensAt: Date, closesAt: Date, now: Date): void {
  if (closesAt <= opensAt) throw invalidField("closesAt", `must be after opensAt (${opensAt.toISOString()}); got ${closesAt.toISOString()}`);
  if (closesAt <= now) throw invalidField("closesAt", `must be in the future; got ${closesAt.toISOString()}, it is now ${now.toISOString()}`);
}

function refuseEnded(klass: ClassRow, what: string): void {
  if (klass.status === "ended") {
    throw new PortalError("action_refused", `cannot ${what}: class ${klass.name} ended at ${klass.endedAt?.toISOString() ?? klass.closesAt.toISOString()}; create a new class`, { id: klass.id, status: klass.status });
  }
}

/** Lower-cased, each once: the roster's one spelling of an address. */
function normalisedEmails(list: string[]): string[] {
  return [...new Set(list.map((email) => email.trim().toLowerCase()))];
}

/** Eight letters and digits a person can read out (no 0/O, 1/I/L). */
function newJoinCode(): string {
  const alphabet = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
  return Array.from({ length: 8 }, () => alphabet[randomInt(alphabet.length)]).join("");
}

function joinCodeExpiry(expiresAt: string, path: string, now: Date): Date {
  const at = new Date(expiresAt);
  if (at <= now) throw invalidField(path, `must be in the future; got ${at.toISOString()}, it is now ${now.toISOString()}`);
  return at;
}

function nameTaken(error: unknown, name: string): never {
  if (error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002") {
    throw new PortalError("name_taken", `the project already has a class named "${name}"; choose another name`, { name });
  }
  throw error;
}

/** A clone's name: the class's and the student's, within the 63 characters of a vm name. */
export function cloneName(className: string, email: string): string {
  return `${className} ${email}`.slice(0, 63);
}

/** Where a class's clones come from: its template version, in its project, owned by its instructor. */
export async function cloneSourceOf(db: Db, klass: ClassRow, actorEmail: string): Promise<CloneSource> {
  const [project, version] = await Promise.all([
    db.project.findUniqueOrThrow({ where: { id: klass.projectId } }),
    db.labTemplateVersion.findUniqueOrThrow({ where: { id: klass.templateVersionId } }),
  ]);
  return { project, version, templateName: klass.template.name, ownerId: klass.instructorId, actorEmail };
}

/** A seat's clone that can still run (not deleted). */
export function liveVm(seat: { vm: Vm | null }): Vm | null {
  return seat.vm !== null && seat.vm.state !== "deleted" && seat.vm.desiredState !== "deleted" ? seat.vm : null;
}

/**
 * Refuse a start the online workers cannot host: each vm needs the version's memory and vCPUs
 * on one worker. The refusal gives the numbers; with whenFull=queue the class starts and the
 * vms that do not fit wait, suspended at the golden point, until there is room.
 */
async function checkRoom(db: Db, klass: ClassRow, version: { memoryMiB: number; vcpus: number }, students: number): Promise<void> {
  if (students === 0 || klass.whenFull === "queue") return;
  const workers = await db.worker.findMany({ where: { status: "online" }, orderBy: { id: "asc" }, select: { id: true, memoryMiBFree: true, vcpusFree: true } });
  const room = workers.map((worker) => ({
    ...worker,
    fits: Math.max(0, Math.min(Math.floor(worker.memoryMiBFree / version.memoryMiB), Math.floor(worker.vcpusFree / version.vcpus))),
  }));
  const fits = room.reduce((sum, worker) => sum + worker.fits, 0);
  if (fits >= students) return;
  const said = room.map((w) => `${w.id}: ${w.memoryMiBFree} MiB and ${w.vcpusFree} vCPUs free, room for ${w.fits}`).join("; ") || "no worker is online";
  throw new PortalError(
    "cluster_full",
    `cannot start class ${klass.name}: ${students} students × ${version.memoryMiB} MiB and ${version.vcpus} vCPU need room for ${students} vms, the online workers have room for ${fits} (${said}). Set whenFull to "queue" to start anyway (the rest wait for room), shorten the roster, or add workers`,
    { students, memoryMiB: version.memoryMiB, vcpus: version.vcpus, fits, workers: room },
  );
}

/**
 * Close the seats' running sessions (their time so far added to usedSeconds, the students'
 * requests forgotten) and ask every vm of theirs that is wanted running to suspend, so it
 * resumes later from where it was. Returns the vms to reconcile.
 */
export async function suspendSeats(tx: Prisma.TransactionClient, seats: SeatRow[], why: string, now: Date): Promise<Vm[]> {
  const asked: Vm[] = [];
  for (const seat of seats) {
    if (seat.sessionStartedAt !== null || seat.startRequestedAt !== null) {
      const seconds = seat.sessionStartedAt === null ? 0 : Math.max(0, Math.floor((now.getTime() - seat.sessionStartedAt.getTime()) / 1000));
      await tx.labSeat.updateMany({
        where: { id: seat.id, sessionStartedAt: seat.sessionStartedAt },
        data: { usedSeconds: { increment: seconds }, sessionStartedAt: null, startRequestedAt: null },
      });
    }
    const vm = liveVm(seat);
    if (vm === null || vm.desiredState !== "running") continue;
    const { count } = await tx.vm.updateMany({
      where: { id: vm.id, generation: vm.generation },
      data: { desiredState: "suspended", generation: vm.generation + 1, operation: "suspend", progress: Prisma.DbNull },
    });
    if (count === 0) continue;
    await tx.vmEvent.create({ data: { vmId: vm.id, kind: "action.suspend", message: why, at: now } });
    asked.push({ ...vm, generation: vm.generation + 1 });
  }
  return asked;
}

async function reconcileAll(ctx: PortalContext, vms: { id: string; generation: number }[]): Promise<void> {
  await Promise.all(vms.map((vm) => requestReconcile(ctx, vm)));
}

const consoleGrant = z.object({ url: z.string(), token: z.string(), expiresAt: z.string() });
const seatPath = z.strictObject({ id, seatId: id });

export const labClassRouter = createTRPCRouter({
  create: auditedProcedure("class.create")
    .meta({ openapi: { method: "POST", path: "/classes", protect: true, tags: ["classes"], summary: "Create a lab class from a template version (the newest ready one by default), with a roster, a schedule and time limits" } })
    .input(
      z.strictObject({
        /** the template's project (the default); a class lives where its template does */
        projectId: id.optional(),
        templateId: id,
        version: z.number().int().min(1).optional(),
        name: displayName,
        instructions: instructions.default(""),
        opensAt: instant,
        closesAt: instant,
        sessionMinutes,
        totalMinutes,
        emails: emails.optional(),
        joinCode: z.strictObject({ expiresAt: instant }).optional(),
        whenFull: whenFull.default("refuse"),
      }),
    )
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const template = await findTemplate(db, ctx.viewer, input.templateId, "write");
      ctx.audit.projectId = template.projectId;
      if (input.projectId !== undefined && input.projectId !== template.projectId) {
        throw invalidField("projectId", `a class lives in its template's project (${template.projectId}); leave projectId out or pass that one`);
      }
      const now = new Date();
      const opensAt = new Date(input.opensAt);
      const closesAt = new Date(input.closesAt);
      checkSchedule(opensAt, closesAt, now);
      const joinCodeExpiresAt = input.joinCode === undefined ? null : joinCodeExpiry(input.joinCode.expiresAt, "joinCode.expiresAt", now);
      const version = versionToClone(template, input.version);
      await assertSomeWorkerCanRun(db, version);
      const created = await db.labClass
        .create({
          data: {
            projectId: template.projectId,
            templateId: template.id,
            templateVersionId: version.id,
            name: input.name,
            instructions: input.instructions,
            instructorId: ctx.viewer.id,
            opensAt,
            closesAt,
            sessionMinutes: input.sessionMinutes,
            totalMinutes: input.totalMinutes,
            joinCode: joinCodeExpiresAt === null ? null : newJoinCode(),
            joinCodeExpiresAt,
            whenFull: input.whenFull,
            seats: { create: normalisedEmails(input.emails ?? []).map((email) => ({ email })) },
          },
        })
        .catch((error: unknown) => nameTaken(error, input.name));
      ctx.audit.targetId = created.id;
      return toClassDetail(db, created.id);
    }),

  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/classes", protect: true, tags: ["classes"], summary: "The lab classes of your projects (or of one), newest first" } })
    .input(z.strictObject({ projectId: id.optional(), limit: z.number().int().min(1).max(100).default(50), cursor: id.optional() }).default({ limit: 50 }))
    .output(z.object({ items: z.array(classView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const projectIds = input.projectId !== undefined ? [(await findProject(db, ctx.viewer, input.projectId, "read")).id] : await visibleProjectIds(db, ctx.viewer);
      const rows = await db.labClass.findMany({
        where: projectIds === null ? {} : { projectId: { in: projectIds } },
        include: classInclude,
        orderBy: [{ createdAt: "desc" }, { id: "desc" }],
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { id: input.cursor }, skip: 1 } : {}),
      });
      const items = rows.slice(0, input.limit).map(toClassView);
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),

  get: authedProcedure
    .meta({ openapi: { method: "GET", path: "/classes/{id}", protect: true, tags: ["classes"], summary: "One lab class with its seats: each student's vm, state and time left" } })
    .input(z.strictObject({ id }))
    .output(classDetail)
    .query(async ({ ctx, input }) => {
      const klass = await findClass(ctx.services.db, ctx.viewer, input.id, "read");
      return toClassDetail(ctx.services.db, klass.id);
    }),

  update: auditedProcedure("class.update")
    .meta({ openapi: { method: "PATCH", path: "/classes/{id}", protect: true, tags: ["classes"], summary: "Change a class's name, instructions, schedule, limits or whenFull" } })
    .input(
      z.strictObject({
        id,
        name: displayName.optional(),
        instructions: instructions.optional(),
        opensAt: instant.optional(),
        closesAt: instant.optional(),
        sessionMinutes: sessionMinutes.optional(),
        totalMinutes: totalMinutes.optional(),
        whenFull: whenFull.optional(),
      }),
    )
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "change it");
      const opensAt = input.opensAt === undefined ? klass.opensAt : new Date(input.opensAt);
      const closesAt = input.closesAt === undefined ? klass.closesAt : new Date(input.closesAt);
      if (input.opensAt !== undefined || input.closesAt !== undefined) checkSchedule(opensAt, closesAt, new Date());
      await db.labClass
        .update({
          where: { id: klass.id },
          data: {
            opensAt,
            closesAt,
            ...(input.name === undefined ? {} : { name: input.name }),
            ...(input.instructions === undefined ? {} : { instructions: input.instructions }),
            ...(input.sessionMinutes === undefined ? {} : { sessionMinutes: input.sessionMinutes }),
            ...(input.totalMinutes === undefined ? {} : { totalMinutes: input.totalMinutes }),
            ...(input.whenFull === undefined ? {} : { whenFull: input.whenFull }),
          },
        })
        .catch((error: unknown) => nameTaken(error, input.name ?? klass.name));
      return toClassDetail(db, klass.id);
    }),

  addStudents: auditedProcedure("class.roster.add")
    .meta({ openapi: { method: "POST", path: "/classes/{id}/roster", protect: true, tags: ["classes"], summary: "Add students by email (those already on the roster are kept as they are)" } })
    .input(z.strictObject({ id, emails }))
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "add students");
      const added = normalisedEmails(input.emails);
      const existing = await db.labSeat.count({ where: { classId: klass.id, email: { notIn: added } } });
      if (existing + added.length > maxRoster) {
        throw invalidField("emails", `the roster would have ${existing + added.length} students; a class has at most ${maxRoster}`);
      }
      await db.labSeat.createMany({ data: added.map((email) => ({ classId: klass.id, email })), skipDuplicates: true });
      return toClassDetail(db, klass.id);
    }),

  removeStudent: auditedProcedure("class.roster.remove")
    .meta({ openapi: { method: "DELETE", path: "/classes/{id}/roster/{seatId}", protect: true, tags: ["classes"], summary: "Remove a student: their seat and their vm are deleted, and their console closes" } })
    .input(seatPath)
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      const seat = await findSeat(db, klass, input.seatId);
      const vm = liveVm(seat);
      const deleted = await db.$transaction(async (tx) => {
        await tx.labSeat.delete({ where: { id: seat.id } });
        if (vm === null) return null;
        await tx.vm.update({ where: { id: vm.id }, data: { desiredState: "deleted", generation: vm.generation + 1, operation: "delete", progress: Prisma.DbNull, deletedAt: new Date() } });
        await tx.vmEvent.create({ data: { vmId: vm.id, kind: "action.delete", message: `${seat.email} removed from class ${klass.name} by ${ctx.viewer.email}` } });
        return { id: vm.id, generation: vm.generation + 1 };
      });
      if (deleted !== null) await requestReconcile(ctx, deleted);
      // The student's open console closes now rather than at the gateway's next periodic check.
      if (seat.userId !== null) await revokeAccess(ctx.services, { userId: seat.userId });
      return toClassDetail(db, klass.id);
    }),

  newJoinCode: auditedProcedure("class.join-code")
    .meta({ openapi: { method: "POST", path: "/classes/{id}/join-code", protect: true, tags: ["classes"], summary: "A new join code (the old one stops working) valid until expiresAt" } })
    .input(z.strictObject({ id, expiresAt: instant }))
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "give it a join code");
      const joinCodeExpiresAt = joinCodeExpiry(input.expiresAt, "expiresAt", new Date());
      await db.labClass.update({ where: { id: klass.id }, data: { joinCode: newJoinCode(), joinCodeExpiresAt } });
      return toClassDetail(db, klass.id);
    }),

  start: auditedProcedure("class.start")
    .meta({
      openapi: {
        method: "POST",
        path: "/classes/{id}/start",
        protect: true,
        tags: ["classes"],
        summary: "Start the class: refused with the numbers when the online workers cannot host the roster (unless whenFull is queue); with prewarm (the default) every student's clone is made now",
      },
    })
    .input(z.strictObject({ id, prewarm: z.boolean().default(true) }))
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "start it");
      const now = new Date();
      if (klass.closesAt <= now) throw new PortalError("action_refused", `cannot start class ${klass.name}: it closed at ${klass.closesAt.toISOString()}; change closesAt first`, { id: klass.id });
      const source = await cloneSourceOf(db, klass, ctx.viewer.email);
      await assertSomeWorkerCanRun(db, source.version);
      const seats = await db.labSeat.findMany({ where: { classId: klass.id }, include: { vm: true }, orderBy: { email: "asc" } });
      const idle = seats.filter((seat) => liveVm(seat)?.desiredState !== "running");
      await checkRoom(db, klass, source.version, idle.length);
      const clonesFor = input.prewarm ? seats.filter((seat) => liveVm(seat) === null) : [];
      const clones = await db.$transaction(async (tx) => {
        const made = await createClones(tx, source, clonesFor.map((seat) => cloneName(klass.name, seat.email)));
        for (const [index, seat] of clonesFor.entries()) {
          const { count } = await tx.labSeat.updateMany({ where: { id: seat.id, vmId: seat.vmId }, data: { vmId: made[index]!.id } });
          if (count === 0) throw new PortalError("action_refused", `cannot start class ${klass.name}: ${seat.email}'s seat changed while the request was handled; try again`, { id: klass.id });
        }
        await tx.labClass.update({ where: { id: klass.id }, data: { status: "started", startedAt: klass.startedAt ?? now } });
        return made;
      });
      await reconcileAll(ctx, clones);
      return toClassDetail(db, klass.id);
    }),

  end: auditedProcedure("class.end")
    .meta({ openapi: { method: "POST", path: "/classes/{id}/end", protect: true, tags: ["classes"], summary: "End the class: every running student vm is suspended to object storage (not deleted)" } })
    .input(z.strictObject({ id }))
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      const now = new Date();
      const seats = await db.labSeat.findMany({ where: { classId: klass.id }, include: { vm: true } });
      const suspended = await db.$transaction(async (tx) => {
        const asked = await suspendSeats(tx, seats, `class ${klass.name} ended by ${ctx.viewer.email}`, now);
        if (klass.status !== "ended") await tx.labClass.update({ where: { id: klass.id }, data: { status: "ended", endedAt: now } });
        return asked;
      });
      await reconcileAll(ctx, suspended);
      for (const userId of new Set(seats.map((seat) => seat.userId).filter((userId) => userId !== null))) await revokeAccess(ctx.services, { userId });
      return toClassDetail(db, klass.id);
    }),

  extend: auditedProcedure("class.extend")
    .meta({ openapi: { method: "POST", path: "/classes/{id}/extend", protect: true, tags: ["classes"], summary: "Give students (all, or those named) more minutes in total" } })
    .input(z.strictObject({ id, seatIds: z.array(id).min(1).max(maxRoster).optional(), minutes: minutes(10_000) }))
    .output(classDetail)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "extend it");
      const seatIds = await seatsOf(db, klass, input.seatIds);
      await db.labSeat.updateMany({ where: { id: { in: seatIds } }, data: { extraMinutes: { increment: input.minutes } } });
      return toClassDetail(db, klass.id);
    }),

  reset: auditedProcedure("class.reset")
    .meta({
      openapi: { method: "POST", path: "/classes/{id}/reset", protect: true, tags: ["classes"], summary: "Take students' vms (all, or those named) back to the golden point; their changes are lost" },
    })
    .input(z.strictObject({ id, seatIds: z.array(id).min(1).max(maxRoster).optional() }))
    .output(classDetail.extend({ notReset: z.array(z.object({ seatId: z.string(), email: z.string(), reason: z.string() })) }))
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "reset its vms");
      const seatIds = await seatsOf(db, klass, input.seatIds);
      const seats = await db.labSeat.findMany({ where: { id: { in: seatIds } }, include: { vm: true }, orderBy: { email: "asc" } });
      const notReset: { seatId: string; email: string; reason: string }[] = [];
      for (const seat of seats) {
        const vm = liveVm(seat);
        if (vm === null) {
          if (input.seatIds !== undefined) notReset.push({ seatId: seat.id, email: seat.email, reason: "the student has no vm yet" });
          continue;
        }
        try {
          await requestReconcile(ctx, await resetClone(db, vm, ctx.viewer.email));
        } catch (error) {
          if (!(error instanceof PortalError)) throw error;
          notReset.push({ seatId: seat.id, email: seat.email, reason: error.message });
        }
      }
      return { ...(await toClassDetail(db, klass.id)), notReset };
    }),

  console: auditedProcedure("class.console")
    .meta({
      openapi: {
        method: "POST",
        path: "/classes/{id}/seats/{seatId}/console",
        protect: true,
        tags: ["classes"],
        summary: "A single-use, 60 s console URL for a student's vm: view-only (the default), or with control, which the student's page announces",
      },
    })
    .input(seatPath.extend({ mode: z.enum(["view", "control"], { error: 'must be "view" or "control"' }).default("view") }))
    .output(consoleGrant)
    .mutation(async ({ ctx, input }) => {
      const { db, settings } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "console", ctx.audit);
      const seat = await findSeat(db, klass, input.seatId);
      const vm = liveVm(seat);
      if (vm === null || vm.state !== "running") {
        throw new PortalError("action_refused", `cannot open ${seat.email}'s console: their vm is ${vm?.state ?? "not made yet"}; it opens while the vm runs`, { id: seat.id, state: vm?.state ?? null });
      }
      ctx.audit.targetId = seat.id;
      if (input.mode === "control") await db.labSeat.update({ where: { id: seat.id }, data: { controlledById: ctx.viewer.id, controlledSince: new Date() } });
      const { token, expiresAt } = signConsoleToken({
        vmId: vm.id,
        userId: ctx.viewer.id,
        apiTokenId: ctx.viewer.token?.id,
        sessionId: ctx.viewer.sessionId ?? undefined,
        mode: input.mode,
        secret: settings.clusterSecret,
        ttlSeconds: 60,
      });
      return { url: `${settings.consolePublicUrl}/console?token=${encodeURIComponent(token)}`, token, expiresAt: expiresAt.toISOString() };
    }),

  release: auditedProcedure("class.release")
    .meta({ openapi: { method: "POST", path: "/classes/{id}/seats/{seatId}/release", protect: true, tags: ["classes"], summary: "Give control back to the student (the announcement on their page goes away)" } })
    .input(seatPath)
    .output(seatSummary)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "console", ctx.audit);
      const seat = await findSeat(db, klass, input.seatId);
      ctx.audit.targetId = seat.id;
      const released = await db.labSeat.update({ where: { id: seat.id }, data: { controlledById: null, controlledSince: null }, include: { vm: true } });
      return toSeatSummary(klass, released, new Map(), new Date());
    }),

  studentLink: auditedProcedure("class.student-link")
    .meta({
      openapi: {
        method: "POST",
        path: "/classes/{id}/seats/{seatId}/link",
        protect: true,
        tags: ["classes"],
        summary: "A link that opens the student's console once, within 5 minutes, without signing in: for a learning-management system to hand the student",
      },
    })
    .input(seatPath)
    .output(z.object({ url: z.string(), expiresAt: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const { db, settings } = ctx.services;
      const klass = await findClass(db, ctx.viewer, input.id, "write", ctx.audit);
      refuseEnded(klass, "link a student to it");
      const seat = await findSeat(db, klass, input.seatId);
      ctx.audit.targetId = seat.id;
      const { token, expiresAt } = signLabLink({ seatId: seat.id, secret: settings.clusterSecret });
      return { url: `${settings.publicUrl}/labs/link?token=${encodeURIComponent(token)}`, expiresAt: expiresAt.toISOString() };
    }),
});

/** The ids of the named seats (each must be the class's), or of all its seats. */
async function seatsOf(db: Db, klass: ClassRow, seatIds: string[] | undefined): Promise<string[]> {
  const seats = await db.labSeat.findMany({ where: { classId: klass.id, ...(seatIds === undefined ? {} : { id: { in: seatIds } }) }, select: { id: true } });
  const found = new Set(seats.map((seat) => seat.id));
  const missing = (seatIds ?? []).filter((seatId) => !found.has(seatId));
  if (missing.length > 0) {
    throw new PortalError("not_found", `class ${klass.name} has no seat${missing.length > 1 ? "s" : ""} ${missing.map((m) => `"${m}"`).join(", ")}; its seats are listed by GET /api/v1/classes/${klass.id}`, { seatIds: missing });
  }
  return [...found];
}
