// A lab student link: what a learning-management system hands a student to open their seat's
// console without signing in. Short-lived, and single use: the portal records its id in Redis
// when it is opened.
import { randomUUID } from "node:crypto";
import { z } from "zod";
import { TokenError } from "./errors.ts";
import { checkTtl, open, sign, toEpochSeconds } from "./signed.ts";

const maxTtlSeconds = 300;
const nextStep = "Ask for a new link (POST /api/v1/classes/{id}/seats/{seatId}/link).";

const payloadSchema = z.object({
  v: z.literal(1),
  seat: z.string().min(1),
  jti: z.string().min(1),
  exp: z.number().int(),
});

export interface LabLink {
  seatId: string;
  linkId: string;
  expiresAt: Date;
}

/** Issue a link token that opens `seatId`'s console once, within `ttlSeconds` (at most 5 minutes). */
export function signLabLink(options: { seatId: string; secret: string; ttlSeconds?: number; now?: Date }): { token: string; linkId: string; expiresAt: Date } {
  const ttlSeconds = options.ttlSeconds ?? maxTtlSeconds;
  checkTtl(ttlSeconds, maxTtlSeconds, "lab link");
  const linkId = randomUUID();
  const exp = toEpochSeconds(options.now ?? new Date()) + ttlSeconds;
  return { token: sign("lab-link", { v: 1, seat: options.seatId, jti: linkId, exp }, options.secret), linkId, expiresAt: new Date(exp * 1000) };
}

/** Check a lab link's signature and expiry; throws `TokenError` when it must be refused. */
export function verifyLabLink(token: string, options: { secret: string; now?: Date }): LabLink {
  const payload = open("lab-link", token, options.secret, payloadSchema, nextStep);
  const expiresAt = new Date(payload.exp * 1000);
  const now = options.now ?? new Date();
  if (now.getTime() >= expiresAt.getTime()) {
    throw new TokenError("expired", `The lab link expired at ${expiresAt.toISOString()} (now ${now.toISOString()}). ${nextStep}`);
  }
  return { seatId: payload.seat, linkId: payload.jti, expiresAt };
}
