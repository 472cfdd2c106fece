// Lab golden points: a template version's copy of the guest state it was published from, and
// where a vm.resume continues from (the vm's own guest state, or a clone's golden point).
//
// A golden point is stored under the version's own name (guest-states/lab-<versionId>/…),
// never under a vm's: a vm's keep-last-N pruning and its deletion only touch
// guest-states/<vmId>/, so the golden point outlives both. The copy is read through the
// verifying reader (signature, every part's sha256) and signed afresh, so a damaged state is
// never published; its streams keep their bytes, so the engine manifest inside still holds.
import type { Db } from "@ferry/db";
import type { RestoreOptions } from "@ferry/engine";
import type { PublishRequest } from "@ferry/jobs";
import { type GuestStateRef, type GuestStateStore, isStorageError } from "@ferry/storage";

import { type GuestStateMetadata, guestStateMetadata } from "./guest-state-store.ts";

/** The name a template version's golden point is stored under in place of a vm id. */
export function goldenPointOwner(versionId: string): string {
  return `lab-${versionId}`;
}

/** A golden point in storage: its state id, its size and what it was saved under. */
export interface GoldenPoint {
  stateId: string;
  storedBytes: number;
  metadata: GuestStateMetadata;
}

/**
 * Copy the vm's guest state `request.stateId` as the golden point of `request.versionId`. A
 * golden point already committed (a redelivered job) is returned as it is.
 */
export async function copyGoldenPoint(store: GuestStateStore, vmId: string, request: PublishRequest): Promise<GoldenPoint> {
  const ref: GuestStateRef = { vmId: goldenPointOwner(request.versionId), stateId: request.stateId };
  try {
    const existing = await store.open(ref);
    return goldenPoint(ref, existing.metadata, existing.streams.reduce((sum, stream) => sum + stream.storedBytes, 0));
  } catch (error) {
    if (!isStorageError(error, "not_found") && !isStorageError(error, "incomplete")) throw error;
  }
  const source = await store.open({ vmId, stateId: request.stateId });
  const metadata = goldenPoint({ vmId, stateId: request.stateId }, source.metadata, 0).metadata;
  const writer = store.beginWrite(ref);
  try {
    for (const stream of source.streams) {
      await writer.addStream(stream.name, source.stream(stream.name), { compress: stream.compressed, totalBytes: stream.bytes });
    }
    const summary = await writer.commit(metadata);
    return { stateId: summary.stateId, storedBytes: summary.storedBytes, metadata };
  } catch (error) {
    await writer.abort().catch(() => undefined);
    throw error;
  }
}

function goldenPoint(ref: GuestStateRef, metadata: unknown, storedBytes: number): GoldenPoint {
  const parsed = guestStateMetadata.safeParse(metadata);
  if (!parsed.success) {
    throw new Error(`guest state ${ref.vmId}/${ref.stateId} was not written by a Ferry worker (its metadata has no engine manifest and disk list); suspend the vm again and republish`);
  }
  return { stateId: ref.stateId, storedBytes, metadata: parsed.data };
}

/** Where a resume continues from, and how the engine is to check it. */
export interface ResumeSource {
  ref: GuestStateRef;
  restore: RestoreOptions;
}

/**
 * The guest state vm.resume loads: the vm's recorded one; else, for a lab clone, its template
 * version's golden point (a clone's first start, or after a reset), restored as a clone of
 * the vm it was published from; else the newest one in storage.
 */
export async function resumeSource(db: Db, store: GuestStateStore, vmId: string): Promise<ResumeSource | undefined> {
  const row = await db.vm.findUnique({
    where: { id: vmId },
    select: { guestStateId: true, sourceTemplateVersion: { select: { id: true, goldenStateId: true, sourceVmId: true } } },
  });
  if (row?.guestStateId) return { ref: { vmId, stateId: row.guestStateId }, restore: {} };
  const version = row?.sourceTemplateVersion;
  if (version?.goldenStateId) {
    return { ref: { vmId: goldenPointOwner(version.id), stateId: version.goldenStateId }, restore: { cloneOf: version.sourceVmId } };
  }
  const latest = await store.latest(vmId);
  return latest ? { ref: { vmId, stateId: latest.stateId }, restore: {} } : undefined;
}
