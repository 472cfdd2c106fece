"use client";
import { useMutation } from "@tanstack/react-query";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { useProject } from "./project-context.tsx";

type Field = "name" | "image" | "vcpus" | "memoryMiB" | "profile";

// Which field a refusal from vm.create is about, so the message shows next to it.
const fieldOfCode: Record<string, Field> = {
  unknown_image: "image",
  unknown_profile: "profile",
  memory_too_small: "memoryMiB",
  memory_exceeds_workers: "memoryMiB",
};

interface FerryErrorData {
  ferry?: { code: string; message: string; details?: { issues?: { path: string[]; message: string }[] } };
}

export function CreateVmForm({ images, profiles }: { images: { name: string; minMemoryMiB: number }[]; profiles: string[] }) {
  const trpc = useTRPC();
  const router = useRouter();
  const create = useMutation(trpc.vm.create.mutationOptions());
  const { project, organizationName } = useProject();
  const [fieldErrors, setFieldErrors] = useState<Partial<Record<Field, string>>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [image, setImage] = useState(images[0]?.name ?? "");
  const minMemoryMiB = images.find((i) => i.name === image)?.minMemoryMiB ?? 64;

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setFieldErrors({});
    setFormError(null);
    try {
      const vm = await create.mutateAsync({
        name: String(form.get("name") ?? ""),
        image: String(form.get("image") ?? ""),
        vcpus: Number(form.get("vcpus")),
        memoryMiB: Number(form.get("memoryMiB")),
        profile: String(form.get("profile") ?? "standard"),
        ...(project !== null ? { projectId: project.id } : {}),
      });
      router.push(`/vms/${vm.id}`);
    } catch (error) {
      const ferry = (error as { data?: FerryErrorData }).data?.ferry;
      if (!ferry) {
        setFormError(error instanceof Error ? error.message : "The vm could not be created; try again.");
        return;
      }
      const issues = ferry.details?.issues ?? [];
      const byField: Partial<Record<Field, string>> = {};
      for (const issue of issues) {
        const field = issue.path[0] as Field | undefined;
        if (field) byField[field] = issue.message;
      }
      const field = fieldOfCode[ferry.code];
      if (field) byField[field] = ferry.message;
      setFieldErrors(byField);
      if (Object.keys(byField).length === 0) setFormError(ferry.message);
    }
  }

  const error = (field: Field) =>
    fieldErrors[field] && (
      <span className="field-error" data-testid={`error-${field}`}>
        {fieldErrors[field]}
      </span>
    );

  return (
    <form className="form" onSubmit={submit} noValidate>
      <p className="muted" style={{ margin: 0 }} data-testid="create-project">
        {project !== null
          ? `In project ${organizationName(project.organizationId)} / ${project.name}; change it in the top bar.`
          : "You are in no project yet: ask an organization owner or admin to add you."}
      </p>
      <div className="field">
        <label htmlFor="name">Name</label>
        <input id="name" name="name" placeholder="web-1" maxLength={63} required data-testid="field-name" />
        <span className="hint">Up to 63 characters.</span>
        {error("name")}
      </div>
      <div className="row">
        <div className="field">
          <label htmlFor="image">Image</label>
          <select id="image" name="image" value={image} onChange={(e) => setImage(e.target.value)} data-testid="field-image">
            {images.map((i) => (
              <option key={i.name} value={i.name}>
                {i.name} (min {i.minMemoryMiB} MiB)
              </option>
            ))}
          </select>
          {error("image")}
        </div>
        <div className="field">
          <label htmlFor="profile">Hardware profile</label>
          <select id="profile" name="profile" defaultValue="standard" data-testid="field-profile">
            {profiles.map((p) => (
              <option key={p} value={p}>
                {p}
              </option>
            ))}
          </select>
          <span className="hint">compat: e1000 NIC and SATA disks, for guests without virtio.</span>
          {error("profile")}
        </div>
      </div>
      <div className="row">
        <div className="field">
          <label htmlFor="vcpus">vCPUs</label>
          <input id="vcpus" name="vcpus" type="number" min={1} max={16} defaultValue={1} data-testid="field-vcpus" />
          {error("vcpus")}
        </div>
        <div className="field">
          <label htmlFor="memoryMiB">Memory (MiB)</label>
          <input id="memoryMiB" name="memoryMiB" type="number" min={minMemoryMiB} step={64} defaultValue={256} data-testid="field-memory" />
          <span className="hint">At least {minMemoryMiB} MiB for {image}.</span>
          {error("memoryMiB")}
        </div>
      </div>
      {formError && (
        <div className="error" role="alert" data-testid="create-error">
          {formError}
        </div>
      )}
      <div>
        <button className="primary" type="submit" disabled={create.isPending || project === null} data-testid="submit-create">
          {create.isPending && <span className="spinner" />}
          {create.isPending ? "Creating…" : "Create VM"}
        </button>
      </div>
    </form>
  );
}
