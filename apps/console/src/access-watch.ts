// Taking access away closes open consoles within seconds. A console is authorised once, when
// its single-use token is redeemed; afterwards the person may lose the right to it (their API
// token revoked or expired, their membership removed or lowered, their portal session signed
// out, their lab seat removed or its class ended). The portal announces revocations on Redis
// and we re-check the affected consoles at once; every few seconds we also re-check all of
// them in one round of queries, which catches expiries and any announcement that was lost.
import type { Db } from "@ferry/db";
import { type AccessRevokedMessage, accessRevokedMessage, redisKeys } from "@ferry/jobs";
import { type ConsoleAccessFacts, type ConsoleGrant, consoleAccessRefusal } from "@ferry/tokens";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

/** The websocket close code of a console whose access was taken away (4000-4999: ours to define). */
export const accessRevokedCloseCode = 4403;

/** An open console as the watch sees it. */
export interface WatchedConsole {
  readonly vmId: string;
  readonly tokenId: string;
  end(reason: string, code?: number): void;
}

export interface ConsoleAccessWatchOptions<Session extends WatchedConsole> {
  db: Db;
  redis: Redis;
  /** FERRY_QUEUE_PREFIX: namespace of the revocation channel. */
  prefix: string;
  /** The gateway's open consoles; the watch checks those it was told the grant of. */
  sessions: ReadonlySet<Session>;
  log: Logger;
  /** How often every open console is re-checked. */
  intervalMs?: number;
}

export interface ConsoleAccessWatch<Session extends WatchedConsole> {
  /** Watch a console just opened with `grant`; it is checked at once (the token may be up to a minute old). */
  add(session: Session, grant: ConsoleGrant): void;
  /** Stop listening and re-checking; resolves once running checks are done. */
  close(): Promise<void>;
}

/** Close each console whose grant no longer holds, on a revocation message or at the periodic check. */
export function watchConsoleAccess<Session extends WatchedConsole>(options: ConsoleAccessWatchOptions<Session>): ConsoleAccessWatch<Session> {
  const { db, log } = options;
  const intervalMs = options.intervalMs ?? 5000;
  const grants = new WeakMap<Session, ConsoleGrant>();
  const running = new Set<Promise<void>>();
  let closed = false;

  function watched(matches: (grant: ConsoleGrant) => boolean): [Session, ConsoleGrant][] {
    const found: [Session, ConsoleGrant][] = [];
    for (const session of options.sessions) {
      const grant = grants.get(session);
      if (grant && matches(grant)) found.push([session, grant]);
    }
    return found;
  }

  function check(consoles: [Session, ConsoleGrant][], why: string): Promise<void> {
    if (closed || consoles.length === 0) return Promise.resolve();
    const done: Promise<void> = recheck(consoles).catch((error: unknown) =>
      log.warn({ err: String(error), consoles: consoles.length, why }, `console: could not re-check console access; the next check is in ${intervalMs} ms`),
    );
    running.add(done);
    void done.finally(() => running.delete(done));
    return done;
  }

  async function recheck(consoles: [Session, ConsoleGrant][]): Promise<void> {
    const facts = await readFacts(db, consoles.map(([, grant]) => grant));
    const now = new Date();
    for (const [session, grant] of consoles) {
      const refusal = consoleAccessRefusal(grant, facts(grant), now);
      if (refusal === null || !options.sessions.has(session)) continue;
      log.warn({ vmId: session.vmId, tokenId: session.tokenId, userId: grant.userId, apiTokenId: grant.apiTokenId, sessionId: grant.sessionId, refusal }, "console: access revoked, closing the console");
      session.end(`access revoked: ${refusal}`, accessRevokedCloseCode);
    }
  }

  // The announcement names a token, a person, or a person in one organization; which vms are in
  // that organization only the database knows, so the person's consoles are all re-checked.
  const subscriber = options.redis.duplicate();
  subscriber.on("error", (error) => log.warn({ err: error.message }, "console: access-revoked subscription error"));
  subscriber.on("message", (_channel, text: string) => {
    let message: AccessRevokedMessage;
    try {
      message = accessRevokedMessage.parse(JSON.parse(text));
    } catch {
      log.warn({ text }, "console: unreadable access-revoked message ignored");
      return;
    }
    const affected = watched(
      (grant) =>
        (message.apiTokenId !== undefined && grant.apiTokenId === message.apiTokenId) ||
        (message.userId !== undefined && grant.userId === message.userId) ||
        (message.apiTokenId === undefined && message.userId === undefined),
    );
    void check(affected, "revocation announced");
  });
  const subscribed = subscriber.subscribe(redisKeys.accessRevoked(options.prefix)).catch((error: unknown) => {
    log.warn({ err: String(error) }, `console: cannot subscribe to access-revoked messages; revocations are found by the check every ${intervalMs} ms`);
  });

  // A check still running when the next is due is not doubled: a slow database must not pile them up.
  let periodic: Promise<void> | undefined;
  const timer = setInterval(() => {
    periodic ??= check(watched(() => true), "periodic").finally(() => (periodic = undefined));
  }, intervalMs);
  timer.unref();

  return {
    add(session, grant) {
      grants.set(session, grant);
      void check([[session, grant]], "console opened");
    },
    async close() {
      closed = true;
      clearInterval(timer);
      await subscribed;
      subscriber.disconnect();
      await Promise.allSettled(running);
    },
  };
}

