import { LabClassDetail } from "../../../../components/lab-class-detail.tsx";

export default async function ClassPage({ params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  return <LabClassDetail id={id} />;
}
