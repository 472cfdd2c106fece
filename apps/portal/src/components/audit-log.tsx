"use client";
// A project's audit log, newest first, a page at a time: who did what, when, from where, and
// whether it was done or refused.
import { useQuery } from "@tanstack/react-query";
import { useState } from "react";
import { useTRPC } from "../trpc/client.tsx";

const pageSize = 25;

export function AuditLog({ projectId }: { projectId: string }) {
  const trpc = useTRPC();
  // The cursors of the pages before the one shown; empty on the newest page.
  const [cursors, setCursors] = useState<string[]>([]);
  const cursor = cursors.at(-1);
  const entries = useQuery(
    trpc.audit.list.queryOptions({ projectId, limit: pageSize, ...(cursor ? { cursor } : {}) }, { refetchInterval: cursor ? false : 5000 }),
  );
  return (
    <div className="panel" data-testid="audit-log">
      <h2>Audit log</h2>
      {entries.isPending && <p className="muted">Loading the audit log…</p>}
      {entries.isError && <div className="error">Could not load the audit log: {entries.error.message}</div>}
      {entries.data && entries.data.items.length === 0 && <p className="muted">Nothing has been done in this project yet.</p>}
      {entries.data && entries.data.items.length > 0 && (
        <table className="table">
          <thead>
            <tr>
              <th>When</th>
              <th>Who</th>
              <th>From</th>
              <th>Action</th>
              <th>Target</th>
              <th>Outcome</th>
              <th>Message</th>
            </tr>
          </thead>
          <tbody>
            {entries.data.items.map((entry) => (
              <tr key={entry.id} data-testid={`audit-${entry.action}`}>
                <td>{new Date(entry.at).toLocaleString()}</td>
                <td data-testid="audit-actor">
                  {entry.actorEmail}
                  {entry.actorTokenId && <span className="reason">with API token {entry.actorTokenId}</span>}
                </td>
                <td className="mono">{entry.ip ?? "—"}</td>
                <td className="mono">{entry.action}</td>
                <td>
                  {entry.targetType} <span className="mono muted">{entry.targetId ?? ""}</span>
                </td>
                <td>
                  <span className={`outcome outcome-${entry.outcome}`} data-testid="audit-outcome">
                    {entry.outcome}
                  </span>
                </td>
                <td className="audit-message">{entry.message}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <div className="actions">
        <button type="button" disabled={cursors.length === 0} onClick={() => setCursors(cursors.slice(0, -1))} data-testid="audit-newer">
          Newer
        </button>
        <button
          type="button"
          disabled={!entries.data?.nextCursor}
          onClick={() => entries.data?.nextCursor && setCursors([...cursors, entries.data.nextCursor])}
          data-testid="audit-older"
        >
          Older
        </button>
        <span className="muted">{cursors.length === 0 ? "newest entries" : `page ${cursors.length + 1}`}</span>
      </div>
    </div>
  );
}
