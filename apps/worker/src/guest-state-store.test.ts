import { afterEach, describe, expect, it, vi } from "vitest";

import { progressReporter } from "./guest-state-store.ts";

afterEach(() => {
  vi.useRealTimers();
});

describe("progressReporter", () => {
  it("reports the first time an interval after it was made, then at most once an interval", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const reports: Array<{ done: number; total: number }> = [];
    const progress = progressReporter((report) => reports.push(report), 250);
    progress(10, 100);
    vi.advanceTimersByTime(249);
    progress(20, 100);
    expect(reports).toEqual([]);
    vi.advanceTimersByTime(1);
    progress(30, 100);
    vi.advanceTimersByTime(100);
    progress(40, 100);
    vi.advanceTimersByTime(150);
    progress(120, 100);
    expect(reports).toEqual([
      { done: 30, total: 100 },
      { done: 100, total: 100 },
    ]);
  });
});
