import { describe, expect, it } from "vitest";
import { type ClassSnapshot, type SeatDecision, type SeatSnapshot, classEnds, seatDecision } from "./lab-classes.ts";

const now = new Date("2030-01-01T10:00:00Z");
const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000);
const started: ClassSnapshot = { name: "shells", status: "started", opensAt: minutesAgo(60), closesAt: new Date("2030-01-01T12:00:00Z"), sessionMinutes: 30, totalMinutes: 120 };
const vm = (state: string, desiredState = "running", stateChangedAt = minutesAgo(5)) => ({ state, desiredState, stateChangedAt });
const seat: SeatSnapshot = { email: "ada@school.test", usedSeconds: 0, extraMinutes: 0, sessionStartedAt: null, startRequestedAt: null, vm: null };
/** the student asked for their vm `m` minutes ago */
const asked = (m: number) => ({ startRequestedAt: minutesAgo(m) });

describe("lab seat decision", () => {
  const cases: [string, Partial<SeatSnapshot>, Partial<ClassSnapshot>, SeatDecision][] = [
    ["no vm yet: nothing to count", {}, {}, { kind: "wait" }],
    ["a vm on its way (resuming from the golden point) starts no session yet", { vm: vm("resuming"), ...asked(1) }, {}, { kind: "wait" }],
    ["a pre-warmed running vm its student has not asked for uses none of their time", { vm: vm("running") }, {}, { kind: "wait" }],
    ["asked for before it ran: the session begins when it reached running", { vm: vm("running"), ...asked(8) }, {}, { kind: "begin", at: minutesAgo(5) }],
    ["asked for after it ran (pre-warmed): the session begins at the request", { vm: vm("running", "running", minutesAgo(40)), ...asked(2) }, {}, { kind: "begin", at: minutesAgo(2) }],
    [
      "asked for and running before the class opened: the session begins at the opening",
      { vm: vm("running", "running", minutesAgo(90)), ...asked(70) },
      {},
      { kind: "begin", at: minutesAgo(60) },
    ],
    ["before the class opens a running vm uses no time, asked for or not", { vm: vm("running"), ...asked(1) }, { opensAt: new Date(now.getTime() + 60_000) }, { kind: "wait" }],
    ["a request for a vm that is not running yet (queued, suspended) starts nothing", { vm: vm("suspended"), ...asked(1) }, {}, { kind: "wait" }],
    ["a running session within its limits goes on", { vm: vm("running"), sessionStartedAt: minutesAgo(10) }, {}, { kind: "wait" }],
    ["a session goes on while the vm is reset (resuming) or live-migrated", { vm: vm("migrating"), sessionStartedAt: minutesAgo(10) }, {}, { kind: "wait" }],
    [
      "the session's minutes are over: suspended, its seconds counted",
      { vm: vm("running"), sessionStartedAt: minutesAgo(30) },
      {},
      { kind: "suspend", seconds: 1800, reason: "ada@school.test's session of 30 minutes in class shells is over" },
    ],
    [
      "the total is used up mid-session: suspended",
      { vm: vm("running"), sessionStartedAt: minutesAgo(10), usedSeconds: 6600 },
      {},
      { kind: "suspend", seconds: 600, reason: "ada@school.test used all 120 minutes of class shells" },
    ],
    ["extra minutes keep it running", { vm: vm("running"), sessionStartedAt: minutesAgo(10), usedSeconds: 6600, extraMinutes: 15 }, {}, { kind: "wait" }],
    [
      "a vm resumed with no time left is suspended before a session starts",
      { vm: vm("running"), usedSeconds: 7200 },
      {},
      { kind: "suspend", seconds: 0, reason: "ada@school.test used all 120 minutes of class shells" },
    ],
    [
      "at closesAt every vm wanted running is suspended",
      { vm: vm("running"), sessionStartedAt: minutesAgo(10) },
      { closesAt: now },
      { kind: "suspend", seconds: 600, reason: "class shells closed at 2030-01-01T10:00:00.000Z" },
    ],
    ["a pre-warmed vm nobody asked for is suspended at closesAt too", { vm: vm("running") }, { closesAt: now }, { kind: "suspend", seconds: 0, reason: "class shells closed at 2030-01-01T10:00:00.000Z" }],
    ["a queued vm (suspended, wanted running) of a closed class is suspended too", { vm: vm("suspended") }, { closesAt: minutesAgo(1) }, { kind: "suspend", seconds: 0, reason: "class shells closed at 2030-01-01T09:59:00.000Z" }],
    ["an ended class suspends what still runs", { vm: vm("running") }, { status: "ended" }, { kind: "suspend", seconds: 0, reason: "class shells ended" }],
    ["a session whose vm was suspended (by the student, an instructor) ends and is counted", { vm: vm("suspending", "suspended"), sessionStartedAt: minutesAgo(12) }, {}, { kind: "end", seconds: 720 }],
    ["a session whose vm failed ends", { vm: vm("failed"), sessionStartedAt: minutesAgo(3) }, {}, { kind: "end", seconds: 180 }],
    ["a session whose vm was deleted ends", { vm: null, sessionStartedAt: minutesAgo(1) }, {}, { kind: "end", seconds: 60 }],
    ["a suspended vm of a closed class is left alone", { vm: vm("suspended", "suspended") }, { status: "ended" }, { kind: "wait" }],
  ];
  it.each(cases)("%s", (_name, more, klass, expected) => {
    expect(seatDecision({ ...started, ...klass }, { ...seat, ...more }, now)).toEqual(expected);
  });
});

describe("lab class schedule", () => {
  it.each([
    ["a started class before closesAt goes on", {}, false],
    ["a started class at closesAt ends", { closesAt: now }, true],
    ["a scheduled class never started ends at closesAt", { status: "scheduled", closesAt: minutesAgo(1) }, true],
    ["an ended class is not ended again", { status: "ended", closesAt: minutesAgo(1) }, false],
  ] as [string, Partial<ClassSnapshot>, boolean][])("%s", (_name, klass, ends) => {
    expect(classEnds({ ...started, ...klass }, now)).toBe(ends);
  });
});
