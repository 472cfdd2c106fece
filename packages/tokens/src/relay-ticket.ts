import { z } from "zod";
import { TokenError } from "./errors.ts";
import { checkTtl, open, sign, toEpochSeconds } from "./signed.ts";

const maxTtlSeconds = 30;
const nextStep = "The console gateway must sign a new ticket for this worker.";

const payloadSchema = z.object({
  v: z.literal(1),
  vm: z.string().min(1),
  wkr: z.string().min(1),
  exp: z.number().int(),
});

/** Issue the first line the console gateway sends to a worker's VNC relay. */
export function signRelayTicket(options: {
  vmId: string;
  workerId: string;
  secret: string;
  ttlSeconds?: number;
  now?: Date;
}): string {
  const ttlSeconds = options.ttlSeconds ?? maxTtlSeconds;
  checkTtl(ttlSeconds, maxTtlSeconds, "relay ticket");
  const exp = toEpochSeconds(options.now ?? new Date()) + ttlSeconds;
  return sign("relay-ticket", { v: 1, vm: options.vmId, wkr: options.workerId, exp }, options.secret);
}

/** Check a relay ticket on the worker `workerId`; throws `TokenError` when it must be refused. */
export function verifyRelayTicket(
  ticket: string,
  options: { secret: string; workerId: string; now?: Date },
): { vmId: string } {
  const payload = open("relay-ticket", ticket, options.secret, payloadSchema, nextStep);
  if (payload.wkr !== options.workerId) {
    throw new TokenError(
      "wrong_worker",
      `The relay ticket is for worker ${payload.wkr}, but this is worker ${options.workerId}. ${nextStep}`,
    );
  }
  const expiresAt = new Date(payload.exp * 1000);
  const now = options.now ?? new Date();
  if (now.getTime() >= expiresAt.getTime()) {
    throw new TokenError(
      "expired",
      `The relay ticket expired at ${expiresAt.toISOString()} (now ${now.toISOString()}). ${nextStep}`,
    );
  }
  return { vmId: payload.vm };
}
