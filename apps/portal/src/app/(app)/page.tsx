import Link from "next/link";
import { VmList } from "../../components/vm-list.tsx";

export default function VmListPage() {
  return (
    <>
      <div className="page-head">
        <h1>Virtual machines</h1>
        <Link href="/vms/new" className="button primary" data-testid="create-vm">
          + New VM
        </Link>
      </div>
      <VmList />
    </>
  );
}
