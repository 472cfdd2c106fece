"use client";
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useTRPC } from "../trpc/client.tsx";
import { useProject } from "./project-context.tsx";
import { ProjectQuota } from "./project-quota.tsx";
import { VmStateBadge } from "./vm-state.tsx";

export function VmList() {
  const trpc = useTRPC();
  const { project, loading, error } = useProject();
  const vms = useQuery(trpc.vm.list.queryOptions({ limit: 100, projectId: project?.id ?? "" }, { refetchInterval: 1000, enabled: project !== null }));
  if (loading) return <div className="panel muted">Loading projects…</div>;
  if (error !== null) return <div className="error">Could not load your projects: {error}</div>;
  if (project === null) {
    return (
      <div className="panel empty" data-testid="no-projects">
        You are not a member of any project yet. Ask an organization owner or admin to add you.
      </div>
    );
  }
  if (vms.isPending) return <div className="panel muted">Loading vms…</div>;
  if (vms.isError) return <div className="error">Could not load vms: {vms.error.message}</div>;
  if (vms.data.items.length === 0) {
    return (
      <>
        <ProjectQuota project={project} />
        <div className="panel empty" data-testid="no-vms">
          No vms in project {project.name} yet. <Link href="/vms/new">Create one</Link>.
        </div>
      </>
    );
  }
  return (
    <>
      <ProjectQuota project={project} />
      <div className="panel" style={{ padding: 0 }}>
        <table className="vms">
          <thead>
            <tr>
              <th>Name</th>
              <th>State</th>
              <th>Worker</th>
              <th>Accelerator</th>
              <th>vCPUs / memory</th>
              <th>Image</th>
            </tr>
          </thead>
          <tbody>
            {vms.data.items.map((vm) => (
              <tr key={vm.id} data-testid={`vm-row-${vm.name}`}>
                <td>
                  <Link href={`/vms/${vm.id}`}>{vm.name}</Link>
                </td>
                <td>
                  <VmStateBadge vm={vm} />
                </td>
                <td className="mono">{vm.workerId ?? "—"}</td>
                <td>{vm.accelerator ?? "—"}</td>
                <td>
                  {vm.vcpus} vCPU · {vm.memoryMiB} MiB
                </td>
                <td>
                  {vm.image} <span className="muted">({vm.profile})</span>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
        {vms.data.nextCursor && <p className="muted" style={{ padding: "0 12px" }}>Showing the newest 100 vms.</p>}
      </div>
    </>
  );
}
