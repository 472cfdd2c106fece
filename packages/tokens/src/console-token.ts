import { randomUUID } from "node:crypto";
import { z } from "zod";
import { TokenError } from "./errors.ts";
import { checkTtl, open, sign, toEpochSeconds } from "./signed.ts";

const maxTtlSeconds = 60;

/** What a console lets its holder do: watch the screen only, or also type and point. */
export const consoleModes = ["view", "control"] as const;
export type ConsoleMode = (typeof consoleModes)[number];
const nextStep = "Open the console again from the portal to get a new token.";

const payloadSchema = z.object({
  v: z.literal(1),
  vm: z.string().min(1),
  sub: z.string().min(1),
  jti: z.string().min(1),
  exp: z.number().int(),
  /** the API token, or portal session, the console was opened with: revoking it closes the console */
  tok: z.string().min(1).optional(),
  ses: z.string().min(1).optional(),
  /** absent in tokens signed before view-only consoles existed: those are control */
  mode: z.enum(consoleModes).optional(),
});

export interface ConsoleToken {
  vmId: string;
  userId: string;
  tokenId: string;
  expiresAt: Date;
  /** the API token the console was opened with, if any */
  apiTokenId?: string;
  /** the portal session the console was opened from, if any */
  sessionId?: string;
  /** "view": the gateway forwards the screen but drops the holder's keys, pointer and clipboard */
  mode: ConsoleMode;
}

/** Issue a short-lived token that lets `userId` open the console of `vmId` once. */
export function signConsoleToken(options: {
  vmId: string;
  userId: string;
  apiTokenId?: string | undefined;
  sessionId?: string | undefined;
  /** default "control" */
  mode?: ConsoleMode;
  secret: string;
  ttlSeconds?: number;
  now?: Date;
}): { token: string; tokenId: string; expiresAt: Date } {
  const ttlSeconds = options.ttlSeconds ?? maxTtlSeconds;
  checkTtl(ttlSeconds, maxTtlSeconds, "console token");
  const tokenId = randomUUID();
  const exp = toEpochSeconds(options.now ?? new Date()) + ttlSeconds;
  const token = sign(
    "console-token",
    {
      v: 1,
      vm: options.vmId,
      sub: options.userId,
      jti: tokenId,
      exp,
      ...(options.apiTokenId ? { tok: options.apiTokenId } : {}),
      ...(options.sessionId ? { ses: options.sessionId } : {}),
      ...(options.mode === "view" ? { mode: "view" } : {}),
    },
    options.secret,
  );
  return { token, tokenId, expiresAt: new Date(exp * 1000) };
}

/** Check a console token's signature and expiry; throws `TokenError` when it must be refused. */
export function verifyConsoleToken(token: string, options: { secret: string; now?: Date }): ConsoleToken {
  const payload = open("console-token", token, options.secret, payloadSchema, nextStep);
  const expiresAt = new Date(payload.exp * 1000);
  const now = options.now ?? new Date();
  if (now.getTime() >= expiresAt.getTime()) {
    throw new TokenError(
      "expired",
      `The console token expired at ${expiresAt.toISOString()} (now ${now.toISOString()}). ${nextStep}`,
    );
  }
  return {
    vmId: payload.vm,
    userId: payload.sub,
    tokenId: payload.jti,
    expiresAt,
    ...(payload.tok ? { apiTokenId: payload.tok } : {}),
    ...(payload.ses ? { sessionId: payload.ses } : {}),
    mode: payload.mode ?? "control",
  };
}
