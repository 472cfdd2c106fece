"use client";
// The Migrate action on a vm's page: choose a target worker (or let the controller pick),
// then follow the move; targets the engine's rules refuse are listed with the reason.
import { useMutation, useQuery, useQueryClient } from "@tanstack/react-query";
import { useState } from "react";

import type { VmView } from "../server/routers/vm.ts";
import { useTRPC } from "../trpc/client.tsx";

export function MigrateControl({ vm }: { vm: VmView }) {
  const trpc = useTRPC();
  const queryClient = useQueryClient();
  const running = vm.state === "running" && vm.desiredState === "running" && vm.operation === null;
  const targets = useQuery(trpc.migration.targets.queryOptions({ id: vm.id }, { enabled: running, refetchInterval: 5000 }));
  const migrate = useMutation(trpc.migration.migrate.mutationOptions());
  const [target, setTarget] = useState("");
  const [problem, setProblem] = useState<string | null>(null);

  if (vm.state === "migrating") {
    return (
      <div className="busy" data-testid="migration-progress">
        <span className="spinner" />
        Live-migrating from {vm.workerId} to {vm.targetWorkerId ?? "the best compatible worker"}… the console stays connected.
      </div>
    );
  }
  if (!running) return null;

  async function start() {
    setProblem(null);
    try {
      const updated = await migrate.mutateAsync({ id: vm.id, ...(target ? { workerId: target } : {}) });
      queryClient.setQueryData(trpc.vm.get.queryKey({ id: vm.id }), updated);
    } catch (error) {
      setProblem(error instanceof Error ? error.message : "The migration request failed; try again.");
    }
  }

  const items = targets.data?.items ?? [];
  return (
    <div className="actions" data-testid="migrate-control">
      <select value={target} onChange={(e) => setTarget(e.target.value)} data-testid="migrate-target" aria-label="Migration target">
        <option value="">Any compatible worker</option>
        {items.map((item) => (
          <option key={item.workerId} value={item.workerId} disabled={!item.ok} title={item.reason ?? undefined}>
            {item.workerId}
            {item.ok ? "" : " (not possible)"}
          </option>
        ))}
      </select>
      <button type="button" disabled={migrate.isPending} onClick={() => void start()} data-testid="action-migrate">
        {migrate.isPending && <span className="spinner" />}
        Migrate
      </button>
      {problem && (
        <span className="error" role="alert" data-testid="migrate-error">
          {problem}
        </span>
      )}
    </div>
  );
}
