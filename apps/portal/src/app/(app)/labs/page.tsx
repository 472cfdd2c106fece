import { LabSeatList } from "../../../components/lab-seat-list.tsx";

export default function LabsPage() {
  return (
    <>
      <div className="page-head">
        <h1>My labs</h1>
      </div>
      <LabSeatList />
    </>
  );
}
