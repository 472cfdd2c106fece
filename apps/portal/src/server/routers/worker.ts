import { z } from "zod";
import { requireOperator } from "../access.ts";
import { authedProcedure, createTRPCRouter } from "../trpc.ts";

const workerView = z.object({
  id: z.string(),
  hostname: z.string(),
  status: z.string(),
  accelerator: z.string(),
  vcpusTotal: z.number().int(),
  vcpusFree: z.number().int(),
  memoryMiBTotal: z.number().int(),
  memoryMiBFree: z.number().int(),
  cpuModelName: z.string(),
  qemuVersion: z.string(),
  lastHeartbeatAt: z.string(),
  /** the storage its vm disks are on; workers sharing it can live-migrate between them */
  sharedStorage: z.string().nullable(),
  /** vms with a live guest there (what a drain still has to move) */
  vmsRunning: z.number().int(),
});

export const workerRouter = createTRPCRouter({
  list: authedProcedure
    .meta({ openapi: { method: "GET", path: "/workers", protect: true, tags: ["workers"], summary: "Registered workers and their free capacity" } })
    .input(z.strictObject({}).default({}))
    .output(z.object({ items: z.array(workerView) }))
    .query(async ({ ctx }) => {
      // Workers and their vm counts span every tenant: an operator's view.
      requireOperator(ctx.viewer, "list workers");
      const rows = await ctx.services.db.worker.findMany({ orderBy: { id: "asc" } });
      const running = await ctx.services.db.vm.groupBy({ by: ["workerId"], where: { state: { in: ["running", "migrating", "booting", "rebooting"] } }, _count: true });
      return {
        items: rows.map((w) => ({
          id: w.id,
          hostname: w.hostname,
          status: w.status,
          accelerator: w.accelerator,
          vcpusTotal: w.vcpusTotal,
          vcpusFree: w.vcpusFree,
          memoryMiBTotal: w.memoryMiBTotal,
          memoryMiBFree: w.memoryMiBFree,
          cpuModelName: w.cpuModelName,
          qemuVersion: w.qemuVersion,
          lastHeartbeatAt: w.lastHeartbeatAt.toISOString(),
          sharedStorage: w.sharedStorage,
          vmsRunning: running.find((r) => r.workerId === w.id)?._count ?? 0,
        })),
      };
    }),
});
