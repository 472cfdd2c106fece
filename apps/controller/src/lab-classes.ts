// Lab classes in the reconcile pass: each student's time, and the class schedule.
//
// 1. Sessions. A student's session begins once they have asked for their vm (labSeat.start,
//    .console or .openLink set startRequestedAt) and it is running, not before the class
//    opens: at the latest of the three. A pre-warmed vm nobody asked for runs unmetered, ready
//    for its student. The session ends when the vm stops running for any reason: its seconds
//    are added to the seat's usedSeconds and the request is forgotten, so the next session
//    waits for the student to ask again.
// 2. Limits. A vm whose session minutes, or whose student's total (with extensions), ran out
//    is asked to suspend through the normal path: its guest state goes to object storage and
//    the next start resumes it where it was.
// 3. Schedule. At closesAt (or once the instructor ended it) every vm of the class that is
//    wanted running is suspended the same way, and the class is marked ended.
// The decisions are pure (seatDecision, classEnds) so every rule has a table test; the pass
// reads the rows, asks them, and writes conditionally on what it read.
import type { Db } from "@ferry/db";
import { labSeatTime } from "@ferry/jobs";
import type { Logger } from "pino";

/** The fields of a class the decisions read. */
export interface ClassSnapshot {
  name: string;
  /** scheduled | started | ended */
  status: string;
  opensAt: Date;
  closesAt: Date;
  sessionMinutes: number;
  totalMinutes: number;
}

/** The fields of a seat, and of its vm, the decision reads. */
export interface SeatSnapshot {
  email: string;
  usedSeconds: number;
  extraMinutes: number;
  sessionStartedAt: Date | null;
  /** when the student asked for their vm since the last session ended */
  startRequestedAt: Date | null;
  vm: { state: string; desiredState: string; stateChangedAt: Date } | null;
}

export type SeatDecision =
  | { kind: "wait" }
  /** the vm runs and no session is counted yet: one starts at `at` */
  | { kind: "begin"; at: Date }
  /** the vm stopped running: the session's seconds go to usedSeconds */
  | { kind: "end"; seconds: number }
  /** time is up: the session (if any) ends and the vm is asked to suspend */
  | { kind: "suspend"; seconds: number; reason: string };

/** States in which a session goes on: the guest runs, or is being moved or reset on its way to running again. */
const sessionStates = new Set(["running", "migrating", "resuming", "rebooting"]);

/** Whether the class no longer runs vms: ended by the instructor, or past closesAt. */
export function classClosed(klass: ClassSnapshot, now: Date): boolean {
  return klass.status === "ended" || klass.closesAt <= now;
}

/** Whether the pass should mark the class ended now. */
export function classEnds(klass: ClassSnapshot, now: Date): boolean {
  return klass.status !== "ended" && klass.closesAt <= now;
}

/** What to do for one seat now. Rules are checked top to bottom; the first match wins. */
export function seatDecision(klass: ClassSnapshot, seat: SeatSnapshot, now: Date): SeatDecision {
  const wanted = seat.vm?.desiredState === "running" ? seat.vm : null;
  const time = labSeatTime(klass, seat, now);
  const closed = classClosed(klass, now);

  // 1. Time is up for a vm that is wanted running: suspend it, closing the session.
  if (wanted !== null && (closed || time.secondsLeft === 0 || (seat.sessionStartedAt !== null && time.sessionSecondsLeft === 0))) {
    const reason = closed
      ? `class ${klass.name} ${klass.status === "ended" ? "ended" : `closed at ${klass.closesAt.toISOString()}`}`
      : time.secondsLeft === 0
        ? `${seat.email} used all ${klass.totalMinutes + seat.extraMinutes} minutes of class ${klass.name}`
        : `${seat.email}'s session of ${klass.sessionMinutes} minutes in class ${klass.name} is over`;
    return { kind: "suspend", seconds: time.sessionSeconds, reason };
  }

  // 2. A counted session whose vm no longer runs (suspended, stopped, failed, deleted) ends.
  if (seat.sessionStartedAt !== null) {
    if (wanted !== null && sessionStates.has(wanted.state)) return { kind: "wait" };
    return { kind: "end", seconds: time.sessionSeconds };
  }

  // 3. A running vm its student asked for starts a session: from the latest of the request, the
  //    vm reaching running and the opening. Without a request (pre-warmed) it waits for them.
  if (wanted !== null && wanted.state === "running" && seat.startRequestedAt !== null && klass.opensAt <= now) {
    const at = [wanted.stateChangedAt, seat.startRequestedAt].reduce((latest, t) => (t > latest ? t : latest), klass.opensAt);
    return { kind: "begin", at };
  }
  return { kind: "wait" };
}

