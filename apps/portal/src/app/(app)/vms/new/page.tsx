import { CreateVmForm } from "../../../../components/create-vm-form.tsx";
import { guestImages, profileNames } from "../../../../server/catalog.ts";

export default function NewVmPage() {
  return (
    <>
      <div className="page-head">
        <h1>New VM</h1>
      </div>
      <div className="panel">
        <CreateVmForm images={guestImages()} profiles={profileNames()} />
      </div>
    </>
  );
}
