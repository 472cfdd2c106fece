import Link from "next/link";
import { headers } from "next/headers";
import { redirect } from "next/navigation";
import type { ReactNode } from "react";
import { SignOutButton } from "../../components/sign-out-button.tsx";
import { portalServices } from "../../server/services.ts";
import { TRPCReactProvider } from "../../trpc/client.tsx";

export const dynamic = "force-dynamic";

export default async function SignedInLayout({ children }: { children: ReactNode }) {
  const { auth } = await portalServices();
  const session = await auth.api.getSession({ headers: await headers() });
  if (session === null) redirect("/sign-in");
  return (
    <TRPCReactProvider>
      <header className="topbar">
        <Link href="/" className="brand">
          Ferry
        </Link>
        <nav>
          <Link href="/">VMs</Link>
          <Link href="/vms/new">New VM</Link>
          <Link href="/workers">Workers</Link>
          <a href="/api/v1/openapi.json">API</a>
        </nav>
        <div className="who">
          <span>{session.user.email}</span>
          <SignOutButton />
        </div>
      </header>
      <main className="page">{children}</main>
    </TRPCReactProvider>
  );
}