export interface LabClassesOptions {
  db: Db;
  /** ask the reconciler to act on a vm now (a suspend asked for here) */
  reconcileVm: (vmId: string) => Promise<void>;
  log: Logger;
}

/** Counts students' time and enforces limits and the schedule; once per reconcile pass. */
export class LabClasses {
  readonly #options: LabClassesOptions;

  constructor(options: LabClassesOptions) {
    this.#options = options;
  }

  /** One pass: every seat with a session or a vm wanted running, then classes that closed. */
  async reconcileAll(now = new Date()): Promise<void> {
    const { db, log } = this.#options;
    const seats = await db.labSeat.findMany({
      where: { OR: [{ sessionStartedAt: { not: null } }, { vm: { desiredState: "running" } }] },
      include: { class: true, vm: { select: { id: true, generation: true, state: true, desiredState: true, stateChangedAt: true } } },
    });
    for (const seat of seats) {
      const decision = seatDecision(seat.class, seat, now);
      try {
        await this.#apply(seat, decision, now);
      } catch (error) {
        log.error({ err: error, seatId: seat.id }, "lab class pass: the seat's change failed; the next pass retries");
      }
    }
    const closing = await db.labClass.findMany({ where: { status: { not: "ended" }, closesAt: { lte: now } } });
    for (const klass of closing) {
      if (!classEnds(klass, now)) continue;
      // Seats whose vm was wanted running were suspended above; the class ends once none is left.
      const running = await db.labSeat.count({ where: { classId: klass.id, vm: { desiredState: "running" } } });
      if (running > 0) continue;
      const { count } = await db.labClass.updateMany({ where: { id: klass.id, status: klass.status }, data: { status: "ended", endedAt: now } });
      if (count === 1) log.info({ classId: klass.id, name: klass.name }, "lab class closed");
    }
  }

  async #apply(
    seat: { id: string; sessionStartedAt: Date | null; vm: { id: string; generation: number } | null },
    decision: SeatDecision,
    now: Date,
  ): Promise<void> {
    const { db, log } = this.#options;
    switch (decision.kind) {
      case "wait":
        return;
      case "begin":
        await db.labSeat.updateMany({ where: { id: seat.id, sessionStartedAt: null }, data: { sessionStartedAt: decision.at } });
        return;
      case "end":
        await this.#endSession(seat, decision.seconds);
        return;
      case "suspend": {
        const vm = seat.vm!;
        const suspended = await db.$transaction(async (tx) => {
          const { count } = await tx.vm.updateMany({
            where: { id: vm.id, generation: vm.generation, desiredState: "running" },
            data: { desiredState: "suspended", generation: vm.generation + 1, operation: "suspend" },
          });
          if (count === 0) return false;
          await tx.vmEvent.create({ data: { vmId: vm.id, kind: "action.suspend", message: `suspended: ${decision.reason}`, at: now } });
          return true;
        });
        await this.#endSession(seat, decision.seconds);
        if (!suspended) return;
        log.info({ seatId: seat.id, vmId: vm.id, reason: decision.reason }, "lab vm suspended: time is up");
        await this.#options.reconcileVm(vm.id);
      }
    }
  }

  /** Count the session's seconds (0 when none ran) and forget the student's request with it. */
  async #endSession(seat: { id: string; sessionStartedAt: Date | null }, seconds: number): Promise<void> {
    await this.#options.db.labSeat.updateMany({
      where: { id: seat.id, sessionStartedAt: seat.sessionStartedAt },
      data: { usedSeconds: { increment: seconds }, sessionStartedAt: null, startRequestedAt: null },
    });
  }
}
