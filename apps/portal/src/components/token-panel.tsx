"use client";
// A project's API tokens. A new token is shown once, right after it is made: the portal keeps
// only its hash. Scopes on offer are those the person's role allows.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState, type FormEvent } from "react";
import { type TokenScope, scopesAllowed } from "../server/access.ts";
import { useTRPC } from "../trpc/client.tsx";
import { type ProjectView, useProject } from "./project-context.tsx";

const scopeHints: Record<TokenScope, string> = {
  "vms:read": "see vms, their logs and events",
  "vms:write": "create, start, stop, suspend and delete vms",
  console: "open vm consoles",
  "project:admin": "manage the project's tokens",
  "cluster:admin": "operate workers and every project",
};

function tokenStatus(token: { revokedAt: string | null; expiresAt: string | null }, now: number): string {
  if (token.revokedAt !== null) return `revoked ${new Date(token.revokedAt).toLocaleString()}`;
  if (token.expiresAt !== null && Date.parse(token.expiresAt) <= now) return "expired";
  return "active";
}

export function TokenPanel({ project }: { project: ProjectView }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const { clusterAdmin } = useProject();
  const tokens = useQuery(trpc.token.list.queryOptions({ projectId: project.id, limit: 100 }, { refetchInterval: 10_000 }));
  // Owners and admins see everyone's tokens: name who made each.
  const members = useQuery(trpc.tenancy.members.queryOptions({ id: project.organizationId, limit: 100 }));
  const madeBy = (userId: string) => members.data?.items.find((m) => m.userId === userId)?.email ?? userId;
  const create = useMutation(trpc.token.create.mutationOptions());
  const revoke = useMutation(trpc.token.revoke.mutationOptions());
  const [problem, setProblem] = useState<string | null>(null);
  const [made, setMade] = useState<{ name: string; token: string } | null>(null);
  const [copied, setCopied] = useState(false);
  const allowed = scopesAllowed(project.role, clusterAdmin);

  async function refresh() {
    await queryClient.invalidateQueries({ queryKey: trpc.token.list.queryKey() });
  }

  async function submit(event: FormEvent<HTMLFormElement>) {
    event.preventDefault();
    const formElement = event.currentTarget;
    const form = new FormData(formElement);
    setProblem(null);
    setCopied(false);
    try {
      const created = await create.mutateAsync({
        projectId: project.id,
        name: String(form.get("name") ?? ""),
        scopes: form.getAll("scopes").map(String) as TokenScope[],
        expiresInDays: Number(form.get("expiresInDays")),
      });
      setMade({ name: created.name, token: created.token });
      formElement.reset();
      await refresh();
    } catch (error) {
      setProblem(error instanceof Error ? error.message : "The token could not be made; try again.");
    }
  }

  async function revokeToken(token: { id: string; name: string }) {
    if (!window.confirm(`Revoke API token ${token.name}? Programs using it are refused at once and its open consoles close.`)) return;
    setProblem(null);
    try {
      await revoke.mutateAsync({ id: token.id });
      await refresh();
    } catch (error) {
      setProblem(error instanceof Error ? error.message : "The token could not be revoked; try again.");
    }
  }

  const now = Date.now();
  return (
    <div className="panel" data-testid="tokens">
      <h2>API tokens</h2>
      {made && (
        <div className="token-once" role="status" data-testid="token-once">
          <strong>Token {made.name}: copy it now.</strong> Ferry keeps only its hash and will not show it again. Anyone holding it acts as you in this
          project, within its scopes.
          <div className="token-value">
            <input readOnly value={made.token} aria-label="The new API token" data-testid="token-once-value" onFocus={(event) => event.currentTarget.select()} />
            <button
              type="button"
              data-testid="token-copy"
              onClick={() => {
                void navigator.clipboard.writeText(made.token).then(
                  () => setCopied(true),
                  () => setProblem("The browser refused to copy; select the token and copy it by hand."),
                );
              }}
            >
              {copied ? "Copied" : "Copy"}
            </button>
            <button type="button" className="primary" data-testid="token-once-done" onClick={() => setMade(null)}>
              I have copied it
            </button>
          </div>
        </div>
      )}
      {problem && (
        <div className="error" role="alert" data-testid="token-error">
          {problem}
        </div>
      )}
      {tokens.isPending && <p className="muted">Loading tokens…</p>}
      {tokens.isError && <div className="error">Could not load the tokens: {tokens.error.message}</div>}
      {tokens.data && tokens.data.items.length === 0 && <p className="muted">No API tokens in this project yet.</p>}
      {tokens.data && tokens.data.items.length > 0 && (
        <table className="table">
          <thead>
            <tr>
              <th>Name</th>
              <th>Scopes</th>
              <th>Made by</th>
              <th>Created</th>
              <th>Last used</th>
              <th>Expires</th>
              <th>Status</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {tokens.data.items.map((t) => (
              <tr key={t.id} data-testid={`token-${t.name}`}>
                <td>{t.name}</td>
                <td className="mono">{t.scopes.join(" ")}</td>
                <td>{madeBy(t.userId)}</td>
                <td>{new Date(t.createdAt).toLocaleString()}</td>
                <td>{t.lastUsedAt ? new Date(t.lastUsedAt).toLocaleString() : "never"}</td>
                <td>{t.expiresAt ? new Date(t.expiresAt).toLocaleDateString() : "never"}</td>
                <td data-testid="token-status">{tokenStatus(t, now)}</td>
                <td>
                  {t.revokedAt === null && (
                    <button type="button" className="danger" data-testid="token-revoke" disabled={revoke.isPending} onClick={() => void revokeToken(t)}>
                      Revoke
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <form className="form" onSubmit={submit} noValidate data-testid="token-create" style={{ marginTop: 18 }}>
        <h3>New token</h3>
        <div className="row">
          <div className="field">
            <label htmlFor="token-name">Name</label>
            <input id="token-name" name="name" maxLength={63} required placeholder="ci-deploy" data-testid="token-name" />
          </div>
          <div className="field">
            <label htmlFor="token-expiry">Expires after (days)</label>
            <input id="token-expiry" name="expiresInDays" type="number" min={1} max={365} defaultValue={90} data-testid="token-expiry" />
          </div>
        </div>
        <fieldset className="checks">
          <legend>Scopes</legend>
          {allowed.map((scope) => (
            <label key={scope}>
              <input type="checkbox" name="scopes" value={scope} defaultChecked={scope === "vms:read"} data-testid={`token-scope-${scope}`} />
              <span className="mono">{scope}</span> <span className="muted">— {scopeHints[scope]}</span>
            </label>
          ))}
          <span className="hint">As {project.role}{clusterAdmin ? " and cluster admin" : ""} you may give these scopes.</span>
        </fieldset>
        <div>
          <button type="submit" className="primary" disabled={create.isPending} data-testid="token-create-submit">
            {create.isPending && <span className="spinner" />}
            Create token
          </button>
        </div>
      </form>
    </div>
  );
}
