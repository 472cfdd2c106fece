"use client";
// The project the portal acts in: chosen in the top bar, remembered per browser in a cookie,
// read by the vm list, the create-vm form and the project page.
import { useQuery } from "@tanstack/react-query";
import { createContext, useContext, useState, type ReactNode } from "react";
import type { inferRouterOutputs } from "@trpc/server";
import type { AppRouter } from "../server/root.ts";
import { useTRPC } from "../trpc/client.tsx";
import { projectCookie } from "./project-cookie.ts";

export type ProjectView = inferRouterOutputs<AppRouter>["tenancy"]["projects"]["items"][number];

interface ProjectChoice {
  /** null while the projects load, or when the person is in none */
  project: ProjectView | null;
  projects: ProjectView[];
  organizationName(organizationId: string): string;
  /** a cluster admin: sees every project, may give tokens the cluster:admin scope */
  clusterAdmin: boolean;
  loading: boolean;
  error: string | null;
  choose(projectId: string): void;
}

const ProjectContext = createContext<ProjectChoice | null>(null);

export function ProjectProvider({ initialProjectId, clusterAdmin, children }: { initialProjectId: string | null; clusterAdmin: boolean; children: ReactNode }) {
  const trpc = useTRPC();
  const projects = useQuery(trpc.tenancy.projects.queryOptions({ limit: 100 }, { refetchInterval: 5000 }));
  const organizations = useQuery(trpc.tenancy.organizations.queryOptions({ limit: 100 }));
  const [chosenId, setChosenId] = useState(initialProjectId);
  const items = projects.data?.items ?? [];
  // Without a remembered project that is still visible (another person signed in on this
  // browser, or they left its organization), the oldest one they can see: a cluster admin sees
  // every tenant's projects, and the oldest is the default project that was made with them.
  const oldest = items.reduce<ProjectView | null>((first, p) => (first === null || p.createdAt < first.createdAt ? p : first), null);
  const project = items.find((p) => p.id === chosenId) ?? oldest;
  const choice: ProjectChoice = {
    project,
    projects: items,
    organizationName: (organizationId) => organizations.data?.items.find((o) => o.id === organizationId)?.name ?? organizationId,
    clusterAdmin,
    loading: projects.isPending,
    error: projects.isError ? projects.error.message : null,
    choose(projectId) {
      document.cookie = `${projectCookie}=${encodeURIComponent(projectId)}; path=/; max-age=31536000; samesite=lax`;
      setChosenId(projectId);
    },
  };
  return <ProjectContext.Provider value={choice}>{children}</ProjectContext.Provider>;
}

/** The chosen project and the ones to choose from; inside `ProjectProvider` only. */
export function useProject(): ProjectChoice {
  const choice = useContext(ProjectContext);
  if (choice === null) throw new Error("useProject() is used outside <ProjectProvider>; the signed-in layout provides it");
  return choice;
}
