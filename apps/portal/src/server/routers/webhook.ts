// Webhooks: a project's vm lifecycle events POSTed to a URL its admins choose, signed with a
// secret shown once, at creation (derived from the cluster secret, so only a salt is stored).
// The controllers send them and record every attempt (apps/controller/src/webhooks.ts).
import type { Db } from "@ferry/db";
import { webhookEventKinds } from "@ferry/jobs";
import { newWebhookSalt, webhookSigningSecret } from "@ferry/tokens";
import { z } from "zod";
import { type Viewer, findProject } from "../access.ts";
import { PortalError } from "../errors.ts";
import { controlCharacters } from "../fields.ts";
import { auditedProcedure, authedProcedure, createTRPCRouter } from "../trpc.ts";

const id = z.string().min(1).max(100);
/** More would make every change of a vm fan out too far. */
const maxWebhooksPerProject = 20;

const webhookUrl = z
  .string()
  .max(2000, { error: "must be at most 2000 characters" })
  .superRefine((value, ctx) => {
    // The URL parser silently drops tabs and newlines; a URL that holds them was not meant.
    if (controlCharacters.test(value)) return void ctx.addIssue({ code: "custom", message: "must not contain control characters" });
    let url: URL;
    try {
      url = new URL(value);
    } catch {
      return void ctx.addIssue({ code: "custom", message: `must be an absolute http:// or https:// URL (got "${value.slice(0, 100)}")` });
    }
    if (url.protocol !== "http:" && url.protocol !== "https:") ctx.addIssue({ code: "custom", message: `must use http or https, not ${url.protocol.slice(0, -1)}` });
    if (url.username !== "" || url.password !== "") {
      ctx.addIssue({ code: "custom", message: "must not carry credentials (user:password@); check each delivery's Ferry-Signature instead" });
    }
    if (url.hash !== "") ctx.addIssue({ code: "custom", message: "must not have a #fragment: it is never sent" });
  });

const webhookView = z.object({
  id: z.string(),
  projectId: z.string(),
  url: z.string(),
  /** empty: every kind */
  events: z.array(z.string()),
  createdAt: z.string(),
  disabledAt: z.string().nullable(),
});

const deliveryView = z.object({
  id: z.string(),
  webhookId: z.string(),
  eventId: z.string(),
  kind: z.string(),
  status: z.enum(["pending", "delivered", "failed"]),
  attempts: z.number(),
  lastStatusCode: z.number().nullable(),
  lastError: z.string().nullable(),
  createdAt: z.string(),
  lastAttemptAt: z.string().nullable(),
  deliveredAt: z.string().nullable(),
});

type WebhookRow = { id: string; projectId: string; url: string; events: string[]; createdAt: Date; disabledAt: Date | null };

function toWebhookView(row: WebhookRow): z.infer<typeof webhookView> {
  return { id: row.id, projectId: row.projectId, url: row.url, events: row.events, createdAt: row.createdAt.toISOString(), disabledAt: row.disabledAt?.toISOString() ?? null };
}

