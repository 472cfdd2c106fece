// Organizations, their members and projects, and the people who can sign in. A cluster admin
// creates people and organizations; an organization's owners and admins run its membership
// and projects; quotas are the cluster admin's to set.
import { Prisma } from "@ferry/db";
import { z } from "zod";
import { type OrgRole, findProject, isOperator, isOrgRole, orgRoles, requireOperator, roleAtLeast, roleIn, visibleProjects } from "../access.ts";
import { revokeAccess } from "../access-revocation.ts";
import { PortalError } from "../errors.ts";
import { displayName, recordId } from "../fields.ts";
import { type QuotaUsage, quotaColumns, usageOf, usagesOf } from "../quota.ts";
import { auditedProcedure, authedProcedure, createTRPCRouter, type PortalContext, type Viewer } from "../trpc.ts";

const name = displayName;
const id = recordId;
const role = z.enum(orgRoles);
const page = { limit: z.number().int().min(1).max(100).default(50), cursor: id.optional() };

const organizationView = z.object({ id: z.string(), name: z.string(), role: z.enum(orgRoles), createdAt: z.string() });
const memberView = z.object({ userId: z.string(), email: z.string(), name: z.string(), role: z.enum(orgRoles), since: z.string() });
const quotaView = z.object({ vcpus: z.number().int(), memoryMiB: z.number().int(), vms: z.number().int(), stateBytes: z.number() });
const projectView = z.object({
  id: z.string(),
  organizationId: z.string(),
  name: z.string(),
  role: z.enum(orgRoles),
  quota: quotaView,
  usage: quotaView,
  createdAt: z.string(),
});

/** The role a list shows the viewer, from their membership rows (as `roleIn` decides it: an operator is an owner everywhere). */
function listedRole(viewer: Viewer, memberships: { role: string }[]): OrgRole {
  const own = memberships[0]?.role;
  return isOperator(viewer) ? "owner" : own !== undefined && isOrgRole(own) ? own : "viewer";
}

/** The organization if the viewer is in it with at least `least`; not_found when they are not in it at all. */
async function findOrganization(ctx: PortalContext & { viewer: Viewer }, organizationId: string, least: OrgRole) {
  const { db } = ctx.services;
  const notFound = () => new PortalError("not_found", `no organization with id "${organizationId}" is visible to you; list yours with GET /api/v1/organizations`, { id: organizationId });
  const organization = await db.organization.findUnique({ where: { id: organizationId } });
  // A token is confined to its project: the organization around it is not the token's to run.
  if (organization === null || (ctx.viewer.token !== null && !isOperator(ctx.viewer))) throw notFound();
  const role = await roleIn(db, ctx.viewer, organization.id);
  if (role === null) throw notFound();
  if (!roleAtLeast(role, least)) {
    throw new PortalError("forbidden", `your role in organization ${organization.name} is ${role}; this takes ${least} or above. Ask an owner.`, { role, needed: least });
  }
  return { ...organization, role };
}

async function projectWithUsage(ctx: PortalContext, project: Prisma.ProjectGetPayload<object>, role: OrgRole, known?: QuotaUsage) {
  const usage = known ?? (await usageOf(ctx.services.db, project.id));
  return {
    id: project.id,
    organizationId: project.organizationId,
    name: project.name,
    role,
    quota: { vcpus: project.quotaVcpus, memoryMiB: project.quotaMemoryMiB, vms: project.quotaVms, stateBytes: Number(project.quotaStateBytes) },
    usage: { vcpus: usage.vcpus, memoryMiB: usage.memoryMiB, vms: usage.vms, stateBytes: Number(usage.stateBytes) },
    createdAt: project.createdAt.toISOString(),
  };
}

function isUniqueViolation(error: unknown): boolean {
  return error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002";
}

