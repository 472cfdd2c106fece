// A lab student's time: what is left of their total and of the running session. The portal
// shows it; the controller's class pass suspends a vm when it reaches zero. One function, so
// both read the clock the same way.

/** The class limits a seat's time depends on. */
export interface LabClassLimits {
  sessionMinutes: number;
  totalMinutes: number;
  closesAt: Date;
}

/** The seat's clock: ended sessions, extensions and the running session's start. */
export interface LabSeatClock {
  usedSeconds: number;
  extraMinutes: number;
  sessionStartedAt: Date | null;
}

export interface LabSeatTime {
  /** seconds of the running session so far (0 between sessions) */
  sessionSeconds: number;
  /** seconds the student may still use in all, before the class closes */
  secondsLeft: number;
  /** seconds the running session (or the next one) may still last */
  sessionSecondsLeft: number;
}

/** The seat's time at `now`; never negative. */
export function labSeatTime(limits: LabClassLimits, seat: LabSeatClock, now: Date): LabSeatTime {
  const sessionSeconds = seat.sessionStartedAt === null ? 0 : Math.max(0, Math.floor((now.getTime() - seat.sessionStartedAt.getTime()) / 1000));
  const untilClose = Math.max(0, Math.floor((limits.closesAt.getTime() - now.getTime()) / 1000));
  const total = (limits.totalMinutes + seat.extraMinutes) * 60;
  const secondsLeft = Math.min(untilClose, Math.max(0, total - seat.usedSeconds - sessionSeconds));
  const sessionSecondsLeft = Math.min(secondsLeft, Math.max(0, limits.sessionMinutes * 60 - sessionSeconds));
  return { sessionSeconds, secondsLeft, sessionSecondsLeft };
}
