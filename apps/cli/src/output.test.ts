import { describe, expect, it } from "vitest";
import { fields, formatBytes, formatMemory, table } from "./output.ts";

describe("table", () => {
  it("aligns every column but the last on the widest cell", () => {
    expect(
      table([
        ["NAME", "STATE", "ID"],
        ["web-1", "running", "a"],
        ["a-much-longer-name", "stopped", "b"],
      ]),
    ).toBe(["NAME                STATE    ID", "web-1               running  a", "a-much-longer-name  stopped  b"].join("\n"));
  });
});

describe("fields", () => {
  it("aligns the values after the longest key", () => {
    expect(
      fields([
        ["name", "web-1"],
        ["accelerator", "tcg"],
      ]),
    ).toBe("name:        web-1\naccelerator: tcg");
  });
});

describe("formatBytes and formatMemory", () => {
  it.each([
    [0, "0 B"],
    [1023, "1023 B"],
    [1024, "1.0 KiB"],
    [22_020_096, "21.0 MiB"],
    [3 * 1024 ** 3, "3.0 GiB"],
  ])("formatBytes(%d) is %s", (bytes, text) => expect(formatBytes(bytes)).toBe(text));

  it.each([
    [256, "256 MiB"],
    [1024, "1 GiB"],
    [1536, "1536 MiB"],
    [3072, "3 GiB"],
  ])("formatMemory(%d) is %s", (mib, text) => expect(formatMemory(mib)).toBe(text));
});
