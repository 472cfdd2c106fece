// Lab classes, the student's side. A student is not a member of the class's organization: they
// are authorised by holding the seat (its user, or its invited email once they sign in with it),
// and anyone else's seat is reported as missing. A student starts (or resumes) their own vm,
// resets it, and opens its console; a learning-management system's link opens the console
// without signing in, once.
import { labSeatTime, redisKeys } from "@ferry/jobs";
import { type Db, Prisma } from "@ferry/db";
import { TokenError, signConsoleToken, verifyLabLink } from "@ferry/tokens";
import { z } from "zod";
import { PortalError } from "../errors.ts";
import { recordId } from "../fields.ts";
import { assertSomeWorkerCanRun, createClone, resetClone } from "../lab-clones.ts";
import { checkQuota, lockProject } from "../quota.ts";
import { type AuditTarget, auditedProcedure, authedProcedure, createTRPCRouter, linkProcedure, type PortalContext, type Viewer } from "../trpc.ts";
import { type ClassRow, cloneName, cloneSourceOf, controllerNames, liveVm } from "./lab-class.ts";
import { requestReconcile } from "./vm.ts";

const id = recordId;

/** A student's seat as they see it. */
const seatView = z.object({
  id: z.string(),
  class: z.object({ id: z.string(), name: z.string(), instructions: z.string(), opensAt: z.string(), closesAt: z.string(), status: z.string() }),
  vmId: z.string().nullable(),
  vmState: z.string().nullable(),
  /** of the student's total (with extensions), before the class closes */
  secondsLeft: z.number().int(),
  /** of the running session, or of the next one */
  sessionSecondsLeft: z.number().int(),
  /** an instructor holding the console with control */
  controlledBy: z.object({ id: z.string(), name: z.string() }).nullable(),
});
type SeatView = z.infer<typeof seatView>;

const seatInclude = {
  vm: true,
  class: { include: { template: { select: { name: true } }, templateVersion: { select: { version: true } }, _count: { select: { seats: true } } } },
} satisfies Prisma.LabSeatInclude;
type StudentSeat = Prisma.LabSeatGetPayload<{ include: typeof seatInclude }>;

async function toSeatView(db: Db, seat: StudentSeat, now = new Date()): Promise<SeatView> {
  const names = await controllerNames(db, [seat]);
  const time = labSeatTime(seat.class, seat, now);
  const { class: klass } = seat;
  return {
    id: seat.id,
    class: { id: klass.id, name: klass.name, instructions: klass.instructions, opensAt: klass.opensAt.toISOString(), closesAt: klass.closesAt.toISOString(), status: klass.status },
    vmId: seat.vmId,
    vmState: liveVm(seat)?.state ?? null,
    secondsLeft: time.secondsLeft,
    sessionSecondsLeft: time.sessionSecondsLeft,
    controlledBy: seat.controlledById === null ? null : { id: seat.controlledById, name: names.get(seat.controlledById) ?? "your instructor" },
  };
}

/** Seats the viewer holds: theirs, or invited by their email and not yet taken by anyone. */
function heldBy(viewer: Viewer): Prisma.LabSeatWhereInput {
  return { OR: [{ userId: viewer.id }, { userId: null, email: viewer.email.toLowerCase() }] };
}

/**
 * The viewer's seat with this id; not_found for anyone else's, so seats cannot be probed. An
 * invited seat is bound to the person the first time they reach it.
 */
async function findOwnSeat(db: Db, viewer: Viewer, seatId: string, audit?: AuditTarget): Promise<StudentSeat> {
  const seat = await db.labSeat.findFirst({ where: { id: seatId, ...heldBy(viewer) }, include: seatInclude });
  if (seat === null) throw new PortalError("not_found", `you have no lab seat with id "${seatId}"; your seats are listed by GET /api/v1/seats`, { id: seatId });
  if (audit) audit.projectId = seat.class.projectId;
  if (seat.userId === null) {
    await db.labSeat.updateMany({ where: { id: seat.id, userId: null }, data: { userId: viewer.id } });
    return { ...seat, userId: viewer.id };
  }
  return seat;
}

/** Why the student may not run their vm now; null when they may. */
function startRefusal(klass: ClassRow, seat: StudentSeat, now: Date): string | null {
  if (klass.status === "ended" || klass.closesAt <= now) return `class ${klass.name} closed at ${(klass.endedAt ?? klass.closesAt).toISOString()}; ask your instructor if you need more time`;
  if (klass.status === "scheduled") return `class ${klass.name} has not been started by its instructor yet; try again once it has`;
  if (klass.opensAt > now) return `class ${klass.name} opens at ${klass.opensAt.toISOString()}; come back then`;
  if (labSeatTime(klass, seat, now).secondsLeft === 0) {
    return `you have used all ${klass.totalMinutes + seat.extraMinutes} minutes of class ${klass.name}; ask your instructor to extend your time`;
  }
  return null;
}

