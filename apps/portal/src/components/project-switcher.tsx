"use client";
// The project picker in the top bar: every project the person can see, with their role in it.
import Link from "next/link";
import { usePathname, useRouter } from "next/navigation";
import { useProject } from "./project-context.tsx";

export function ProjectSwitcher() {
  const { project, projects, organizationName, loading, choose } = useProject();
  const pathname = usePathname();
  const router = useRouter();
  if (loading) return <span className="muted">Loading projects…</span>;
  if (project === null) return <span data-testid="no-project">No project</span>;
  return (
    <span className="project-switcher">
      <select
        aria-label="Project"
        value={project.id}
        data-testid="project-switcher"
        onChange={(event) => {
          choose(event.target.value);
          // On a project's page, follow the choice to the chosen project's page.
          if (pathname.startsWith("/projects/")) router.push(`/projects/${event.target.value}`);
        }}
      >
        {projects.map((p) => (
          <option key={p.id} value={p.id}>
            {organizationName(p.organizationId)} / {p.name} ({p.role})
          </option>
        ))}
      </select>
      <Link href={`/projects/${project.id}`} data-testid="project-page-link">
        Project
      </Link>
    </span>
  );
}
