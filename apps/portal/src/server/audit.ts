// The audit log: one row per state-changing request, allowed or refused. Written after the
// action, so a failure to write it is logged and never turns a done action into an error.
import type { Viewer } from "./access.ts";
import type { PortalServices } from "./services.ts";

export interface AuditRecord {
  viewer: Viewer;
  ip: string | null;
  projectId: string | null;
  action: string;
  targetType: string;
  targetId: string | null;
  outcome: "ok" | "refused" | "failed";
  message: string;
}

/** Longest message kept; an error's text can be long. */
const maxMessageLength = 1000;

export async function recordAudit(services: Pick<PortalServices, "db" | "log">, record: AuditRecord): Promise<void> {
  try {
    await services.db.auditEntry.create({
      data: {
        projectId: record.projectId,
        actorUserId: record.viewer.id,
        actorEmail: record.viewer.email,
        actorTokenId: record.viewer.token?.id ?? null,
        ip: record.ip,
        action: record.action,
        targetType: record.targetType,
        targetId: record.targetId,
        outcome: record.outcome,
        message: record.message.slice(0, maxMessageLength),
      },
    });
  } catch (error) {
    services.log.error({ err: error, audit: { ...record, viewer: record.viewer.email } }, "could not write the audit entry");
  }
}
