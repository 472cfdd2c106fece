import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { digestFile, isGuestStateFile, streamCorruption } from "./guest-state.ts";

const dir = mkdtempSync(path.join(tmpdir(), "ferry-guest-state-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const sha = "a".repeat(64);

describe("streamCorruption", () => {
  it.each([
    ["the recorded stream", { bytes: 10, sha256: sha }, undefined],
    ["a shorter stream", { bytes: 9, sha256: sha }, "the stream has 9 bytes but the manifest says 10 (truncated or padded)"],
    ["a longer stream", { bytes: 11, sha256: sha }, "the stream has 11 bytes but the manifest says 10 (truncated or padded)"],
    ["other bytes", { bytes: 10, sha256: "b".repeat(64) }, `the stream's sha256 is ${"b".repeat(64)} but the manifest says ${sha}`],
  ])("%s", (_what, actual, expected) => {
    expect(streamCorruption(actual, { streamBytes: 10, sha256: sha })).toBe(expected);
  });
});

describe("digestFile", () => {
  it("counts and hashes a file larger than one read", async () => {
    const content = Buffer.alloc(3 * 1024 * 1024 + 17, 7);
    const file = path.join(dir, "state.zst");
    writeFileSync(file, content);
    expect(await digestFile(file)).toEqual({
      bytes: content.length,
      sha256: createHash("sha256").update(new Uint8Array(content)).digest("hex"),
    });
  });
});

describe("isGuestStateFile", () => {
  it("tells a { file } source from a stream", () => {
    expect(isGuestStateFile({ file: "/x" })).toBe(true);
    expect(isGuestStateFile(Readable.from([]))).toBe(false);
  });
});
