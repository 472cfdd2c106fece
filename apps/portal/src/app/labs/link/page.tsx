import { LabLink } from "../../../components/lab-link.tsx";
import { TRPCReactProvider } from "../../../trpc/client.tsx";

// Outside the signed-in layout: a learning-management system hands this link to a student who
// may have no Ferry session; the link's token is the credential.
export const dynamic = "force-dynamic";

export default async function LabLinkPage({ searchParams }: { searchParams: Promise<{ token?: string | string[] }> }) {
  const { token } = await searchParams;
  return (
    <TRPCReactProvider>
      <main className="page">
        <LabLink token={typeof token === "string" ? token : ""} />
      </main>
    </TRPCReactProvider>
  );
}
