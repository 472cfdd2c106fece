import { describe, expect, it } from "vitest";
import { type LabSeatClock, type LabSeatTime, labSeatTime } from "./index.ts";

const now = new Date("2030-01-01T10:00:00Z");
const minutesAgo = (m: number) => new Date(now.getTime() - m * 60_000);
const limits = { sessionMinutes: 30, totalMinutes: 120, closesAt: new Date("2030-01-01T18:00:00Z") };
const fresh: LabSeatClock = { usedSeconds: 0, extraMinutes: 0, sessionStartedAt: null };

describe("lab seat time", () => {
  const cases: [string, Partial<LabSeatClock>, Partial<typeof limits>, LabSeatTime][] = [
    ["a fresh seat has its total, and one session's worth", {}, {}, { sessionSeconds: 0, secondsLeft: 7200, sessionSecondsLeft: 1800 }],
    ["a running session counts against both", { sessionStartedAt: minutesAgo(10) }, {}, { sessionSeconds: 600, secondsLeft: 6600, sessionSecondsLeft: 1200 }],
    ["ended sessions count against the total", { usedSeconds: 6000 }, {}, { sessionSeconds: 0, secondsLeft: 1200, sessionSecondsLeft: 1200 }],
    ["extra minutes add to the total", { usedSeconds: 7200, extraMinutes: 15 }, {}, { sessionSeconds: 0, secondsLeft: 900, sessionSecondsLeft: 900 }],
    ["a session past its minutes has none left", { sessionStartedAt: minutesAgo(45) }, {}, { sessionSeconds: 2700, secondsLeft: 4500, sessionSecondsLeft: 0 }],
    ["used up is zero, never negative", { usedSeconds: 7000, sessionStartedAt: minutesAgo(20) }, {}, { sessionSeconds: 1200, secondsLeft: 0, sessionSecondsLeft: 0 }],
    ["the class closing caps both", {}, { closesAt: new Date("2030-01-01T10:05:00Z") }, { sessionSeconds: 0, secondsLeft: 300, sessionSecondsLeft: 300 }],
    ["a closed class leaves nothing", {}, { closesAt: minutesAgo(1) }, { sessionSeconds: 0, secondsLeft: 0, sessionSecondsLeft: 0 }],
    ["a session start in the future (clock skew) counts as none", { sessionStartedAt: new Date(now.getTime() + 5000) }, {}, { sessionSeconds: 0, secondsLeft: 7200, sessionSecondsLeft: 1800 }],
  ];
  it.each(cases)("%s", (_name, seat, more, expected) => {
    expect(labSeatTime({ ...limits, ...more }, { ...fresh, ...seat }, now)).toEqual(expected);
  });
});
