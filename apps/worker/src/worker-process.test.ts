import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { EngineError } from "@ferry/engine";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { startWorker } from "./worker-process.ts";

describe("startWorker", () => {
  it("refuses a state folder too long for a vm's VNC socket before it creates anything", async () => {
    const stateDir = path.join(tmpdir(), `ferry-worker-${"s".repeat(60)}`);
    const started = startWorker({
      workerId: "w-long",
      stateDir,
      databaseUrl: "postgresql://nobody@127.0.0.1:1/none",
      redisUrl: "redis://127.0.0.1:1",
      prefix: "never",
      clusterSecret: "s".repeat(32),
      vcpus: 1,
      memoryMiB: 512,
      consoleHost: "127.0.0.1",
      consolePort: 0,
      imagesDir: "/nonexistent",
      qemuBinary: "qemu-system-x86_64",
      accelerator: "tcg",
      storage: { driver: "folder", path: path.join(tmpdir(), "never") },
      clusterId: "c",
      guestStatesKeep: 1,
      guestStateSweepMs: 60_000,
      guestStateOrphanAgeMs: 60_000,
      workerTimeoutMs: 10_000,
      log: pino({ level: "silent" }),
    });
    const error = await started.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EngineError);
    expect((error as EngineError).code).toBe("socket_path_too_long");
    expect((error as EngineError).message).toContain(`a vm's VNC socket under state folder ${stateDir}`);
    expect(existsSync(stateDir)).toBe(false);
  });
});