/** One round of queries for every grant's vm, person, memberships, API token and portal session. */
async function readFacts(db: Db, grants: ConsoleGrant[]): Promise<(grant: ConsoleGrant) => ConsoleAccessFacts> {
  const ids = (pick: (grant: ConsoleGrant) => string | undefined) => [...new Set(grants.map(pick).filter((id) => id !== undefined))];
  const tokenIds = ids((grant) => grant.apiTokenId);
  const sessionIds = ids((grant) => grant.sessionId);
  const vmIds = ids((grant) => grant.vmId);
  const [vms, users, tokens, sessions, seats] = await Promise.all([
    db.vm.findMany({ where: { id: { in: vmIds } }, select: { id: true, projectId: true, project: { select: { organizationId: true } } } }),
    db.user.findMany({
      where: { id: { in: ids((grant) => grant.userId) } },
      select: { id: true, role: true, memberships: { select: { organizationId: true, role: true } } },
    }),
    tokenIds.length === 0
      ? []
      : db.apiToken.findMany({ where: { id: { in: tokenIds } }, select: { id: true, projectId: true, scopes: true, revokedAt: true, expiresAt: true } }),
    sessionIds.length === 0 ? [] : db.session.findMany({ where: { id: { in: sessionIds } }, select: { id: true, expiresAt: true } }),
    db.labSeat.findMany({ where: { vmId: { in: vmIds } }, select: { vmId: true, userId: true, class: { select: { status: true } } } }),
  ]);
  const vmById = new Map(vms.map((vm) => [vm.id, { projectId: vm.projectId, organizationId: vm.project.organizationId }]));
  const userById = new Map(users.map((user) => [user.id, user]));
  const tokenById = new Map(tokens.map((token) => [token.id, token]));
  const sessionById = new Map(sessions.map((session) => [session.id, session]));
  const seatByVm = new Map(seats.map((seat) => [seat.vmId, { holderId: seat.userId, classStatus: seat.class.status }]));
  return (grant) => {
    const vm = vmById.get(grant.vmId) ?? null;
    const user = userById.get(grant.userId) ?? null;
    return {
      vm,
      user,
      membershipRole: user?.memberships.find((membership) => membership.organizationId === vm?.organizationId)?.role ?? null,
      apiToken: grant.apiTokenId === undefined ? null : (tokenById.get(grant.apiTokenId) ?? null),
      session: grant.sessionId === undefined ? null : (sessionById.get(grant.sessionId) ?? null),
      labSeat: seatByVm.get(grant.vmId) ?? null,
    };
  };
}
