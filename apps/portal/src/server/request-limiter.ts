// The REST API's per-token request limit, counted in Redis so every portal process shares it.
// One Redis script a request cost about a tenth of a vm list's CPU (bench/api: the portal's
// JS for it and Redis's own); the requests of a token that arrive together share one.
import { RateLimiterRes } from "rate-limiter-flexible";

/** The part of rate-limiter-flexible's limiters a `RequestLimiter` uses: take `points` from `key`'s count for the current window. */
export interface PointStore {
  readonly points: number;
  consume(key: string, points: number): Promise<RateLimiterRes>;
}

interface Waiting {
  resolve(allowed: RateLimiterRes): void;
  reject(refusal: unknown): void;
}

/**
 * Requests counted against `store`'s limit per key. Every request made in one turn of the
 * event loop (the requests read from the sockets in one poll) is counted with one call per
 * key, taking as many points as there are requests; which of them pass is decided from the
 * count the call returns, in the order they came: the same answers as one call each.
 */
export class RequestLimiter {
  readonly #waiting = new Map<string, Waiting[]>();

  constructor(private readonly store: PointStore) {}

  /** Resolves when the request may go ahead; rejects with a RateLimiterRes when the key has used up its points, or with the store's error. */
  consume(key: string): Promise<RateLimiterRes> {
    return new Promise((resolve, reject) => {
      if (this.#waiting.size === 0) setImmediate(() => this.#count());
      const waiting = this.#waiting.get(key);
      if (waiting === undefined) this.#waiting.set(key, [{ resolve, reject }]);
      else waiting.push({ resolve, reject });
    });
  }

  #count(): void {
    const turn = [...this.#waiting];
    this.#waiting.clear();
    for (const [key, waiting] of turn) {
      const decide = (counted: RateLimiterRes) => {
        // The count before this turn's requests, then one point each in order.
        const before = counted.consumedPoints - waiting.length;
        waiting.forEach((request, index) => {
          const consumedPoints = before + index + 1;
          const answer = new RateLimiterRes(Math.max(0, this.store.points - consumedPoints), counted.msBeforeNext, consumedPoints, counted.isFirstInDuration && index === 0);
          if (consumedPoints <= this.store.points) request.resolve(answer);
          else request.reject(answer);
        });
      };
      this.store.consume(key, waiting.length).then(decide, (refusal: unknown) => {
        if (refusal instanceof RateLimiterRes) decide(refusal);
        else for (const request of waiting) request.reject(refusal);
      });
    }
  }
}
