"use client";
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import Link from "next/link";
import { useRouter } from "next/navigation";
import { useState } from "react";
import { useTRPC } from "../trpc/client.tsx";
import { refusalOf, vmActions, type VmAction } from "../server/vm-actions.ts";
import { formatBytes } from "./format.ts";
import { MigrateControl } from "./migrate-control.tsx";
import { SerialLog } from "./serial-log.tsx";
import { VmConsole } from "./vm-console.tsx";
import { isBusy, operationLabel, VmStateBadge } from "./vm-state.tsx";

const actionLabels: Record<VmAction, string> = {
  start: "Start",
  stop: "Stop",
  reboot: "Reboot",
  suspend: "Suspend",
  resume: "Resume",
  delete: "Delete",
};

export function VmDetail({ id }: { id: string }) {
  const trpc = useTRPC();
  const router = useRouter();
  const queryClient = useQueryClient();
  const vmQuery = useQuery(trpc.vm.get.queryOptions({ id }, { refetchInterval: 1000 }));
  const events = useQuery(trpc.vm.events.queryOptions({ id, limit: 20 }, { refetchInterval: 3000 }));
  const guestStates = useQuery(trpc.vm.guestStates.queryOptions({ id }, { refetchInterval: 3000 }));
  const [actionError, setActionError] = useState<string | null>(null);

  const mutations = {
    start: useMutation(trpc.vm.start.mutationOptions()),
    stop: useMutation(trpc.vm.stop.mutationOptions()),
    reboot: useMutation(trpc.vm.reboot.mutationOptions()),
    suspend: useMutation(trpc.vm.suspend.mutationOptions()),
    resume: useMutation(trpc.vm.resume.mutationOptions()),
    delete: useMutation(trpc.vm.delete.mutationOptions()),
  };

  if (vmQuery.isPending) return <div className="panel muted">Loading vm…</div>;
  if (vmQuery.isError) {
    return (
      <div className="error">
        {vmQuery.error.message} <Link href="/">Back to the list</Link>
      </div>
    );
  }
  const vm = vmQuery.data;
  const sending = Object.values(mutations).some((m) => m.isPending);
  const busy = isBusy(vm) || sending;

  async function run(action: VmAction) {
    if (action === "delete" && !window.confirm(`Delete vm ${vm.name} and its disk? This cannot be undone.`)) return;
    setActionError(null);
    try {
      const updated = await mutations[action].mutateAsync({ id });
      queryClient.setQueryData(trpc.vm.get.queryKey({ id }), updated);
      if (action === "delete") router.push("/");
    } catch (error) {
      setActionError(error instanceof Error ? error.message : `The ${action} request failed; try again.`);
    }
  }

  return (
    <>
      <div className="page-head">
        <div>
          <div className="muted" style={{ fontSize: 13 }}>
            <Link href="/">VMs</Link> /
          </div>
          <h1>{vm.name}</h1>
        </div>
        <VmStateBadge vm={vm} />
      </div>

      <div className="panel">
        <dl className="facts">
          <div>
            <dt>State</dt>
            <dd>
              {vm.state} <span className="muted">(wanted: {vm.desiredState})</span>
            </dd>
          </div>
          <div>
            <dt>Reason</dt>
            <dd data-testid="vm-state-reason">{vm.stateReason ?? "—"}</dd>
          </div>
          <div>
            <dt>Worker</dt>
            <dd className="mono" data-testid="vm-worker">
              {vm.workerId ?? "—"}
            </dd>
          </div>
          <div>
            <dt>Accelerator</dt>
            <dd data-testid="vm-accelerator">{vm.accelerator ?? "—"}</dd>
          </div>
          <div>
            <dt>Size</dt>
            <dd>
              {vm.vcpus} vCPU · {vm.memoryMiB} MiB
            </dd>
          </div>
          <div>
            <dt>Image / profile</dt>
            <dd>
              {vm.image} / {vm.profile}
            </dd>
          </div>
          <div>
            <dt>CPU model</dt>
            <dd className="mono">{vm.cpuModel}</dd>
          </div>
          <div>
            <dt>Created</dt>
            <dd>{new Date(vm.createdAt).toLocaleString()}</dd>
          </div>
        </dl>

        <div className="actions">
          {vmActions.map((action) => {
            const refusal = refusalOf(action, vm);
            const disabled = refusal !== null || (busy && action !== "stop" && action !== "delete") || sending;
            return (
              <button
                key={action}
                type="button"
                className={action === "delete" ? "danger" : action === "start" || action === "resume" ? "primary" : ""}
                disabled={disabled}
                title={refusal ?? undefined}
                onClick={() => run(action)}
                data-testid={`action-${action}`}
              >
                {mutations[action].isPending && <span className="spinner" />}
                {actionLabels[action]}
              </button>
            );
          })}
          {busy && (
            <span className="busy" data-testid="vm-busy">
              <span className="spinner" />
              {operationLabel(vm.operation)}
              {vm.progress && vm.progress.total > 0 && (
                <>
                  <span className="progress" data-testid="vm-progress">
                    <div style={{ width: `${Math.min(100, (vm.progress.done / vm.progress.total) * 100)}%` }} />
                  </span>
                  {Math.round((vm.progress.done / vm.progress.total) * 100)}%{" "}
                  <span className="muted" data-testid="vm-progress-bytes">
                    ({formatBytes(vm.progress.done)} of {formatBytes(vm.progress.total)})
                  </span>
                </>
              )}
            </span>
          )}
        </div>
        {actionError && (
          <div className="error" role="alert" data-testid="action-error">
            {actionError}
          </div>
        )}
        <MigrateControl vm={vm} />
      </div>

      <div className="panel">
        <h2>Console</h2>
        {/* A live migration keeps the console open: the gateway moves it with the vm. */}
        <VmConsole vmId={vm.id} running={vm.state === "running" || vm.state === "migrating"} />
      </div>

      <div className="panel">
        <h2>Serial log</h2>
        <SerialLog vmId={vm.id} />
      </div>

      <div className="panel" data-testid="guest-states">
        <h2>Guest states</h2>
        {guestStates.data && guestStates.data.items.length > 0 ? (
          <ul className="events">
            {guestStates.data.items.map((state) => (
              <li key={state.id} data-testid="guest-state">
                <span className="muted">{new Date(state.createdAt).toLocaleString()}</span>
                <span className="mono">{formatBytes(state.storedBytes)}</span>
                <span>
                  saved on {state.workerId} ({state.accelerator}, {state.cpuModel}){state.current ? " · resumes from this one" : ""}
                </span>
              </li>
            ))}
          </ul>
        ) : (
          <p className="muted">None: suspending the vm saves one.</p>
        )}
      </div>

      <div className="panel">
        <h2>Events</h2>
        {events.data && events.data.items.length > 0 ? (
          <ul className="events">
            {events.data.items.map((event, index) => (
              <li key={`${event.at}-${index}`}>
                <span className="muted">{new Date(event.at).toLocaleString()}</span>
                <span className="mono">{event.kind}</span>
                <span>{event.message}</span>
              </li>
            ))}
          </ul>
        ) : (
          <p className="muted">No events yet.</p>
        )}
      </div>
    </>
  );
}
