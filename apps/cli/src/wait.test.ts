import { PassThrough } from "node:stream";
import { describe, expect, it } from "vitest";
import { CommandError } from "./errors.ts";
import { ProgressLine } from "./output.ts";
import { pollUntil } from "./wait.ts";

/** A progress line into a buffer (not a terminal: one line per change). */
function capturedProgress(): { progress: ProgressLine; lines: () => string[] } {
  const stream = new PassThrough();
  let text = "";
  stream.on("data", (chunk: Buffer) => (text += chunk.toString()));
  return { progress: new ProgressLine(stream as unknown as NodeJS.WriteStream), lines: () => text.split("\n").filter((line) => line !== "") };
}

const counting = { next: async (n: number) => n + 1, show: (n: number): [string] => [`at ${n}`], intervalMs: 1 };

describe("pollUntil", () => {
  it("polls until done, showing each new value", async () => {
    const { progress, lines } = capturedProgress();
    const late = () => new CommandError("late", "timeout");
    await expect(pollUntil(0, { ...counting, done: (n) => n === 3, late, timeoutMs: 10_000 }, progress)).resolves.toBe(3);
    expect(lines()).toEqual(["at 0", "at 1", "at 2", "at 3"]);
  });

  it("stops at once with the error done throws (it can never settle)", async () => {
    const { progress } = capturedProgress();
    const done = (n: number) => {
      if (n === 2) throw new CommandError("went wrong at 2", "vm_failed");
      return false;
    };
    await expect(pollUntil(0, { ...counting, done, late: () => new CommandError("late", "timeout"), timeoutMs: 10_000 }, progress)).rejects.toThrow("went wrong at 2");
  });

  it("gives late's error for the last value once the time is up", async () => {
    const { progress } = capturedProgress();
    const late = (n: number) => new CommandError(`still at ${n}`, "timeout");
    await expect(pollUntil(0, { ...counting, done: () => false, late, timeoutMs: 30, intervalMs: 5 }, progress)).rejects.toThrow(/^still at \d+$/);
  });
});
