// The audit log of a project, newest first, for anyone who can see the project.
import { z } from "zod";
import { findProject } from "../access.ts";
import { authedProcedure, createTRPCRouter } from "../trpc.ts";

const auditView = z.object({
  id: z.string(),
  at: z.string(),
  actorUserId: z.string().nullable(),
  actorEmail: z.string(),
  actorTokenId: z.string().nullable(),
  ip: z.string().nullable(),
  action: z.string(),
  targetType: z.string(),
  targetId: z.string().nullable(),
  outcome: z.string(),
  message: z.string(),
});

export const auditRouter = createTRPCRouter({
  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/projects/{projectId}/audit", protect: true, tags: ["audit"], summary: "The project's audit log, newest first" } })
    .input(
      z.strictObject({
        projectId: z.string().min(1).max(100),
        limit: z.number().int().min(1).max(200).default(50),
        /** the `nextCursor` of the previous page */
        cursor: z.string().regex(/^\d{1,19}$/, { error: "must be the nextCursor of a previous page" }).optional(),
      }),
    )
    .output(z.object({ items: z.array(auditView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const project = await findProject(ctx.services.db, ctx.viewer, input.projectId, "read");
      const rows = await ctx.services.db.auditEntry.findMany({
        where: { projectId: project.id, ...(input.cursor ? { id: { lt: BigInt(input.cursor) } } : {}) },
        orderBy: { id: "desc" },
        take: input.limit + 1,
      });
      const items = rows.slice(0, input.limit).map((row) => ({
        id: row.id.toString(),
        at: row.at.toISOString(),
        actorUserId: row.actorUserId,
        actorEmail: row.actorEmail,
        actorTokenId: row.actorTokenId,
        ip: row.ip,
        action: row.action,
        targetType: row.targetType,
        targetId: row.targetId,
        outcome: row.outcome,
        message: row.message,
      }));
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),
});
