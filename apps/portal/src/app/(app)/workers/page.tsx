import { headers } from "next/headers";
import { WorkerList } from "../../../components/worker-list.tsx";
import { portalServices } from "../../../server/services.ts";

export default async function WorkersPage() {
  const { auth } = await portalServices();
  const session = await auth.api.getSession({ headers: await headers() });
  // Workers and their guests span every tenant: the page is for cluster admins only.
  if ((session?.user as { role?: string } | undefined)?.role !== "admin") {
    return (
      <>
        <div className="page-head">
          <h1>Workers</h1>
        </div>
        <div className="panel empty" data-testid="workers-admins-only">
          The workers page is for cluster admins only: workers run every organization&apos;s vms. Ask a cluster admin if you need to know where your vms run.
        </div>
      </>
    );
  }
  return <WorkerList />;
}
