"use client";
// What a project may use and what it uses now: vCPUs and memory of the vms wanted running,
// the vms that exist, and the bytes of its stored guest states.
import { formatBytes } from "./format.ts";
import type { ProjectView } from "./project-context.tsx";

export function ProjectQuota({ project }: { project: ProjectView }) {
  const { quota, usage } = project;
  const rows = [
    { key: "vcpus", label: "vCPUs", used: usage.vcpus, limit: quota.vcpus, show: String },
    { key: "memory", label: "Memory", used: usage.memoryMiB, limit: quota.memoryMiB, show: (mib: number) => `${mib} MiB` },
    { key: "vms", label: "VMs", used: usage.vms, limit: quota.vms, show: String },
    { key: "state-bytes", label: "Guest states", used: usage.stateBytes, limit: quota.stateBytes, show: formatBytes },
  ];
  return (
    <div className="panel" data-testid="project-quota">
      <h2>Quota of project {project.name}</h2>
      <dl className="facts">
        {rows.map((row) => (
          <div key={row.key} data-testid={`quota-${row.key}`}>
            <dt>{row.label}</dt>
            <dd>
              {row.show(row.used)} <span className="muted">of {row.show(row.limit)}</span>
              <span className={`progress${row.used >= row.limit ? " full" : ""}`}>
                <div style={{ width: `${row.limit === 0 ? 100 : Math.min(100, (row.used / row.limit) * 100)}%` }} />
              </span>
            </dd>
          </div>
        ))}
      </dl>
      <p className="muted" style={{ margin: "12px 0 0", fontSize: 13 }}>
        vCPUs and memory count the vms that are running or starting. A cluster admin sets the quota.
      </p>
    </div>
  );
}