export const tenancyRouter = createTRPCRouter({
  createUser: auditedProcedure("user.create")
    .meta({ openapi: { method: "POST", path: "/users", protect: true, tags: ["tenancy"], summary: "Create a person who can sign in (cluster admin)" } })
    .input(z.strictObject({ email: z.email().max(254), name, password: z.string().min(8, { error: "must be at least 8 characters" }).max(128) }))
    .output(z.object({ id: z.string(), email: z.string(), name: z.string() }))
    .mutation(async ({ ctx, input }) => {
      requireOperator(ctx.viewer, "create people");
      const { db, auth } = ctx.services;
      const email = input.email.toLowerCase();
      if ((await db.user.findUnique({ where: { email } })) !== null) throw new PortalError("name_taken", `a person with email ${email} exists already`, { email });
      const context = await auth.$context;
      const user = await context.internalAdapter.createUser({ email, name: input.name, emailVerified: true, role: "member" }, { method: "admin" });
      await context.internalAdapter.linkAccount({ userId: user.id, providerId: "credential", accountId: user.id, password: await context.password.hash(input.password) });
      ctx.audit.targetId = user.id;
      return { id: user.id, email, name: input.name };
    }),

  createOrganization: auditedProcedure("organization.create")
    .meta({ openapi: { method: "POST", path: "/organizations", protect: true, tags: ["tenancy"], summary: "Create an organization with its first owner (cluster admin)" } })
    .input(z.strictObject({ name, ownerEmail: z.email().max(254) }))
    .output(organizationView)
    .mutation(async ({ ctx, input }) => {
      requireOperator(ctx.viewer, "create organizations");
      const { db } = ctx.services;
      const owner = await db.user.findUnique({ where: { email: input.ownerEmail.toLowerCase() } });
      if (owner === null) throw new PortalError("unknown_user", `no person with email ${input.ownerEmail}; create them first with POST /api/v1/users`, { email: input.ownerEmail });
      try {
        const organization = await db.organization.create({ data: { name: input.name, memberships: { create: { userId: owner.id, role: "owner" } } } });
        ctx.audit.targetId = organization.id;
        return { id: organization.id, name: organization.name, role: "owner" as const, createdAt: organization.createdAt.toISOString() };
      } catch (error) {
        if (isUniqueViolation(error)) throw new PortalError("name_taken", `an organization named ${input.name} exists already; choose another name`, { name: input.name });
        throw error;
      }
    }),

  organizations: authedProcedure
    .meta({ openapi: { method: "GET", path: "/organizations", protect: true, tags: ["tenancy"], summary: "The organizations you belong to, with your role" } })
    .input(z.strictObject(page).default({ limit: 50 }))
    .output(z.object({ items: z.array(organizationView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const member = { memberships: { some: { userId: ctx.viewer.id } } };
      // An operator sees every organization; a token only the one around its project.
      const where = isOperator(ctx.viewer) ? {} : ctx.viewer.token !== null ? { ...member, projects: { some: { id: ctx.viewer.token.projectId } } } : member;
      const rows = await db.organization.findMany({
        where,
        include: { memberships: { where: { userId: ctx.viewer.id }, select: { role: true } } },
        orderBy: { id: "asc" },
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { id: input.cursor }, skip: 1 } : {}),
      });
      const items = rows.slice(0, input.limit).map((o) => {
        return { id: o.id, name: o.name, role: listedRole(ctx.viewer, o.memberships), createdAt: o.createdAt.toISOString() };
      });
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),

  members: authedProcedure
    .meta({ openapi: { method: "GET", path: "/organizations/{id}/members", protect: true, tags: ["tenancy"], summary: "An organization's members and their roles" } })
    .input(z.strictObject({ id, ...page }))
    .output(z.object({ items: z.array(memberView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      await findOrganization(ctx, input.id, "viewer");
      const rows = await ctx.services.db.membership.findMany({
        where: { organizationId: input.id },
        include: { user: { select: { email: true, name: true } } },
        orderBy: { userId: "asc" },
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { organizationId_userId: { organizationId: input.id, userId: input.cursor } }, skip: 1 } : {}),
      });
      const items = rows.slice(0, input.limit).map((m) => ({ userId: m.userId, email: m.user.email, name: m.user.name, role: m.role as OrgRole, since: m.createdAt.toISOString() }));
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.userId ?? null) : null };
    }),

  setMember: auditedProcedure("member.set")
    .meta({ openapi: { method: "PUT", path: "/organizations/{id}/members", protect: true, tags: ["tenancy"], summary: "Add a person to an organization, or change their role" } })
    .input(z.strictObject({ id, email: z.email().max(254), role }))
    .output(memberView)
    .mutation(async ({ ctx, input }) => {
      const organization = await findOrganization(ctx, input.id, "admin");
      const { db } = ctx.services;
      const user = await db.user.findUnique({ where: { email: input.email.toLowerCase() } });
      if (user === null) throw new PortalError("unknown_user", `no person with email ${input.email}; a cluster admin creates people with POST /api/v1/users`, { email: input.email });
      ctx.audit.targetId = user.id;
      const current = await db.membership.findUnique({ where: { organizationId_userId: { organizationId: organization.id, userId: user.id } } });
      if ((input.role === "owner" || current?.role === "owner") && organization.role !== "owner") {
        throw new PortalError("forbidden", "only an owner may make or unmake owners; ask an owner", { role: organization.role });
      }
      if (current?.role === "owner" && input.role !== "owner") await keepAnOwner(ctx, organization.id, user.id);
      const membership = await db.membership.upsert({
        where: { organizationId_userId: { organizationId: organization.id, userId: user.id } },
        create: { organizationId: organization.id, userId: user.id, role: input.role },
        update: { role: input.role },
      });
      // A lowered role takes effect on open consoles too.
      if (current !== null && !roleAtLeast(input.role, "member")) await revokeAccess(ctx.services, { userId: user.id, organizationId: organization.id });
      return { userId: user.id, email: user.email, name: user.name, role: input.role, since: membership.createdAt.toISOString() };
    }),

  removeMember: auditedProcedure("member.remove")
    .meta({ openapi: { method: "DELETE", path: "/organizations/{id}/members/{userId}", protect: true, tags: ["tenancy"], summary: "Remove a person from an organization, at once (open consoles included)" } })
    .input(z.strictObject({ id, userId: id }))
    .output(z.object({ removed: z.boolean() }))
    .mutation(async ({ ctx, input }) => {
      const organization = await findOrganization(ctx, input.id, "admin");
      const { db } = ctx.services;
      ctx.audit.targetId = input.userId;
      const current = await db.membership.findUnique({ where: { organizationId_userId: { organizationId: organization.id, userId: input.userId } } });
      if (current === null) throw new PortalError("not_found", `no member with id "${input.userId}" in organization ${organization.name}`, { userId: input.userId });
      if (current.role === "owner") {
        if (organization.role !== "owner") throw new PortalError("forbidden", "only an owner may remove an owner; ask an owner", { role: organization.role });
        await keepAnOwner(ctx, organization.id, input.userId);
      }
      await db.membership.delete({ where: { organizationId_userId: { organizationId: organization.id, userId: input.userId } } });
      await revokeAccess(ctx.services, { userId: input.userId, organizationId: organization.id });
      return { removed: true };
    }),

  createProject: auditedProcedure("project.create")
    .meta({ openapi: { method: "POST", path: "/organizations/{id}/projects", protect: true, tags: ["tenancy"], summary: "Create a project (with the cluster's default quota)" } })
    .input(z.strictObject({ id, name }))
    .output(projectView)
    .mutation(async ({ ctx, input }) => {
      const organization = await findOrganization(ctx, input.id, "admin");
      try {
        const project = await ctx.services.db.project.create({ data: { organizationId: organization.id, name: input.name, ...quotaColumns(ctx.services.settings.defaultQuota) } });
        ctx.audit.projectId = project.id;
        ctx.audit.targetId = project.id;
        return projectWithUsage(ctx, project, organization.role);
      } catch (error) {
        if (isUniqueViolation(error)) throw new PortalError("name_taken", `organization ${organization.name} has a project named ${input.name} already`, { name: input.name });
        throw error;
      }
    }),

  projects: authedProcedure
    .meta({ openapi: { method: "GET", path: "/projects", protect: true, tags: ["tenancy"], summary: "The projects you can see, with quota and usage" } })
    .input(z.strictObject(page).default({ limit: 50 }))
    .output(z.object({ items: z.array(projectView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const rows = await db.project.findMany({
        where: visibleProjects(ctx.viewer),
        include: { organization: { select: { memberships: { where: { userId: ctx.viewer.id }, select: { role: true } } } } },
        orderBy: { id: "asc" },
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { id: input.cursor }, skip: 1 } : {}),
      });
      const page = rows.slice(0, input.limit);
      const usages = await usagesOf(db, page.map((project) => project.id));
      const items = await Promise.all(
        page.map(({ organization, ...project }) => projectWithUsage(ctx, project, listedRole(ctx.viewer, organization.memberships), usages.get(project.id))),
      );
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),

  project: authedProcedure
    .meta({ openapi: { method: "GET", path: "/projects/{id}", protect: true, tags: ["tenancy"], summary: "One project, with quota and usage" } })
    .input(z.strictObject({ id }))
    .output(projectView)
    .query(async ({ ctx, input }) => {
      const { role, ...project } = await findProject(ctx.services.db, ctx.viewer, input.id, "read");
      return projectWithUsage(ctx, project, role);
    }),

  setQuota: auditedProcedure("project.quota")
    .meta({ openapi: { method: "PUT", path: "/projects/{id}/quota", protect: true, tags: ["tenancy"], summary: "Set a project's quota (cluster admin)" } })
    .input(
      z.strictObject({
        id,
        vcpus: z.number().int().min(0).max(1_000_000),
        memoryMiB: z.number().int().min(0).max(1_073_741_824),
        vms: z.number().int().min(0).max(1_000_000),
        stateBytes: z.number().int().min(0).max(Number.MAX_SAFE_INTEGER),
      }),
    )
    .output(projectView)
    .mutation(async ({ ctx, input }) => {
      requireOperator(ctx.viewer, "set quotas");
      const { role, ...project } = await findProject(ctx.services.db, ctx.viewer, input.id, "read");
      ctx.audit.projectId = project.id;
      const updated = await ctx.services.db.project.update({
        where: { id: project.id },
        data: quotaColumns({ vcpus: input.vcpus, memoryMiB: input.memoryMiB, vms: input.vms, stateBytes: BigInt(input.stateBytes) }),
      });
      return projectWithUsage(ctx, updated, role);
    }),
});

/** Refuse to leave an organization without an owner. */
async function keepAnOwner(ctx: PortalContext, organizationId: string, leavingUserId: string): Promise<void> {
  const others = await ctx.services.db.membership.count({ where: { organizationId, role: "owner", userId: { not: leavingUserId } } });
  if (others === 0) throw new PortalError("action_refused", "an organization needs at least one owner; make someone else an owner first", { organizationId });
}
