import Link from "next/link";
import { LabClassForm } from "../../../../components/lab-class-form.tsx";

export default function NewClassPage() {
  return (
    <>
      <div className="page-head">
        <div>
          <div className="muted" style={{ fontSize: 13 }}>
            <Link href="/classes">Classes</Link> /
          </div>
          <h1>New lab class</h1>
        </div>
      </div>
      <div className="panel">
        <LabClassForm />
      </div>
    </>
  );
}
