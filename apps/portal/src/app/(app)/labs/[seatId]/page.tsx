import { LabSeatPage } from "../../../../components/lab-seat-page.tsx";

export default async function SeatPage({ params }: { params: Promise<{ seatId: string }> }) {
  const { seatId } = await params;
  return <LabSeatPage seatId={seatId} />;
}
