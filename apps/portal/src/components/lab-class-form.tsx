"use client";
// The instructor's "new class" form: a template (and version) of the chosen project, the
// schedule, the limits, the roster by email and/or a join code, and what to do when the
// cluster cannot host everyone at start.
import { useMutation, useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState, type FormEvent } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { toLocalInput } from "./lab-time.tsx";
import { useProject } from "./project-context.tsx";

interface FerryErrorData {
  ferry?: { code: string; message: string; details?: { issues?: { path: (string | number)[]; message: string }[] } };
}

/** The addresses in a pasted roster: one per line, or separated by commas, semicolons or spaces. */
function rosterEmails(text: string): string[] {
  return [...new Set(text.split(/[\s,;]+/).map((e) => e.trim().toLowerCase()).filter((e) => e !== ""))];
}

export function LabClassForm() {
  const trpc = useTRPC();
  const router = useRouter();
  const { project, organizationName } = useProject();
  const templates = useQuery(trpc.lab.list.queryOptions({ projectId: project?.id ?? "", limit: 100 }, { enabled: project !== null }));
  const create = useMutation(trpc.labClass.create.mutationOptions());
  const [templateId, setTemplateId] = useState("");
  const [withJoinCode, setWithJoinCode] = useState(true);
  const [fieldErrors, setFieldErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [defaults] = useState(() => {
    const now = new Date();
    return { opensAt: toLocalInput(now), closesAt: toLocalInput(new Date(now.getTime() + 3 * 3600_000)) };
  });

  if (project === null) return <p className="muted">You are in no project yet: ask an organization owner or admin to add you.</p>;
  if (templates.isPending) return <p className="muted">Loading the lab templates…</p>;
  if (templates.isError) return <div className="error">Could not load the lab templates: {templates.error.message}</div>;
  const usable = templates.data.items.filter((t) => t.versions.some((v) => v.status === "ready"));
  if (usable.length === 0) {
    return (
      <p className="muted" data-testid="class-no-templates">
        Project {project.name} has no published lab template yet. Open a running vm, prepare it for the lab and publish it as a template (POST /api/v1/templates {"{vmId, name}"}),
        then come back. <Link href="/">Your vms</Link>
      </p>
    );
  }
  const template = usable.find((t) => t.id === templateId) ?? usable[0]!;
  const readyVersions = template.versions.filter((v) => v.status === "ready");

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const form = new FormData(event.currentTarget);
    setFieldErrors({});
    setFormError(null);
    const version = String(form.get("version") ?? "");
    const emails = rosterEmails(String(form.get("emails") ?? ""));
    const opensAt = new Date(String(form.get("opensAt")));
    const closesAt = new Date(String(form.get("closesAt")));
    const joinCodeExpiresAt = new Date(String(form.get("joinCodeExpiresAt") ?? ""));
    const local: Record<string, string> = {};
    if (Number.isNaN(opensAt.getTime())) local.opensAt = "Give the date and time the class opens.";
    if (Number.isNaN(closesAt.getTime())) local.closesAt = "Give the date and time the class closes.";
    if (withJoinCode && Number.isNaN(joinCodeExpiresAt.getTime())) local.joinCode = "Give the date and time the join code expires.";
    if (Object.keys(local).length > 0) {
      setFieldErrors(local);
      return;
    }
    try {
      const created = await create.mutateAsync({
        projectId: project!.id,
        templateId: template.id,
        ...(version !== "" ? { version: Number(version) } : {}),
        name: String(form.get("name") ?? ""),
        instructions: String(form.get("instructions") ?? ""),
        opensAt: opensAt.toISOString(),
        closesAt: closesAt.toISOString(),
        sessionMinutes: Number(form.get("sessionMinutes")),
        totalMinutes: Number(form.get("totalMinutes")),
        ...(emails.length > 0 ? { emails } : {}),
        ...(withJoinCode ? { joinCode: { expiresAt: joinCodeExpiresAt.toISOString() } } : {}),
        whenFull: form.get("whenFull") === "queue" ? "queue" : "refuse",
      });
      router.push(`/classes/${created.id}`);
    } catch (error) {
      const ferry = (error as { data?: FerryErrorData }).data?.ferry;
      if (!ferry) {
        setFormError(error instanceof Error ? error.message : "The class could not be created; try again.");
        return;
      }
      const byField: Record<string, string> = {};
      for (const issue of ferry.details?.issues ?? []) {
        const field = issue.path[0];
        if (field !== undefined) byField[String(field)] = issue.message;
      }
      setFieldErrors(byField);
      if (Object.keys(byField).length === 0) setFormError(ferry.message);
    }
  }

  const error = (field: string) =>
    fieldErrors[field] && (
      <span className="field-error" data-testid={`class-error-${field}`}>
        {fieldErrors[field]}
      </span>
    );

  return (
    <form className="form" onSubmit={submit} noValidate>
      <p className="muted" style={{ margin: 0 }}>
        In project {organizationName(project.organizationId)} / {project.name}; the students&apos; vms are made there and count against its quota.
      </p>
      <div className="field">
        <label htmlFor="class-name">Name</label>
        <input id="class-name" name="name" placeholder="networking-101" maxLength={63} required data-testid="class-field-name" />
        {error("name")}
      </div>
      <div className="row">
        <div className="field">
          <label htmlFor="class-template">Lab template</label>
          <select id="class-template" value={template.id} onChange={(e) => setTemplateId(e.target.value)} data-testid="class-field-template">
            {usable.map((t) => (
              <option key={t.id} value={t.id}>
                {t.name}
              </option>
            ))}
          </select>
          {error("templateId")}
        </div>
        <div className="field">
          <label htmlFor="class-version">Version</label>
          <select id="class-version" name="version" key={template.id} defaultValue="" data-testid="class-field-version">
            <option value="">newest ready (v{readyVersions[0]!.version})</option>
            {readyVersions.map((v) => (
              <option key={v.id} value={v.version}>
                v{v.version} · {v.publishedAt ? new Date(v.publishedAt).toLocaleString() : "—"}
              </option>
            ))}
          </select>
          <span className="hint">The class keeps this version even when the template is published again.</span>
          {error("version")}
        </div>
      </div>
      <div className="field">
        <label htmlFor="class-instructions">Instructions (Markdown)</label>
        <textarea id="class-instructions" name="instructions" rows={6} placeholder={"# Lab 1\n\n1. Open a shell\n2. Run `ip addr`"} data-testid="class-field-instructions" />
        <span className="hint">Shown beside each student&apos;s console. HTML is not rendered.</span>
        {error("instructions")}
      </div>
      <div className="row">
        <div className="field">
          <label htmlFor="class-opens">Opens at</label>
          <input id="class-opens" name="opensAt" type="datetime-local" defaultValue={defaults.opensAt} data-testid="class-field-opens" />
          {error("opensAt")}
        </div>
        <div className="field">
          <label htmlFor="class-closes">Closes at</label>
          <input id="class-closes" name="closesAt" type="datetime-local" defaultValue={defaults.closesAt} data-testid="class-field-closes" />
          {error("closesAt")}
        </div>
      </div>
      <div className="row">
        <div className="field">
          <label htmlFor="class-session">Minutes per session</label>
          <input id="class-session" name="sessionMinutes" type="number" min={1} defaultValue={60} data-testid="class-field-session" />
          <span className="hint">A student&apos;s vm is suspended after this long; they resume where they were.</span>
          {error("sessionMinutes")}
        </div>
        <div className="field">
          <label htmlFor="class-total">Minutes in all, per student</label>
          <input id="class-total" name="totalMinutes" type="number" min={1} defaultValue={120} data-testid="class-field-total" />
          {error("totalMinutes")}
        </div>
      </div>
      <div className="field">
        <label htmlFor="class-emails">Roster</label>
        <textarea id="class-emails" name="emails" rows={4} placeholder={"ada@example.com\ngrace@example.com"} data-testid="class-field-emails" />
        <span className="hint">Email addresses, one per line (or separated by commas). Each gets a seat; they see it under Labs once they sign in.</span>
        {error("emails")}
      </div>
      <fieldset className="checks">
        <legend>Join code</legend>
        <label>
          <input type="checkbox" checked={withJoinCode} onChange={(e) => setWithJoinCode(e.target.checked)} data-testid="class-field-join-code" />
          Students may also join with a code
        </label>
        {withJoinCode && (
          <div className="field">
            <label htmlFor="class-code-expires">The code expires at</label>
            <input id="class-code-expires" name="joinCodeExpiresAt" type="datetime-local" defaultValue={defaults.closesAt} data-testid="class-field-join-code-expires" />
            {error("joinCode")}
          </div>
        )}
      </fieldset>
      <div className="field">
        <label htmlFor="class-when-full">When the cluster cannot host every student at start</label>
        <select id="class-when-full" name="whenFull" defaultValue="refuse" data-testid="class-field-when-full">
          <option value="refuse">refuse to start, with the numbers</option>
          <option value="queue">start, and queue the vms that do not fit until there is room</option>
        </select>
        {error("whenFull")}
      </div>
      {formError && (
        <div className="error" role="alert" data-testid="class-create-error">
          {formError}
        </div>
      )}
      <div>
        <button className="primary" type="submit" disabled={create.isPending} data-testid="class-submit">
          {create.isPending && <span className="spinner" />}
          {create.isPending ? "Creating…" : "Create class"}
        </button>
      </div>
    </form>
  );
}
