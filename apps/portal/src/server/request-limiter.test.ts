import { RateLimiterMemory, RateLimiterRes } from "rate-limiter-flexible";
import { describe, expect, it } from "vitest";
import { type PointStore, RequestLimiter } from "./request-limiter.ts";

/** rate-limiter-flexible's in-memory limiter, with the calls made to it. */
function countedStore(points: number): PointStore & { calls: [string, number][] } {
  const memory = new RateLimiterMemory({ points, duration: 60 });
  const calls: [string, number][] = [];
  return {
    points,
    calls,
    consume(key, taken) {
      calls.push([key, taken]);
      return memory.consume(key, taken);
    },
  };
}

const outcome = (request: Promise<RateLimiterRes>) =>
  request.then(
    (allowed) => ({ allowed: true, consumedPoints: allowed.consumedPoints }),
    (refusal: unknown) => (refusal instanceof RateLimiterRes ? { allowed: false, consumedPoints: refusal.consumedPoints, msBeforeNext: refusal.msBeforeNext } : { error: refusal }),
  );

describe("RequestLimiter", () => {
  it("counts the requests of one turn with one call per key, and passes the first ones up to the limit", async () => {
    const store = countedStore(5);
    const limiter = new RequestLimiter(store);
    const answers = await Promise.all([...Array.from({ length: 7 }, () => outcome(limiter.consume("token:a"))), outcome(limiter.consume("token:b"))]);
    expect(store.calls).toEqual([
      ["token:a", 7],
      ["token:b", 1],
    ]);
    expect(answers.map((answer) => answer.allowed)).toEqual([true, true, true, true, true, false, false, true]);
    expect(answers.map((answer) => answer.consumedPoints)).toEqual([1, 2, 3, 4, 5, 6, 7, 1]);
    const refused = answers[5] as { msBeforeNext: number };
    expect(refused.msBeforeNext).toBeGreaterThan(0);
    expect(refused.msBeforeNext).toBeLessThanOrEqual(60_000);
  });

  it("counts a later turn on top of the earlier ones", async () => {
    const store = countedStore(3);
    const limiter = new RequestLimiter(store);
    expect(await Promise.all([outcome(limiter.consume("k")), outcome(limiter.consume("k"))])).toMatchObject([{ allowed: true }, { allowed: true }]);
    expect(await Promise.all([outcome(limiter.consume("k")), outcome(limiter.consume("k"))])).toMatchObject([
      { allowed: true, consumedPoints: 3 },
      { allowed: false, consumedPoints: 4 },
    ]);
    expect(store.calls).toEqual([
      ["k", 2],
      ["k", 2],
    ]);
  });

  it("hands the store's error to every request of the turn", async () => {
    const failure = new Error("Redis is unreachable");
    const limiter = new RequestLimiter({ points: 5, consume: () => Promise.reject(failure) });
    expect(await Promise.all([outcome(limiter.consume("k")), outcome(limiter.consume("k"))])).toEqual([{ error: failure }, { error: failure }]);
  });
});
