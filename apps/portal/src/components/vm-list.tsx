"use client";
import { useQuery } from "@tanstack/react-query";
import Link from "next/link";
import { useTRPC } from "../trpc/client.tsx";
import { VmStateBadge } from "./vm-state.tsx";

export function VmList() {
  const trpc = useTRPC();
  const vms = useQuery(trpc.vm.list.queryOptions({ limit: 100 }, { refetchInterval: 1000 }));
  if (vms.isPending) return <div className="panel muted">Loading vms…</div>;
  if (vms.isError) return <div className="error">Could not load vms: {vms.error.message}</div>;
  if (vms.data.items.length === 0) {
    return (
      <div className="panel empty">
        No vms yet. <Link href="/vms/new">Create one</Link>.
      </div>
    );
  }
  return (
    <div className="panel" style={{ padding: 0 }}>
      <table className="vms">
        <thead>
          <tr>
            <th>Name</th>
            <th>State</th>
            <th>Worker</th>
            <th>Accelerator</th>
            <th>vCPUs / memory</th>
            <th>Image</th>
          </tr>
        </thead>
        <tbody>
          {vms.data.items.map((vm) => (
            <tr key={vm.id} data-testid={`vm-row-${vm.name}`}>
              <td>
                <Link href={`/vms/${vm.id}`}>{vm.name}</Link>
              </td>
              <td>
                <VmStateBadge vm={vm} />
              </td>
              <td className="mono">{vm.workerId ?? "—"}</td>
              <td>{vm.accelerator ?? "—"}</td>
              <td>
                {vm.vcpus} vCPU · {vm.memoryMiB} MiB
              </td>
              <td>
                {vm.image} <span className="muted">({vm.profile})</span>
              </td>
            </tr>
          ))}
        </tbody>
      </table>
      {vms.data.nextCursor && <p className="muted" style={{ padding: "0 12px" }}>Showing the newest 100 vms.</p>}
    </div>
  );
}
