// A unix socket's path must fit sockaddr_un's sun_path: 108 bytes with the NUL on Linux. A
// longer one is not always refused: Node binds it cut to 107 bytes, where QEMU never finds it
// (a save then waited forever). So a QEMU process's own sockets live in a short folder of their
// own under the temp folder, whatever the run folder's length, and a path given to us is
// checked before anything binds it.
import { mkdtempSync, readlinkSync, rmSync, symlinkSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { EngineError } from "./errors.ts";

/** The longest unix socket path Linux takes, in bytes (sun_path less its NUL). */
export const maxUnixSocketPathBytes = 107;

/** Returns `socketPath`, or throws if it is too long to bind or connect to. */
export function checkUnixSocketPath(socketPath: string, what: string): string {
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > maxUnixSocketPathBytes) {
    throw new EngineError(
      "socket_path_too_long",
      `${what} ${socketPath} is ${bytes} bytes long, but a unix socket's path may have at most ${maxUnixSocketPathBytes} bytes. Use a shorter folder for it (a shorter state folder, or TMPDIR for the engine's own sockets).`,
      { socketPath, bytes, limit: maxUnixSocketPathBytes },
    );
  }
  return socketPath;
}

// The longest name a process puts in its socket folder (see Vm).
const longestSocketName = "state-out.sock";
const socketDirLink = "sockets";

/**
 * Creates a QEMU process's socket folder (0700, a random name under os.tmpdir()) for as long as
 * something has to connect (QMP at launch, a save), and records it as the symlink
 * `<processDir>/sockets`, so removeSocketDir finds it even after the worker died meanwhile.
 */
export function createSocketDir(processDir: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), "ferry-"));
  try {
    checkUnixSocketPath(path.join(dir, longestSocketName), "the QEMU socket");
    symlinkSync(dir, path.join(processDir, socketDirLink));
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
  return dir;
}

/** Removes the socket folder createSocketDir recorded in `processDir`, if any, and its record. */
export function removeSocketDir(processDir: string): void {
  const link = path.join(processDir, socketDirLink);
  let dir: string;
  try {
    dir = readlinkSync(link);
  } catch {
    return;
  }
  // Only a folder createSocketDir made: the link is ours, but a stray one must not aim an rm.
  if (path.basename(dir).startsWith("ferry-")) rmSync(dir, { recursive: true, force: true });
  rmSync(link, { force: true });
}
