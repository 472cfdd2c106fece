// Who may keep a vm's console open. The portal checks this when it issues a console token; the
// console gateway checks it again for every open console whenever access is taken away, so the
// rule lives here, once: a member (or above) of the vm's organization, a cluster admin, or the
// student holding the vm's seat in a lab class that has not ended (students are not members);
// and when the console was opened with an API token or from a portal session, that token or
// session must still be valid.
import type { ConsoleToken } from "./console-token.ts";

/** The claims of a console token the rule is checked for. */
export type ConsoleGrant = Pick<ConsoleToken, "vmId" | "userId" | "apiTokenId" | "sessionId">;

/** What the database says now about each thing a console's grant names. */
export interface ConsoleAccessFacts {
  /** the vm's project and its organization; null when the vm no longer exists */
  vm: { projectId: string; organizationId: string } | null;
  /** the person's cluster role ("admin" | "member"); null when their account was deleted */
  user: { role: string } | null;
  /** the person's role in the vm's organization; null when they are not a member */
  membershipRole: string | null;
  /** the grant's API token; null when it was deleted (ignored when the grant has none) */
  apiToken: { projectId: string; scopes: readonly string[]; revokedAt: Date | null; expiresAt: Date | null } | null;
  /** the grant's portal session; null when it was signed out (ignored when the grant has none) */
  session: { expiresAt: Date } | null;
  /** the lab seat the vm is the clone of: who holds it and its class's status; null for any other vm, or once the seat is removed */
  labSeat: { holderId: string | null; classStatus: string } | null;
}

const roleRank: Record<string, number> = { viewer: 0, member: 1, admin: 2, owner: 3 };
/** The least organization role that may use a console, and the scope an API token needs for it. */
const consoleRole = "member";
const consoleScope = "console";

/**
 * Why the grant no longer allows the console, in words for the person whose console closes;
 * null while it still does. A cluster admin (in the browser, or with a cluster:admin token) may
 * open any vm's console, as in the portal.
 */
export function consoleAccessRefusal(grant: ConsoleGrant, facts: ConsoleAccessFacts, now: Date): string | null {
  if (facts.vm === null) return "the vm no longer exists";
  if (facts.user === null) return "your account was deleted";
  const token = grant.apiTokenId === undefined ? undefined : facts.apiToken;
  if (token === null) return "the API token it was opened with was deleted";
  if (token?.revokedAt) return "the API token it was opened with was revoked";
  if (token?.expiresAt && token.expiresAt <= now) return `the API token it was opened with expired at ${token.expiresAt.toISOString()}`;
  if (grant.sessionId !== undefined) {
    if (facts.session === null) return "the portal session it was opened from was signed out";
    if (facts.session.expiresAt <= now) return `the portal session it was opened from expired at ${facts.session.expiresAt.toISOString()}`;
  }
  if (facts.labSeat !== null && facts.labSeat.holderId === grant.userId) {
    return facts.labSeat.classStatus === "ended" ? "the lab class ended; your vm was suspended and resumes where it was next time" : null;
  }
  const operator = facts.user.role === "admin" && (token === undefined || token.scopes.includes("cluster:admin"));
  if (operator) return null;
  if (token !== undefined) {
    if (token.projectId !== facts.vm.projectId) return "the API token it was opened with belongs to another project";
    if (!token.scopes.includes(consoleScope)) return `the API token it was opened with lacks the "${consoleScope}" scope`;
  }
  if (facts.membershipRole === null) return "you are no longer a member of the vm's organization";
  if ((roleRank[facts.membershipRole] ?? -1) < roleRank[consoleRole]!) {
    return `your role in the vm's organization is now ${facts.membershipRole}; a console takes ${consoleRole} or above`;
  }
  return null;
}
