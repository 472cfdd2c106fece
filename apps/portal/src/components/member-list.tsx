"use client";
// The members of a project's organization with their roles. Owners and admins add people by
// email, change roles and remove members; only owners make or unmake owners (the portal refuses
// the rest with its own message).
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { type OrgRole, orgRoles, roleAtLeast } from "../server/access.ts";
import { useTRPC } from "../trpc/client.tsx";

export function MemberList({ organizationId, organizationName, role }: { organizationId: string; organizationName: string; role: OrgRole }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const members = useQuery(trpc.tenancy.members.queryOptions({ id: organizationId, limit: 100 }));
  const setMember = useMutation(trpc.tenancy.setMember.mutationOptions());
  const removeMember = useMutation(trpc.tenancy.removeMember.mutationOptions());
  const [problem, setProblem] = useState<string | null>(null);
  const manages = roleAtLeast(role, "admin");
  const grantable = orgRoles.filter((r) => r !== "owner" || role === "owner");

  async function change(work: () => Promise<unknown>) {
    setProblem(null);
    try {
      await work();
      await queryClient.invalidateQueries({ queryKey: trpc.tenancy.members.queryKey() });
    } catch (error) {
      setProblem(error instanceof Error ? error.message : "The change failed; try again.");
    }
  }

  async function add(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    await change(async () => {
      await setMember.mutateAsync({ id: organizationId, email: String(form.get("email") ?? ""), role: String(form.get("role")) as OrgRole });
      formElement.reset();
    });
  }

  return (
    <div className="panel" data-testid="members">
      <h2>Members of {organizationName}</h2>
      {problem && (
        <div className="error" role="alert" data-testid="member-error">
          {problem}
        </div>
      )}
      {members.isPending && <p className="muted">Loading members…</p>}
      {members.isError && <div className="error">Could not load the members: {members.error.message}</div>}
      {members.data && (
        <table className="table">
          <thead>
            <tr>
              <th>Person</th>
              <th>Role</th>
              <th>Member since</th>
              {manages && <th />}
            </tr>
          </thead>
          <tbody>
            {members.data.items.map((m) => (
              <tr key={m.userId} data-testid={`member-${m.email}`}>
                <td>
                  {m.email} <span className="muted">({m.name})</span>
                </td>
                <td>
                  {manages ? (
                    <select
                      aria-label={`Role of ${m.email}`}
                      value={m.role}
                      data-testid="member-role"
                      onChange={(event) => {
                        const next = event.target.value as OrgRole;
                        if (!window.confirm(`Make ${m.email} ${next === "admin" || next === "owner" ? "an" : "a"} ${next} of ${organizationName} (now ${m.role})?`)) return;
                        void change(() => setMember.mutateAsync({ id: organizationId, email: m.email, role: next }));
                      }}
                    >
                      {orgRoles.map((r) => (
                        <option key={r} value={r} disabled={!grantable.includes(r) && r !== m.role}>
                          {r}
                        </option>
                      ))}
                    </select>
                  ) : (
                    m.role
                  )}
                </td>
                <td>{new Date(m.since).toLocaleString()}</td>
                {manages && (
                  <td>
                    <button
                      type="button"
                      className="danger"
                      data-testid="member-remove"
                      onClick={() => {
                        if (!window.confirm(`Remove ${m.email} from ${organizationName}? Their access ends at once, open consoles included.`)) return;
                        void change(() => removeMember.mutateAsync({ id: organizationId, userId: m.userId }));
                      }}
                    >
                      Remove
                    </button>
                  </td>
                )}
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {manages && (
        <form className="inline-form" onSubmit={add} data-testid="member-add">
          <div className="field">
            <label htmlFor="member-email">Add a person by email</label>
            <input id="member-email" name="email" type="email" required placeholder="someone@example.com" data-testid="member-email" />
          </div>
          <div className="field">
            <label htmlFor="member-role">Role</label>
            <select id="member-role" name="role" defaultValue="member" data-testid="member-new-role">
              {grantable.map((r) => (
                <option key={r} value={r}>
                  {r}
                </option>
              ))}
            </select>
          </div>
          <button type="submit" className="primary" disabled={setMember.isPending} data-testid="member-add-submit">
            Add
          </button>
        </form>
      )}
      {!manages && <p className="muted">Owners and admins of {organizationName} manage its members; your role is {role}.</p>}
    </div>
  );
}