function refuseStart(klass: ClassRow, seat: StudentSeat, what: string): void {
  const refusal = startRefusal(klass, seat, new Date());
  if (refusal !== null) throw new PortalError("action_refused", `cannot ${what}: ${refusal}`, { id: seat.id });
}

/**
 * Record that the student asked for their vm (start, console, link). Their session begins once
 * it is also running (the controller's class pass), so a pre-warmed vm spends none of their
 * time before they come; the first ask of a session is kept, and the pass forgets it when the
 * session ends.
 */
async function markStartRequested(db: Db, seatId: string): Promise<void> {
  await db.labSeat.updateMany({ where: { id: seatId, startRequestedAt: null }, data: { startRequestedAt: new Date() } });
}

/**
 * Run the seat's vm: its clone made now when it has none (as students who join after the
 * class started get theirs), else a suspended or stopped one asked to run again.
 */
async function startSeat(ctx: PortalContext & { viewer: Viewer }, seat: StudentSeat): Promise<void> {
  const { db } = ctx.services;
  const vm = liveVm(seat);
  if (vm === null) {
    const source = await cloneSourceOf(db, seat.class, ctx.viewer.email);
    await assertSomeWorkerCanRun(db, source.version);
    const clone = await db.$transaction(async (tx) => {
      const made = await createClone(tx, source, cloneName(seat.class.name, seat.email));
      const { count } = await tx.labSeat.updateMany({ where: { id: seat.id, vmId: seat.vmId }, data: { vmId: made.id } });
      if (count === 0) throw new PortalError("action_refused", "your seat changed while the request was handled (a start from another tab?); look at it again", { id: seat.id });
      return made;
    });
    await requestReconcile(ctx, clone);
    return;
  }
  if (vm.desiredState === "running") return;
  const generation = vm.generation + 1;
  await db.$transaction(async (tx) => {
    await lockProject(tx, vm.projectId);
    await checkQuota(tx, await tx.project.findUniqueOrThrow({ where: { id: vm.projectId } }), { vcpus: vm.vcpus, memoryMiB: vm.memoryMiB }, vm.id);
    const operation = vm.state === "suspended" || vm.state === "suspending" ? "resume" : "start";
    const { count } = await tx.vm.updateMany({ where: { id: vm.id, generation: vm.generation }, data: { desiredState: "running", generation, operation, progress: Prisma.DbNull } });
    if (count === 0) throw new PortalError("action_refused", "your vm changed while the request was handled; look at it again", { id: seat.id });
    await tx.vmEvent.create({ data: { vmId: vm.id, kind: `action.${operation}`, message: `${operation} requested by ${ctx.viewer.email} (lab class ${seat.class.name})` } });
  });
  await requestReconcile(ctx, { id: vm.id, generation });
}

/** A console token for the seat's running vm, for `userId`. */
function seatConsole(ctx: PortalContext, seat: StudentSeat, userId: string, viewer: Viewer | null) {
  const vm = liveVm(seat);
  if (vm === null || vm.state !== "running") {
    throw new PortalError("action_refused", `cannot open the console: your vm is ${vm?.state ?? "not made yet"}; start it first`, { id: seat.id, state: vm?.state ?? null });
  }
  const { settings } = ctx.services;
  const { token, expiresAt } = signConsoleToken({
    vmId: vm.id,
    userId,
    apiTokenId: viewer?.token?.id,
    sessionId: viewer?.sessionId ?? undefined,
    secret: settings.clusterSecret,
    ttlSeconds: 60,
  });
  return { url: `${settings.consolePublicUrl}/console?token=${encodeURIComponent(token)}`, token, expiresAt: expiresAt.toISOString() };
}

const byId = z.strictObject({ id });
const consoleGrant = z.object({ url: z.string(), token: z.string(), expiresAt: z.string() });