export const webhookRouter = createTRPCRouter({
  create: auditedProcedure("webhook.create")
    .meta({
      openapi: {
        method: "POST",
        path: "/projects/{projectId}/webhooks",
        protect: true,
        tags: ["webhooks"],
        summary: "Subscribe a URL to the project's vm lifecycle events; the signing secret is in this answer only",
      },
    })
    .input(
      z.strictObject({
        projectId: id,
        url: webhookUrl,
        /** the kinds to send ("vm.running", "vm.migrated", ...); absent: every kind */
        events: z
          .array(z.enum(webhookEventKinds))
          .min(1, { error: "name at least one kind, or leave events out to get every kind" })
          .max(webhookEventKinds.length)
          .optional(),
      }),
    )
    .output(webhookView.extend({ secret: z.string() }))
    .mutation(async ({ ctx, input }) => {
      const { db, settings } = ctx.services;
      const project = await findProject(db, ctx.viewer, input.projectId, "manage");
      ctx.audit.projectId = project.id;
      const active = await db.webhook.count({ where: { projectId: project.id, disabledAt: null } });
      if (active >= maxWebhooksPerProject) {
        throw new PortalError("quota_exceeded", `project ${project.id} already has ${active} webhooks, the most a project may have; delete one first`, { limit: maxWebhooksPerProject });
      }
      const row = await db.webhook.create({ data: { projectId: project.id, url: input.url, events: [...new Set(input.events ?? [])], secretSalt: newWebhookSalt() } });
      ctx.audit.targetId = row.id;
      return { ...toWebhookView(row), secret: webhookSigningSecret(settings.clusterSecret, row.id, row.secretSalt) };
    }),

  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/projects/{projectId}/webhooks", protect: true, tags: ["webhooks"], summary: "The project's webhooks (deleted ones are left out)" } })
    .input(z.strictObject({ projectId: id, limit: z.number().int().min(1).max(100).default(50), cursor: id.optional() }))
    .output(z.object({ items: z.array(webhookView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const project = await findProject(ctx.services.db, ctx.viewer, input.projectId, "manage");
      const rows = await ctx.services.db.webhook.findMany({
        where: { projectId: project.id, disabledAt: null },
        orderBy: { id: "asc" },
        take: input.limit + 1,
        ...(input.cursor ? { cursor: { id: input.cursor }, skip: 1 } : {}),
      });
      const items = rows.slice(0, input.limit).map(toWebhookView);
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),

  delete: auditedProcedure("webhook.delete")
    .meta({ openapi: { method: "DELETE", path: "/webhooks/{id}", protect: true, tags: ["webhooks"], summary: "Delete a webhook: nothing more is sent; its deliveries stay listed" } })
    .input(z.strictObject({ id }))
    .output(webhookView)
    .mutation(async ({ ctx, input }) => {
      const { db } = ctx.services;
      const row = await webhookFor(db, ctx.viewer, input.id);
      ctx.audit.projectId = row.projectId;
      if (row.disabledAt !== null) return toWebhookView(row);
      const at = new Date();
      const [deleted] = await db.$transaction([
        db.webhook.update({ where: { id: row.id }, data: { disabledAt: at } }),
        db.webhookDelivery.updateMany({ where: { webhookId: row.id, status: "pending" }, data: { status: "failed", lastError: "the webhook was deleted before this event was delivered" } }),
      ]);
      return toWebhookView(deleted);
    }),

  deliveries: authedProcedure
    .meta({ openapi: { method: "GET", path: "/webhooks/{id}/deliveries", protect: true, tags: ["webhooks"], summary: "A webhook's deliveries, newest first: status, attempts, last answer or error" } })
    .input(
      z.strictObject({
        id,
        limit: z.number().int().min(1).max(200).default(50),
        /** the `nextCursor` of the previous page */
        cursor: z.string().regex(/^\d{1,19}$/, { error: "must be the nextCursor of a previous page" }).optional(),
      }),
    )
    .output(z.object({ items: z.array(deliveryView), nextCursor: z.string().nullable() }))
    .query(async ({ ctx, input }) => {
      const webhook = await webhookFor(ctx.services.db, ctx.viewer, input.id);
      const rows = await ctx.services.db.webhookDelivery.findMany({
        where: { webhookId: webhook.id, ...(input.cursor ? { id: { lt: BigInt(input.cursor) } } : {}) },
        orderBy: { id: "desc" },
        take: input.limit + 1,
      });
      const items = rows.slice(0, input.limit).map((row) => ({
        id: row.id.toString(),
        webhookId: row.webhookId,
        eventId: row.eventId,
        kind: row.kind,
        status: deliveryView.shape.status.parse(row.status),
        attempts: row.attempts,
        lastStatusCode: row.lastStatusCode,
        lastError: row.lastError,
        createdAt: row.createdAt.toISOString(),
        lastAttemptAt: row.lastAttemptAt?.toISOString() ?? null,
        deliveredAt: row.deliveredAt?.toISOString() ?? null,
      }));
      return { items, nextCursor: rows.length > input.limit ? (items.at(-1)?.id ?? null) : null };
    }),
});

/** The webhook if the viewer may manage its project; another tenant's is missing (404), like an unknown id. */
async function webhookFor(db: Db, viewer: Viewer, webhookId: string) {
  const notFound = () => new PortalError("not_found", `no webhook with id "${webhookId}" is visible to you; list a project's with GET /api/v1/projects/{projectId}/webhooks`, { id: webhookId });
  const row = await db.webhook.findUnique({ where: { id: webhookId } });
  if (row === null) throw notFound();
  await findProject(db, viewer, row.projectId, "manage").catch((error: unknown) => {
    throw error instanceof PortalError && error.code === "not_found" ? notFound() : error;
  });
  return row;
}
