// Project quotas. A check and the change it allows happen in one transaction that first locks
// the project's row, so concurrent creates and resumes of one project queue behind each other
// and none can see room another is about to take.
import { Prisma, type Project } from "@ferry/db";
import { PortalError } from "./errors.ts";

export interface ProjectQuota {
  vcpus: number;
  memoryMiB: number;
  vms: number;
  stateBytes: bigint;
}

export function quotaColumns(quota: ProjectQuota) {
  return { quotaVcpus: quota.vcpus, quotaMemoryMiB: quota.memoryMiB, quotaVms: quota.vms, quotaStateBytes: quota.stateBytes };
}

export interface QuotaUsage {
  /** vCPUs and memory of the vms wanted running */
  vcpus: number;
  memoryMiB: number;
  /** vms that exist (not deleted) */
  vms: number;
  /** bytes of the project's stored guest states */
  stateBytes: bigint;
}

/** What a project's vms hold now, read inside `tx` (after `lockProject` for a check that must hold). */
export async function usageOf(tx: Prisma.TransactionClient, projectId: string, exceptVmId?: string): Promise<QuotaUsage> {
  return (await usagesOf(tx, [projectId], exceptVmId)).get(projectId) ?? noUsage;
}

const noUsage: QuotaUsage = { vms: 0, vcpus: 0, memoryMiB: 0, stateBytes: 0n };

/** `usageOf` for many projects at once: the same three queries, grouped by project (a list page of projects used to take three per project). */
export async function usagesOf(tx: Prisma.TransactionClient, projectIds: string[], exceptVmId?: string): Promise<Map<string, QuotaUsage>> {
  if (projectIds.length === 0) return new Map();
  const live = { projectId: { in: projectIds }, deletedAt: null, state: { not: "deleted" } };
  const [all, running, states] = await Promise.all([
    tx.vm.groupBy({ by: ["projectId"], where: live, _count: { _all: true } }),
    tx.vm.groupBy({ by: ["projectId"], where: { ...live, desiredState: "running", ...(exceptVmId ? { id: { not: exceptVmId } } : {}) }, _sum: { vcpus: true, memoryMiB: true } }),
    tx.$queryRaw<{ projectId: string; storedBytes: bigint }[]>`
      SELECT vm."projectId", sum(g."storedBytes")::bigint AS "storedBytes" FROM guest_state g JOIN vm ON vm.id = g."vmId"
      WHERE vm."projectId" IN (${Prisma.join(projectIds)}) GROUP BY vm."projectId"`,
  ]);
  const usages = new Map(projectIds.map((id) => [id, { ...noUsage }]));
  for (const row of all) usages.get(row.projectId)!.vms = row._count._all;
  for (const row of running) Object.assign(usages.get(row.projectId)!, { vcpus: row._sum.vcpus ?? 0, memoryMiB: row._sum.memoryMiB ?? 0 });
  for (const row of states) usages.get(row.projectId)!.stateBytes = BigInt(row.storedBytes);
  return usages;
}

/** Take the project's row lock for the rest of the transaction. */
export async function lockProject(tx: Prisma.TransactionClient, projectId: string): Promise<void> {
  await tx.$queryRaw`SELECT "id" FROM "project" WHERE "id" = ${projectId} FOR UPDATE`;
}

/**
 * Refuse with `quota_exceeded` if adding `request` to the project would pass a limit. Call
 * inside the transaction that makes the change, after `lockProject`.
 */
export async function checkQuota(
  tx: Prisma.TransactionClient,
  project: Pick<Project, "id" | "name" | "quotaVcpus" | "quotaMemoryMiB" | "quotaVms" | "quotaStateBytes">,
  request: { vms?: number; vcpus?: number; memoryMiB?: number; storesState?: boolean },
  exceptVmId?: string,
): Promise<void> {
  const used = await usageOf(tx, project.id, exceptVmId);
  const over: { resource: string; limit: number; used: number; requested: number }[] = [];
  if (request.vms && used.vms + request.vms > project.quotaVms) over.push({ resource: "vms", limit: project.quotaVms, used: used.vms, requested: request.vms });
  if (request.vcpus && used.vcpus + request.vcpus > project.quotaVcpus) over.push({ resource: "vcpus", limit: project.quotaVcpus, used: used.vcpus, requested: request.vcpus });
  if (request.memoryMiB && used.memoryMiB + request.memoryMiB > project.quotaMemoryMiB) {
    over.push({ resource: "memoryMiB", limit: project.quotaMemoryMiB, used: used.memoryMiB, requested: request.memoryMiB });
  }
  // A guest state's size is known only once it is stored, so a suspend is refused when the
  // project is already at its limit (it may pass it by one state).
  if (request.storesState && used.stateBytes >= project.quotaStateBytes) {
    over.push({ resource: "stateBytes", limit: Number(project.quotaStateBytes), used: Number(used.stateBytes), requested: 0 });
  }
  if (over.length > 0) {
    const said = over.map((o) => `${o.resource}: ${o.used} used + ${o.requested} asked > ${o.limit} allowed`).join("; ");
    throw new PortalError("quota_exceeded", `project ${project.name} is over its quota (${said}); stop, suspend or delete vms, or ask a cluster admin for more`, { over });
  }
}
