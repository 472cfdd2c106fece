"use client";
// The workers page: each worker's capacity, shared storage and guests, with Drain (live-migrate
// every guest away and take the worker out of placement) and Activate (back into placement).
import { useMutation, useQuery } from "@tanstack/react-query";
import { useState } from "react";

import { useTRPC } from "../trpc/client.tsx";

export function WorkerList() {
  const trpc = useTRPC();
  const workers = useQuery(trpc.worker.list.queryOptions({}, { refetchInterval: 1000 }));
  const drain = useMutation(trpc.migration.drain.mutationOptions());
  const activate = useMutation(trpc.migration.activate.mutationOptions());
  const [problem, setProblem] = useState<string | null>(null);

  async function act(kind: "drain" | "activate", id: string) {
    setProblem(null);
    try {
      await (kind === "drain" ? drain : activate).mutateAsync({ id });
      await workers.refetch();
    } catch (error) {
      setProblem(error instanceof Error ? error.message : `The ${kind} request failed; try again.`);
    }
  }

  if (workers.isPending) return <div className="panel muted">Loading workers…</div>;
  if (workers.isError) return <div className="error">{workers.error.message}</div>;
  return (
    <>
      <div className="page-head">
        <h1>Workers</h1>
      </div>
      {problem && (
        <div className="error" role="alert" data-testid="worker-error">
          {problem}
        </div>
      )}
      <div className="panel">
        <table className="table">
          <thead>
            <tr>
              <th>Worker</th>
              <th>Status</th>
              <th>Free</th>
              <th>Shared storage</th>
              <th>Guests</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {workers.data.items.map((w) => (
              <tr key={w.id} data-testid={`worker-${w.id}`}>
                <td className="mono">
                  {w.id} <span className="muted">({w.hostname}, {w.accelerator})</span>
                </td>
                <td data-testid="worker-status">
                  {w.status}
                  {w.status === "draining" && (
                    <span className="muted" data-testid="drain-progress">
                      {" "}
                      {w.vmsRunning === 0 ? "· drained: no guests left" : `· moving ${w.vmsRunning} guest${w.vmsRunning === 1 ? "" : "s"} away…`}
                    </span>
                  )}
                </td>
                <td>
                  {w.vcpusFree}/{w.vcpusTotal} vCPU · {w.memoryMiBFree}/{w.memoryMiBTotal} MiB
                </td>
                <td className="mono">{w.sharedStorage ?? "local disks"}</td>
                <td data-testid="worker-vms">{w.vmsRunning}</td>
                <td>
                  {w.status === "online" && (
                    <button type="button" onClick={() => void act("drain", w.id)} data-testid="worker-drain">
                      Drain
                    </button>
                  )}
                  {w.status === "draining" && (
                    <button type="button" onClick={() => void act("activate", w.id)} data-testid="worker-activate">
                      Activate
                    </button>
                  )}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
    </>
  );
}
