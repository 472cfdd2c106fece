// Password guessing is limited per account, not per address: better-auth's own rule (3 sign-ins
// per 10 s per client address) falls back to one bucket for everybody when the portal sees no
// client address header, which refused a classroom of students signing in together. Counted
// in Redis so every portal process shares the count.
import { RateLimiterRedis, RateLimiterRes } from "rate-limiter-flexible";
import type { Redis } from "ioredis";
import type { PortalServices } from "./services.ts";

/** Sign-in attempts one email address may make per minute. */
export const signInAttemptsPerMinute = 10;

export function createSignInLimiter(redis: Redis, keyPrefix: string): RateLimiterRedis {
  return new RateLimiterRedis({ storeClient: redis, useRedisPackage: false, keyPrefix: `${keyPrefix}:sign-in`, points: signInAttemptsPerMinute, duration: 60 });
}

/**
 * The 429 answer when an email sign-in request's account has used up its attempts for the
 * current minute; null to let better-auth handle it (including a body it will refuse itself).
 */
async function signInLimited(request: Request, limiter: RateLimiterRedis): Promise<Response | null> {
  if (request.method !== "POST" || !new URL(request.url).pathname.endsWith("/sign-in/email")) return null;
  const body = (await request
    .clone()
    .json()
    .catch(() => null)) as { email?: unknown } | null;
  if (typeof body?.email !== "string") return null;
  const email = body.email.trim().toLowerCase();
  try {
    await limiter.consume(`email:${email}`);
    return null;
  } catch (rejection) {
    if (!(rejection instanceof RateLimiterRes)) throw rejection;
    const retryAfter = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
    return Response.json(
      { code: "TOO_MANY_REQUESTS", message: `Too many sign-in attempts for ${email}: ${signInAttemptsPerMinute} a minute are allowed. Try again in ${retryAfter} s.` },
      { status: 429, headers: { "Retry-After": String(retryAfter) } },
    );
  }
}

/** A request to better-auth's routes (/api/auth/*), email sign-ins limited per account first. */
export async function handleAuthRequest(request: Request, services: Pick<PortalServices, "auth" | "signInLimiter">): Promise<Response> {
  return (await signInLimited(request, services.signInLimiter)) ?? services.auth.handler(request);
}