export const labSeatRouter = createTRPCRouter({
  mine: authedProcedure
    .meta({ openapi: { method: "GET", path: "/seats", protect: true, tags: ["seats"], summary: "Your seats in lab classes, newest class first" } })
    .input(z.strictObject({}).default({}))
    .output(z.object({ items: z.array(seatView) }))
    .query(async ({ ctx }) => {
      const { db } = ctx.services;
      const seats = await db.labSeat.findMany({ where: heldBy(ctx.viewer), include: seatInclude, orderBy: [{ class: { opensAt: "desc" } }, { id: "asc" }], take: 200 });
      const now = new Date();
      return { items: await Promise.all(seats.map((seat) => toSeatView(db, seat, now))) };
    }),

  get: authedProcedure
    .meta({ openapi: { method: "GET", path: "/seats/{id}", protect: true, tags: ["seats"], summary: "Your seat: the class's instructions, your vm and your time left" } })
    .input(byId)
    .output(seatView)
    .query(async ({ ctx, input }) => toSeatView(ctx.services.db, await findOwnSeat(ctx.services.db, ctx.viewer, input.id))),

  join: auditedProcedure("seat.join")
    .meta({ openapi: { method: "POST", path: "/seats/join", protect: true, tags: ["seats"], summary: "Join a lab class with the code your instructor gave you" } })
    .input(z.strictObject({ code: z.string().trim().min(1).max(40) }))
    .output(seatView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const code = input.code.toUpperCase();
      const klass = await db.labClass.findUnique({ where: { joinCode: code } });
      if (klass === null) throw new PortalError("not_found", `no lab class has the join code "${code}"; check it with your instructor`, { code });
      ctx.audit.projectId = klass.projectId;
      ctx.audit.targetId = klass.id;
      const now = new Date();
      if (klass.joinCodeExpiresAt !== null && klass.joinCodeExpiresAt <= now) {
        throw new PortalError("action_refused", `the join code "${code}" expired at ${klass.joinCodeExpiresAt.toISOString()}; ask your instructor for a new one`, { code });
      }
      if (klass.status === "ended" || klass.closesAt <= now) throw new PortalError("action_refused", `class ${klass.name} is closed; it cannot be joined any more`, { code });
      const email = ctx.viewer.email.toLowerCase();
      const taken = await db.labSeat.findUnique({ where: { classId_email: { classId: klass.id, email } } });
      if (taken !== null && taken.userId !== null && taken.userId !== ctx.viewer.id) {
        throw new PortalError("action_refused", `the seat for ${email} in class ${klass.name} is held by another account; ask your instructor`, { code });
      }
      const seat = await db.labSeat.upsert({
        where: { classId_email: { classId: klass.id, email } },
        create: { classId: klass.id, email, userId: ctx.viewer.id },
        update: { userId: ctx.viewer.id },
        include: seatInclude,
      });
      return toSeatView(db, seat, now);
    }),

  start: auditedProcedure("seat.start")
    .meta({ openapi: { method: "POST", path: "/seats/{id}/start", protect: true, tags: ["seats"], summary: "Start (or resume) your vm; your session's time starts once it runs" } })
    .input(byId)
    .output(seatView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const seat = await findOwnSeat(db, ctx.viewer, input.id, ctx.audit);
      refuseStart(seat.class, seat, "start your vm");
      await startSeat(ctx, seat);
      await markStartRequested(db, seat.id);
      return toSeatView(db, await findOwnSeat(db, ctx.viewer, seat.id));
    }),

  reset: auditedProcedure("seat.reset")
    .meta({ openapi: { method: "POST", path: "/seats/{id}/reset", protect: true, tags: ["seats"], summary: "Take your vm back to the lab's starting point; your changes are lost" } })
    .input(byId)
    .output(seatView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const seat = await findOwnSeat(db, ctx.viewer, input.id, ctx.audit);
      refuseStart(seat.class, seat, "reset your vm");
      const vm = liveVm(seat);
      if (vm === null) throw new PortalError("action_refused", "you have no vm to reset yet; start it, and it begins at the lab's starting point", { id: seat.id });
      await requestReconcile(ctx, await resetClone(db, vm, ctx.viewer.email));
      return toSeatView(db, await findOwnSeat(db, ctx.viewer, seat.id));
    }),

  console: auditedProcedure("seat.console")
    .meta({ openapi: { method: "POST", path: "/seats/{id}/console", protect: true, tags: ["seats"], summary: "A single-use, 60 s console URL for your running vm" } })
    .input(byId)
    .output(consoleGrant)
    .mutation(async ({ ctx, input }) => {
      const seat = await findOwnSeat(ctx.services.db, ctx.viewer, input.id, ctx.audit);
      const grant = seatConsole(ctx, seat, ctx.viewer.id, ctx.viewer);
      await markStartRequested(ctx.services.db, seat.id);
      return grant;
    }),

  openLink: linkProcedure
    .meta({ openapi: { method: "POST", path: "/seats/open-link", tags: ["seats"], summary: "Open a student link (once): a console URL for the seat's running vm" } })
    .input(z.strictObject({ token: z.string().min(1).max(2000) }))
    .output(consoleGrant)
    .mutation(async ({ ctx, input }) => {
      const { db, redis, settings } = ctx.services;
      const refused = (why: string) => new PortalError("unauthenticated", `this lab link cannot be used: ${why}. Ask for a new link.`);
      let link;
      try {
        link = verifyLabLink(input.token, { secret: settings.clusterSecret });
      } catch (error) {
        if (error instanceof TokenError) throw refused(error.message);
        throw error;
      }
      const seat = await db.labSeat.findUnique({ where: { id: link.seatId }, include: seatInclude });
      if (seat === null) throw refused("the student was removed from the class");
      // The console acts for the student when they have an account, else for the instructor
      // who issued the link on their behalf. A vm that is not running leaves the link unused.
      const grant = seatConsole(ctx, seat, seat.userId ?? seat.class.instructorId, null);
      const first = await redis.set(redisKeys.labLinkUsed(settings.queuePrefix, link.linkId), "1", "EXAT", Math.ceil(link.expiresAt.getTime() / 1000) + 60, "NX");
      if (first !== "OK") throw refused("it was already opened");
      await markStartRequested(db, seat.id);
      return grant;
    }),
});
