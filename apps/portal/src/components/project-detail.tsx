"use client";
// A project's page: its quota, the members of its organization, its API tokens and its audit log,
// and a link to its lab classes.
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useEffect } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { AuditLog } from "./audit-log.tsx";
import { MemberList } from "./member-list.tsx";
import { useProject } from "./project-context.tsx";
import { ProjectQuota } from "./project-quota.tsx";
import { TokenPanel } from "./token-panel.tsx";

export function ProjectDetail({ id }: { id: string }) {
  const trpc = useTRPC();
  const { project: chosen, organizationName, choose } = useProject();
  const project = useQuery(trpc.tenancy.project.queryOptions({ id }, { refetchInterval: 5000 }));
  const shown = project.data;
  // Opening a project's page makes it the project the vm list and create form act in.
  useEffect(() => {
    if (shown !== undefined && chosen !== null && chosen.id !== shown.id) choose(shown.id);
  }, [shown, chosen, choose]);

  if (project.isPending) return <div className="panel muted">Loading project…</div>;
  if (project.isError) {
    return (
      <div className="error">
        {project.error.message} <Link href="/">Back to your vms</Link>
      </div>
    );
  }
  const data = project.data;
  return (
    <>
      <div className="page-head">
        <div>
          <div className="muted" style={{ fontSize: 13 }}>
            {organizationName(data.organizationId)} /
          </div>
          <h1 data-testid="project-name">{data.name}</h1>
        </div>
        <div className="actions" style={{ marginTop: 0 }}>
          <span className="muted" data-testid="project-role">
            your role: {data.role}
          </span>
          <Link href="/classes" className="button" data-testid="project-classes-link">
            Lab classes
          </Link>
        </div>
      </div>
      <ProjectQuota project={data} />
      <MemberList organizationId={data.organizationId} organizationName={organizationName(data.organizationId)} role={data.role} />
      <TokenPanel project={data} />
      <AuditLog projectId={data.id} />
    </>
  );
}
