// API tokens: one project, some scopes, an expiry. The token is shown once, when made; only
// its SHA-256 is stored. Revoking one takes effect at once, open consoles included.
import { randomBytes } from "node:crypto";
import { z } from "zod";
import { type TokenScope, findProject, isOperator, roleAtLeast, scopesAllowed, tokenScopes } from "../access.ts";
import { revokeAccess } from "../access-revocation.ts";
import { apiTokenHash } from "../api-token.ts";
import { PortalError } from "../errors.ts";
import { displayName, recordId } from "../fields.ts";
import { auditedProcedure, authedProcedure, createTRPCRouter } from "../trpc.ts";

const id = recordId;

const tokenView = z.object({
  id: z.string(),
  name: z.string(),
  projectId: z.string(),
  userId: z.string(),
  scopes: z.array(z.string()),
  createdAt: z.string(),
  expiresAt: z.string().nullable(),
  revokedAt: z.string().nullable(),
  lastUsedAt: z.string().nullable(),
});

type TokenRow = { id: string; name: string; projectId: string; userId: string; scopes: string[]; createdAt: Date; expiresAt: Date | null; revokedAt: Date | null; lastUsedAt: Date | null };

function toTokenView(row: TokenRow): z.infer<typeof tokenView> {
  return {
    id: row.id,
    name: row.name,
    projectId: row.projectId,
    userId: row.userId,
    scopes: row.scopes,
    createdAt: row.createdAt.toISOString(),
    expiresAt: row.expiresAt?.toISOString() ?? null,
    revokedAt: row.revokedAt?.toISOString() ?? null,
    lastUsedAt: row.lastUsedAt?.toISOString() ?? null,
  };
}

export const tokenRouter = createTRPCRouter({
  create: auditedProcedure("token.create")
    .meta({ openapi: { method: "POST", path: "/tokens", protect: true, tags: ["tokens"], summary: "Make an API token for a project; the token is in this answer only" } })
    .input(
      z.strictObject({
        projectId: id,
        name: displayName,
        scopes: z.array(z.enum(tokenScopes)).min(1, { error: "name at least one scope" }).max(tokenScopes.length),
        expiresInDays: z.number().int().min(1, { error: "must be 1-365 days" }).max(365, { error: "must be 1-365 days" }).default(90),
      }),
    )
    .output(tokenView.extend({ token: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      // A token cannot make tokens: a leaked one must not be able to outlive its own revocation.
      if (ctx.viewer.token !== null) throw new PortalError("forbidden", "API tokens are made by a signed-in person, not by another token; sign in to the portal");
      const project = await findProject(db, ctx.viewer, input.projectId, "read");
      ctx.audit.projectId = project.id;
      const allowed = scopesAllowed(project.role, isOperator(ctx.viewer));
      const beyond = input.scopes.filter((scope) => !allowed.includes(scope));
      if (beyond.length > 0) {
        throw new PortalError("forbidden", `as ${project.role} you cannot give a token ${beyond.join(", ")}; you may give ${allowed.join(", ")}`, { scopes: beyond, allowed });
      }
      const token = `ferry_${randomBytes(32).toString("base64url")}`;
      const row = await db.apiToken.create({
        data: {
          userId: ctx.viewer.id,
          projectId: project.id,
          name: input.name,
          scopes: [...new Set<TokenScope>(input.scopes)],
          tokenHash: apiTokenHash(token),
          expiresAt: new Date(Date.now() + input.expiresInDays * 86_400_000),
        },
      });
      ctx.audit.targetId = row.id;
      return { ...toTokenView(row), token };
    }),

  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/tokens", protect: true, tags: ["tokens"], summary: "API tokens of a project: your own, or all of them for its admins" } })
    .input(z.strictObject({ projectId: id, limit: z.number().int().min(1).max(100).default(50), cursor: id.optional() }))
    .output(z.object({ items: z.array(tokenView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const project = await findProject(ctx.services.db, ctx.viewer, input.projectId, "read");
      const all = roleAtLeast(project.role, "admin") && (ctx.viewer.token === null || ctx.viewer.token.scopes.includes("project:admin"));
      const rows = await ctx.services.db.apiToken.findMany({
        where: { projectId: project.id, ...(all ? {} : { userId: ctx.viewer.id }) },
        orderBy: { id: "asc" },
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { id: input.cursor }, skip: 1 } : {}),
      });
      const items = rows.slice(0, input.limit).map(toTokenView);
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),

  revoke: auditedProcedure("token.revoke")
    .meta({ openapi: { method: "DELETE", path: "/tokens/{id}", protect: true, tags: ["tokens"], summary: "Revoke an API token at once (its open consoles close)" } })
    .input(z.strictObject({ id }))
    .output(tokenView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const notFound = () => new PortalError("not_found", `no API token with id "${input.id}" is visible to you`, { id: input.id });
      const row = await db.apiToken.findUnique({ where: { id: input.id } });
      if (row === null) throw notFound();
      // Your own token you may always revoke (even with itself); others' take a project admin.
      const own = row.userId === ctx.viewer.id;
      const project = await findProject(db, ctx.viewer, row.projectId, own ? "read" : "manage").catch((error: unknown) => {
        throw error instanceof PortalError && error.code === "not_found" ? notFound() : error;
      });
      ctx.audit.projectId = project.id;
      const revoked = row.revokedAt !== null ? row : await db.apiToken.update({ where: { id: row.id }, data: { revokedAt: new Date() } });
      await revokeAccess(ctx.services, { apiTokenId: row.id });
      return toTokenView(revoked);
    }),
});
