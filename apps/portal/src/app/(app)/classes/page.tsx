import Link from "next/link";
import { LabClassList } from "../../../components/lab-class-list.tsx";

export default function ClassListPage() {
  return (
    <>
      <div className="page-head">
        <h1>Lab classes</h1>
        <Link href="/classes/new" className="button primary" data-testid="class-new">
          + New class
        </Link>
      </div>
      <LabClassList />
    </>
  );
}
