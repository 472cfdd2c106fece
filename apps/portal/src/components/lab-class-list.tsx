"use client";
// The lab classes of the project chosen in the top bar, newest first.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useTRPC } from "../trpc/client.tsx";
import { useProject } from "./project-context.tsx";

export function LabClassList() {
  const trpc = useTRPC();
  const { project, loading, error } = useProject();
  const classes = useQuery(trpc.labClass.list.queryOptions({ projectId: project?.id ?? "", limit: 100 }, { refetchInterval: 5000, enabled: project !== null }));
  if (loading) return <div className="panel muted">Loading projects…</div>;
  if (error !== null) return <div className="error">Could not load your projects: {error}</div>;
  if (project === null) {
    return <div className="panel empty">You are not a member of any project yet. Ask an organization owner or admin to add you.</div>;
  }
  if (classes.isPending) return <div className="panel muted">Loading classes…</div>;
  if (classes.isError) return <div className="error">Could not load the classes of project {project.name}: {classes.error.message}</div>;
  if (classes.data.items.length === 0) {
    return (
      <div className="panel empty" data-testid="no-classes">
        No lab classes in project {project.name} yet. Publish a vm as a lab template, then <Link href="/classes/new">create a class</Link>.
      </div>
    );
  }
  return (
    <div className="panel table-scroll" style={{ padding: 0 }}>
      <table className="vms">
        <thead>
          <tr>
            <th>Name</th>
            <th>Status</th>
            <th>Opens</th>
            <th>Closes</th>
            <th>Limits</th>
          </tr>
        </thead>
        <tbody>
          {classes.data.items.map((labClass) => (
            <tr key={labClass.id} data-testid={`class-row-${labClass.name}`}>
              <td>
                <Link href={`/classes/${labClass.id}`}>{labClass.name}</Link>
              </td>
              <td>
                <span className={`state state-${labClass.status === "started" ? "running" : labClass.status === "ended" ? "stopped" : "suspended"}`}>{labClass.status}</span>
              </td>
              <td>{new Date(labClass.opensAt).toLocaleString()}</td>
              <td>{new Date(labClass.closesAt).toLocaleString()}</td>
              <td>
                {labClass.sessionMinutes} min a session · {labClass.totalMinutes} min in all
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {classes.data.nextCursor && <p className="muted" style={{ padding: "0 12px" }}>Showing the newest 100 classes.</p>}
    </div>
  );
}
