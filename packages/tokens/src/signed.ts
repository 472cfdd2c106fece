// The wire format shared by console tokens and relay tickets:
// `<base64url(JSON payload)>.<base64url(HMAC-SHA256)>`. The HMAC covers a purpose label
// and the encoded payload, so a relay ticket can never be replayed as a console token (or
// the other way round) even though both are signed with the cluster secret.
import { createHmac, timingSafeEqual } from "node:crypto";
import type { z } from "zod";
import { TokenError } from "./errors.ts";

export type Purpose = "console-token" | "relay-ticket" | "lab-link";

const minSecretLength = 32;
const base64url = /^[A-Za-z0-9_-]+$/;
const hmacBytes = 32;

const labels: Record<Purpose, string> = {
  "console-token": "console token",
  "relay-ticket": "relay ticket",
  "lab-link": "lab link",
};

function mac(purpose: Purpose, encodedPayload: string, secret: string): Buffer {
  if (secret.length < minSecretLength) {
    throw new RangeError(
      `The cluster secret is ${secret.length} characters long; it must have at least ${minSecretLength}. Set FERRY_CLUSTER_SECRET to a longer random value.`,
    );
  }
  return createHmac("sha256", secret).update(`ferry.${purpose}.v1.`).update(encodedPayload).digest();
}

export function sign(purpose: Purpose, payload: object, secret: string): string {
  const encoded = Buffer.from(JSON.stringify(payload)).toString("base64url");
  return `${encoded}.${mac(purpose, encoded, secret).toString("base64url")}`;
}

/** Checks shape and signature, then returns the parsed payload; expiry is the caller's. */
export function open<T>(
  purpose: Purpose,
  token: string,
  secret: string,
  schema: z.ZodType<T>,
  nextStep: string,
): T {
  const label = labels[purpose];
  const parts = token.split(".");
  const [encoded, signature] = parts;
  if (parts.length !== 2 || !encoded || !signature || !base64url.test(encoded) || !base64url.test(signature)) {
    throw new TokenError(
      "malformed",
      `The ${label} is malformed: expected two base64url parts joined by "." (got ${parts.length} part(s), ${token.length} characters). ${nextStep}`,
    );
  }
  const given = Buffer.from(signature, "base64url");
  const expected = mac(purpose, encoded, secret);
  if (given.length !== hmacBytes) {
    throw new TokenError(
      "malformed",
      `The ${label} signature is ${given.length} bytes long, not ${hmacBytes}. ${nextStep}`,
    );
  }
  if (!timingSafeEqual(new Uint8Array(given), new Uint8Array(expected))) {
    throw new TokenError(
      "bad_signature",
      `The ${label} signature does not match: it was altered or signed with another cluster secret. ${nextStep}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(encoded, "base64url").toString("utf8"));
  } catch {
    json = undefined;
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    throw new TokenError(
      "malformed",
      `The ${label} payload is not a version 1 ${label}. ${nextStep}`,
    );
  }
  return parsed.data;
}

export function checkTtl(ttlSeconds: number, maxSeconds: number, label: string): void {
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0 || ttlSeconds > maxSeconds) {
    throw new RangeError(
      `A ${label} lives 1 to ${maxSeconds} seconds; got ttlSeconds=${ttlSeconds}. Pass a whole number in that range.`,
    );
  }
}

/** Expiry is whole seconds since the epoch, like JWT's `exp`. */
export function toEpochSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}
