// Idempotency-Key for creates: a program that retries `POST /vms` after a timeout gets the vm
// its first request made, never a second one. The key's record is inserted in the same
// transaction as the vm, so a concurrent retry waits on the key's row and then finds the vm.
import { createHash } from "node:crypto";
import { Prisma, type Vm } from "@ferry/db";
import { PortalError } from "./errors.ts";
import type { PortalContext, Viewer } from "./trpc.ts";

/** How long a key is remembered. */
const keepMs = 24 * 60 * 60 * 1000;
const keyPattern = /^[\x21-\x7e]{1,255}$/;

export async function createOnce(
  ctx: PortalContext & { viewer: Viewer },
  input: unknown,
  create: (tx: Prisma.TransactionClient) => Promise<Vm>,
): Promise<Vm> {
  const { db } = ctx.services;
  const key = ctx.idempotencyKey ?? null;
  if (key === null) return db.$transaction(create);
  if (!keyPattern.test(key)) {
    throw new PortalError("invalid_input", "the Idempotency-Key header must be 1-255 visible ASCII characters, e.g. a UUID", { header: "Idempotency-Key" });
  }
  // A token's keys and its person's browser keys are separate spaces; so are two tokens'.
  const principal = ctx.viewer.token ? `token:${ctx.viewer.token.id}` : `user:${ctx.viewer.id}`;
  const requestHash = createHash("sha256").update(JSON.stringify(input)).digest("hex");
  try {
    return await db.$transaction(async (tx) => {
      await tx.idempotencyRecord.deleteMany({ where: { principal, key, createdAt: { lt: new Date(Date.now() - keepMs) } } });
      await tx.idempotencyRecord.create({ data: { principal, key, requestHash } });
      const vm = await create(tx);
      await tx.idempotencyRecord.update({ where: { principal_key: { principal, key } }, data: { response: { vmId: vm.id }, status: 201 } });
      return vm;
    });
  } catch (error) {
    if (!(error instanceof Prisma.PrismaClientKnownRequestError && error.code === "P2002")) throw error;
  }
  const record = await db.idempotencyRecord.findUnique({ where: { principal_key: { principal, key } } });
  if (record === null) {
    throw new PortalError("idempotency_in_progress", `a request with Idempotency-Key "${key}" is being handled; retry in a moment`, { key });
  }
  if (record.requestHash !== requestHash) {
    throw new PortalError("idempotency_key_reused", `Idempotency-Key "${key}" was used for a different request body; use a new key for a new vm`, { key });
  }
  const vmId = (record.response as { vmId?: string } | null)?.vmId;
  const vm = vmId ? await db.vm.findUnique({ where: { id: vmId } }) : null;
  if (vm === null) throw new PortalError("idempotency_in_progress", `a request with Idempotency-Key "${key}" is being handled; retry in a moment`, { key });
  return vm;
}
