import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { EngineError } from "./errors.ts";
import { toQemuArgv } from "./qemu-argv.ts";
import { checkUnixSocketPath, createSocketDir, maxUnixSocketPathBytes, removeSocketDir } from "./socket-paths.ts";
import { exampleSpec } from "./test-fixtures.ts";

const suiteDir = mkdtempSync(path.join(tmpdir(), "ferry-socket-paths-"));

afterAll(() => rmSync(suiteDir, { recursive: true, force: true }));

function pathOfBytes(bytes: number, char = "s"): string {
  return `/${char.repeat(bytes - 1)}`;
}

describe("checkUnixSocketPath", () => {
  it("takes a path of 107 bytes, the most sun_path holds with its NUL", () => {
    expect(maxUnixSocketPathBytes).toBe(107);
    expect(checkUnixSocketPath(pathOfBytes(107), "the socket")).toBe(pathOfBytes(107));
  });

  it("refuses 108 bytes, naming the path, its length, the limit and what to do", () => {
    const long = pathOfBytes(108);
    let error: unknown;
    try {
      checkUnixSocketPath(long, "vm a's VNC socket");
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe("socket_path_too_long");
    expect((error as EngineError).message).toBe(
      `vm a's VNC socket ${long} is 108 bytes long, but a unix socket's path may have at most 107 bytes. Use a shorter folder for it (a shorter state folder, or TMPDIR for the engine's own sockets).`,
    );
  });

  it("counts bytes, not characters", () => {
    const wide = `/${"é".repeat(54)}`;
    expect(wide.length).toBe(55);
    expect(() => checkUnixSocketPath(wide, "the socket")).toThrow(/is 109 bytes long/);
  });

  it("toQemuArgv refuses a VNC socket too long to bind", () => {
    const spec = exampleSpec();
    const vncSocket = pathOfBytes(120);
    expect(() =>
      toQemuArgv({ ...spec, display: { vncSocket } }, { accelerator: "tcg", qmpSocket: "/tmp/q.sock", pidFile: "/tmp/q.pid" }),
    ).toThrow(`vm ${spec.id}'s VNC socket ${vncSocket} is 120 bytes long`);
  });
});

describe("a process's socket folder", () => {
  it("is short and private whatever the process folder's length, and removeSocketDir removes it", () => {
    const processDir = path.join(suiteDir, "p".repeat(200));
    mkdirSync(processDir);
    const dir = createSocketDir(processDir);
    expect(Buffer.byteLength(path.join(dir, "state-out.sock"))).toBeLessThanOrEqual(maxUnixSocketPathBytes);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(readlinkSync(path.join(processDir, "sockets"))).toBe(dir);
    removeSocketDir(processDir);
    expect(existsSync(dir)).toBe(false);
    expect(existsSync(path.join(processDir, "sockets"))).toBe(false);
  });

  it("removeSocketDir does nothing for a process folder without one", () => {
    const processDir = path.join(suiteDir, "none");
    mkdirSync(processDir);
    expect(() => removeSocketDir(processDir)).not.toThrow();
  });
});
