// Who an API token acts for, remembered for a second: resolving it on every request cost a
// query with a join (about a third of a vm list's time in bench/api). Taking access away
// forgets at once: this process's revocations directly, other portal processes' through the
// access-revoked announcement; a lost announcement is covered by the one-second lifetime.
import { type AccessRevokedMessage, accessRevokedMessage, redisKeys } from "@ferry/jobs";
import type { Redis } from "ioredis";
import type { Logger } from "pino";
import type { Viewer } from "./access.ts";

/** How long a resolved token is trusted without reading it again. */
export const tokenViewerLifetimeMs = 1000;

interface Remembered {
  viewer: Viewer;
  expiresAt: Date | null;
  until: number;
}

/** Resolved API tokens by their hash, forgotten after `tokenViewerLifetimeMs` or when access is revoked. */
export class TokenViewers {
  readonly #byHash = new Map<string, Remembered>();
  /** Bumped by every revocation, so a lookup that raced one is not remembered. */
  #revocations = 0;

  constructor(private readonly lifetimeMs = tokenViewerLifetimeMs) {}

  /** The viewer of a token resolved less than a second ago and still unexpired, else undefined. */
  recall(tokenHash: string, now: Date): Viewer | undefined {
    const remembered = this.#byHash.get(tokenHash);
    if (remembered === undefined) return undefined;
    if (remembered.until <= now.getTime() || (remembered.expiresAt !== null && remembered.expiresAt <= now)) {
      this.#byHash.delete(tokenHash);
      return undefined;
    }
    return remembered.viewer;
  }

  /** A mark to pass to `remember`: taken before the token is read. */
  mark(): number {
    return this.#revocations;
  }

  /** Remember a token read since `mark`, unless access was revoked in between (the row read may predate it). */
  remember(tokenHash: string, viewer: Viewer, expiresAt: Date | null, mark: number, now: Date): void {
    if (mark !== this.#revocations) return;
    this.#byHash.set(tokenHash, { viewer, expiresAt, until: now.getTime() + this.lifetimeMs });
    // Entries are dropped as they are recalled; sweep the ones nobody asks for again.
    if (this.#byHash.size > 10_000) {
      for (const [hash, old] of this.#byHash) if (old.until <= now.getTime()) this.#byHash.delete(hash);
    }
  }

  /** Forget what an announcement takes away: the token, or every token of the person. */
  forget(message: AccessRevokedMessage): void {
    this.#revocations += 1;
    for (const [hash, { viewer }] of this.#byHash) {
      const named = message.apiTokenId !== undefined && viewer.token?.id === message.apiTokenId;
      const person = message.userId !== undefined && viewer.id === message.userId;
      const everyone = message.apiTokenId === undefined && message.userId === undefined;
      if (named || person || everyone) this.#byHash.delete(hash);
    }
  }
}

/** Forget tokens as other portal processes announce revocations; returns the subscription's connection to close. */
export function followRevocations(tokenViewers: TokenViewers, redis: Redis, prefix: string, log: Logger): Redis {
  const subscriber = redis.duplicate();
  subscriber.on("error", (error: Error) => log.warn({ err: error.message }, "access-revoked subscription error; cached API tokens expire within a second anyway"));
  subscriber.on("message", (_channel, text: string) => {
    // An unreadable announcement forgets every token: the safe reading.
    let message: AccessRevokedMessage = {};
    try {
      message = accessRevokedMessage.parse(JSON.parse(text));
    } catch {
      log.warn({ text }, "unreadable access-revoked message; forgetting every cached API token");
    }
    tokenViewers.forget(message);
  });
  subscriber.subscribe(redisKeys.accessRevoked(prefix)).catch((error: unknown) => {
    log.warn({ err: String(error) }, `cannot subscribe to access-revoked messages; API tokens revoked by another portal process take up to ${tokenViewerLifetimeMs} ms to be refused here`);
  });
  return subscriber;
}
