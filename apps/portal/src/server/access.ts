// Who may do what. Organizations hold projects; a person has one role per organization; an
// API token acts within one project, limited both by its scopes and by its user's role.
// Every procedure asks here before it reads or changes a project's things. What a viewer may
// not see is reported as missing (404), so ids cannot be probed across tenants; what they may
// see but not change is refused (403).
import type { Db, Project } from "@ferry/db";
import { PortalError } from "./errors.ts";

export const orgRoles = ["owner", "admin", "member", "viewer"] as const;
export type OrgRole = (typeof orgRoles)[number];

export const tokenScopes = ["vms:read", "vms:write", "console", "project:admin", "cluster:admin"] as const;
export type TokenScope = (typeof tokenScopes)[number];

/** What a request wants to do with a project's things. */
export type Need = "read" | "write" | "console" | "manage";

/** The least role, and the token scope, each need takes. */
const needs: Record<Need, { role: OrgRole; scope: TokenScope; say: string }> = {
  read: { role: "viewer", scope: "vms:read", say: "see" },
  write: { role: "member", scope: "vms:write", say: "change" },
  console: { role: "member", scope: "console", say: "open the console of" },
  manage: { role: "admin", scope: "project:admin", say: "manage" },
};

const rank: Record<OrgRole, number> = { viewer: 0, member: 1, admin: 2, owner: 3 };

export function roleAtLeast(role: OrgRole, least: OrgRole): boolean {
  return rank[role] >= rank[least];
}

export function isOrgRole(value: string): value is OrgRole {
  return (orgRoles as readonly string[]).includes(value);
}

/** The scopes a role may give its tokens: never more than the role itself may do. */
export function scopesAllowed(role: OrgRole, clusterAdmin: boolean): TokenScope[] {
  const allowed = (Object.values(needs) as { role: OrgRole; scope: TokenScope }[]).filter((need) => roleAtLeast(role, need.role)).map((need) => need.scope);
  return clusterAdmin ? [...allowed, "cluster:admin"] : allowed;
}

/** The person (or their program) a request acts for. */
export interface Viewer {
  id: string;
  email: string;
  name: string;
  /** the person's role in the cluster: an admin operates workers and sees every project */
  role: "admin" | "member";
  /** the API token the request carried, if any: it confines the request to one project */
  token: { id: string; projectId: string; scopes: TokenScope[] } | null;
  /** the portal session, when signed in through the browser */
  sessionId: string | null;
}

/** A cluster operator: an admin in the browser, or an admin's token with the cluster:admin scope. */
export function isOperator(viewer: Viewer): boolean {
  return viewer.role === "admin" && (viewer.token === null || viewer.token.scopes.includes("cluster:admin"));
}

export function requireOperator(viewer: Viewer, what: string): void {
  if (!isOperator(viewer)) {
    throw new PortalError(
      "forbidden",
      viewer.role === "admin"
        ? `${what} takes a token with the cluster:admin scope; create one on the tokens page`
        : `only a cluster admin may ${what}; ${viewer.email} is not one. Ask a cluster admin.`,
    );
  }
}

/** Prisma filter: the projects a viewer can see at all. */
export function visibleProjects(viewer: Viewer): { id?: string; organization?: { memberships: { some: { userId: string } } } } {
  if (viewer.token !== null) {
    return isOperator(viewer) ? {} : { id: viewer.token.projectId, organization: { memberships: { some: { userId: viewer.id } } } };
  }
  return isOperator(viewer) ? {} : { organization: { memberships: { some: { userId: viewer.id } } } };
}

/**
 * The ids of the projects a viewer can see, or null for all of them (an operator). Read first
 * so that lists filter on the indexed `projectId` column: a relation filter in the list query
 * itself cost the vm list about three times as much (bench/api).
 */
export async function visibleProjectIds(db: Db, viewer: Viewer): Promise<string[] | null> {
  if (isOperator(viewer)) return null;
  const rows = await db.project.findMany({ where: visibleProjects(viewer), select: { id: true } });
  return rows.map((row) => row.id);
}

/** The viewer's role in an organization, or null when they are not a member. */
export async function roleIn(db: Db, viewer: Viewer, organizationId: string): Promise<OrgRole | null> {
  if (isOperator(viewer)) return "owner";
  const membership = await db.membership.findUnique({ where: { organizationId_userId: { organizationId, userId: viewer.id } }, select: { role: true } });
  return actingRole(viewer, membership?.role ?? null);
}

/** The role a viewer acts with, given their membership's role (null: not a member): an operator acts as owner everywhere. */
function actingRole(viewer: Viewer, membershipRole: string | null): OrgRole | null {
  if (isOperator(viewer)) return "owner";
  return membershipRole !== null && isOrgRole(membershipRole) ? membershipRole : null;
}

/**
 * Check that the viewer may do `need` in the project: refused as `notFound` when they cannot
 * see it at all (another tenant's, or outside their token's project), as forbidden when their
 * role or token scopes fall short.
 */
export async function authorize(db: Db, viewer: Viewer, project: Pick<Project, "id" | "organizationId">, need: Need, notFound: () => PortalError): Promise<OrgRole> {
  if (viewer.token !== null && !isOperator(viewer) && viewer.token.projectId !== project.id) throw notFound();
  return permitted(viewer, await roleIn(db, viewer, project.organizationId), need, notFound);
}

/**
 * `authorize` when the viewer's membership in the project's organization was read along with
 * the thing asked for (`membershipRole`, null when they are not a member): no query of its own.
 */
export function authorizeWithMembership(viewer: Viewer, project: Pick<Project, "id">, membershipRole: string | null, need: Need, notFound: () => PortalError): OrgRole {
  if (viewer.token !== null && !isOperator(viewer) && viewer.token.projectId !== project.id) throw notFound();
  return permitted(viewer, actingRole(viewer, membershipRole), need, notFound);
}

function permitted(viewer: Viewer, role: OrgRole | null, need: Need, notFound: () => PortalError): OrgRole {
  if (role === null) throw notFound();
  const wanted = needs[need];
  if (!roleAtLeast(role, wanted.role)) {
    throw new PortalError("forbidden", `your role in this organization is ${role}; to ${wanted.say} its vms you need ${wanted.role} or above. Ask an owner or admin.`, {
      role,
      needed: wanted.role,
    });
  }
  if (viewer.token !== null && !viewer.token.scopes.includes(wanted.scope) && !isOperator(viewer)) {
    throw new PortalError("forbidden", `this API token lacks the "${wanted.scope}" scope; create a token with it`, { scope: wanted.scope, scopes: viewer.token.scopes });
  }
  return role;
}

/** The project with this id if the viewer may do `need` in it. */
export async function findProject(db: Db, viewer: Viewer, id: string, need: Need): Promise<Project & { role: OrgRole }> {
  const notFound = () => new PortalError("not_found", `no project with id "${id}" is visible to you; list yours with GET /api/v1/projects`, { id });
  const project = await db.project.findUnique({ where: { id } });
  if (project === null) throw notFound();
  const role = await authorize(db, viewer, project, need, notFound);
  return { ...project, role };
}
