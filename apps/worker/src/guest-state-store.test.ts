import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterEach, describe, expect, it, vi } from "vitest";

import { memoryStateSink, progressReporter } from "./guest-state-store.ts";

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

describe("memoryStateSink", () => {
  const dir = mkdtempSync(join(tmpdir(), "ferry-memory-sink-"));
  afterEach(() => rmSync(join(dir, "memory.zst"), { force: true }));

  it("gives the store copies of the lent chunks, writes the local copy, and signals the first chunk once", async () => {
    const store = new PassThrough();
    const stored: Buffer[] = [];
    store.on("data", (chunk: Buffer) => stored.push(chunk));
    let firstChunks = 0;
    const sink = memoryStateSink(store, join(dir, "memory.zst"), () => firstChunks++);
    // One block, lent twice, as the engine reuses its blocks.
    const block = Buffer.from("first");
    await sink.write(block);
    block.write("again");
    await sink.write(block);
    block.write("XXXXX");
    await sink.end();
    expect(Buffer.concat(stored).toString()).toBe("firstagain");
    expect(readFileSync(join(dir, "memory.zst"), "utf8")).toBe("firstagain");
    expect(firstChunks).toBe(1);
  });

  it("fails the write waiting for a store that stopped reading, with the store's error", async () => {
    const store = new PassThrough({ highWaterMark: 4 });
    // As in a suspend: the store's failure is reported from its upload.
    store.on("error", () => undefined);
    const sink = memoryStateSink(store, join(dir, "memory.zst"), () => undefined);
    const waiting = sink.write(Buffer.from("more than four bytes"));
    store.destroy(new Error("bucket unreachable"));
    await expect(waiting).rejects.toThrow("the guest state store stopped reading the memory stream: bucket unreachable");
    await expect(sink.write(Buffer.from("next"))).rejects.toThrow("bucket unreachable");
    sink.abort(new Error("the save failed"));
  });
});
