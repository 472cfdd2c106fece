import Link from "next/link";
import { cookies, headers } from "next/headers";
import { redirect } from "next/navigation";
import type { ReactNode } from "react";
import { ProjectProvider } from "../../components/project-context.tsx";
import { projectCookie } from "../../components/project-cookie.ts";
import { ProjectSwitcher } from "../../components/project-switcher.tsx";
import { SignOutButton } from "../../components/sign-out-button.tsx";
import { portalServices } from "../../server/services.ts";
import { TRPCReactProvider } from "../../trpc/client.tsx";

export const dynamic = "force-dynamic";

export default async function SignedInLayout({ children }: { children: ReactNode }) {
  const { auth } = await portalServices();
  const session = await auth.api.getSession({ headers: await headers() });
  if (session === null) redirect("/sign-in");
  const clusterAdmin = (session.user as { role?: string }).role === "admin";
  const rememberedProject = (await cookies()).get(projectCookie)?.value ?? null;
  return (
    <TRPCReactProvider>
      <ProjectProvider initialProjectId={rememberedProject} clusterAdmin={clusterAdmin}>
        <header className="topbar">
          <Link href="/" className="brand">
            Ferry
          </Link>
          <nav>
            <Link href="/">VMs</Link>
            <Link href="/vms/new">New VM</Link>
            <Link href="/classes" data-testid="nav-classes">
              Classes
            </Link>
            <Link href="/labs" data-testid="nav-labs">
              My labs
            </Link>
            {clusterAdmin && (
              <Link href="/workers" data-testid="nav-workers">
                Workers
              </Link>
            )}
            <a href="/api/v1/openapi.json">API</a>
          </nav>
          <ProjectSwitcher />
          <div className="who">
            <span>{session.user.email}</span>
            <SignOutButton />
          </div>
        </header>
        <main className="page">{children}</main>
      </ProjectProvider>
    </TRPCReactProvider>
  );
}
