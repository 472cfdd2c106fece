import { randomUUID } from "node:crypto";
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { redisKeys } from "@ferry/jobs";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { SerialRelay } from "./serial-relay.ts";

const redisUrl = process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390";
const prefix = `ferry-test-${randomUUID()}`;
const dir = mkdtempSync(join(tmpdir(), "ferry-serial-"));
let redis: Redis;

async function streamText(vmId: string): Promise<string> {
  const entries = await redis.xrange(redisKeys.serialLog(prefix, vmId), "-", "+");
  return entries.map(([, fields]) => fields[1] ?? "").join("");
}

async function until(what: string, probe: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline) {
    if (await probe()) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

beforeAll(() => {
  redis = new Redis(redisUrl);
});

afterAll(async () => {
  const keys = await redis.keys(`${prefix}:*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  rmSync(dir, { recursive: true, force: true });
});

describe("SerialRelay", () => {
  it("streams what is appended after follow, including a log created later, and resumes at its offset", async () => {
    const relay = new SerialRelay({ redis, prefix, log: pino({ level: "silent" }) });
    const logFile = join(dir, "serial.log");
    await relay.follow("vm-a", logFile);
    writeFileSync(logFile, "FERRY-BOOT-OK kernel=6.1\n");
    appendFileSync(logFile, "ferry-tick 1 uptime=1\n");
    await until("two lines", async () => (await streamText("vm-a")).includes("ferry-tick 1"));
    expect(await streamText("vm-a")).toBe("FERRY-BOOT-OK kernel=6.1\nferry-tick 1 uptime=1\n");

    await relay.unfollow("vm-a");
    appendFileSync(logFile, "ferry-tick 2 uptime=2\n");
    await relay.follow("vm-a", logFile);
    await until("the line written while not followed", async () => (await streamText("vm-a")).includes("ferry-tick 2"));
    expect(await streamText("vm-a")).toBe("FERRY-BOOT-OK kernel=6.1\nferry-tick 1 uptime=1\nferry-tick 2 uptime=2\n");
    await relay.close();
  });

  it("does not resend output written before this process first followed the vm", async () => {
    const relay = new SerialRelay({ redis, prefix, log: pino({ level: "silent" }) });
    const logFile = join(dir, "old-serial.log");
    writeFileSync(logFile, "from an earlier run\n");
    await relay.follow("vm-b", logFile);
    appendFileSync(logFile, "new\n");
    await until("the new line", async () => (await streamText("vm-b")).length > 0);
    expect(await streamText("vm-b")).toBe("new\n");
    await relay.close();
  });
});
