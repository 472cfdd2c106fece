import { VmDetail } from "../../../../components/vm-detail.tsx";

export default async function VmPage({ params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  return <VmDetail id={id} />;
}
