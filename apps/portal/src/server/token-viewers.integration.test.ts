// Another portal process's revocation reaches this one's remembered API tokens through Redis.
import { randomUUID } from "node:crypto";
import { redisKeys } from "@ferry/jobs";
import { Redis } from "ioredis";
import { pino } from "pino";
import { afterAll, expect, it } from "vitest";
import { followRevocations, TokenViewers } from "./token-viewers.ts";

const redis = new Redis(process.env.FERRY_TEST_REDIS_URL ?? "redis://127.0.0.1:6390");
afterAll(() => redis.disconnect());

it("forgets a token when another process announces its revocation", async () => {
  const prefix = `test-token-viewers-${randomUUID()}`;
  // A lifetime far beyond the test: only the announcement can make the token forgotten.
  const cache = new TokenViewers(600_000);
  const subscription = followRevocations(cache, redis, prefix, pino({ level: "silent" }));
  try {
    const now = new Date();
    cache.remember("hash-a1", { id: "alice", email: "alice@ferry.test", name: "alice", role: "member", token: { id: "a1", projectId: "p1", scopes: ["vms:read"] }, sessionId: null }, null, cache.mark(), now);
    cache.remember("hash-b1", { id: "bob", email: "bob@ferry.test", name: "bob", role: "member", token: { id: "b1", projectId: "p1", scopes: ["vms:read"] }, sessionId: null }, null, cache.mark(), now);
    const deadline = Date.now() + 10_000;
    while (cache.recall("hash-a1", new Date()) !== undefined && Date.now() < deadline) {
      await redis.publish(redisKeys.accessRevoked(prefix), JSON.stringify({ apiTokenId: "a1" }));
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(cache.recall("hash-a1", new Date())).toBeUndefined();
    expect(cache.recall("hash-b1", new Date())?.id).toBe("bob");
  } finally {
    subscription.disconnect();
  }
});
