// A lab seat's thumbnail for the instructor's wall: GET /api/classes/{id}/seats/{seatId}/thumbnail
// (a Next route handler, as an <img> cannot send tRPC). Each request also marks the seat's vm
// as watched for a few seconds: workers render thumbnails of watched vms only.
import { redisKeys, thumbnailTiming } from "@ferry/jobs";
import { authorize } from "./access.ts";
import { PortalError, portalErrorStatus } from "./errors.ts";
import type { PortalServices } from "./services.ts";
import { createPortalContext } from "./trpc.ts";

/** Answer a thumbnail request: the newest PNG (200), 202 while none is rendered yet, 404 for what the viewer cannot see. */
export async function handleThumbnailRequest(request: Request, services: PortalServices, params: { classId: string; seatId: string }): Promise<Response> {
  try {
    return await seatThumbnail(request, services, params);
  } catch (error) {
    if (!(error instanceof PortalError)) throw error;
    return Response.json({ error: { code: error.code, message: error.message } }, { status: portalErrorStatus[error.code], headers: { "cache-control": "no-store" } });
  }
}

async function seatThumbnail(request: Request, services: PortalServices, { classId, seatId }: { classId: string; seatId: string }): Promise<Response> {
  const { viewer } = await createPortalContext(services, request.headers);
  if (viewer === null) throw new PortalError("unauthenticated", "sign in, or send an API token as `Authorization: Bearer …`, to see a class's thumbnails");
  const notFound = () => new PortalError("not_found", `no seat ${seatId} in a class ${classId} visible to you; list the class's seats with GET /api/v1/classes/${classId}`, { classId, seatId });
  const seat = await services.db.labSeat.findFirst({
    where: { id: seatId, classId },
    select: { vm: { select: { id: true, state: true, deletedAt: true } }, class: { select: { project: { select: { id: true, organizationId: true } } } } },
  });
  if (seat === null) throw notFound();
  await authorize(services.db, viewer, seat.class.project, "read", notFound);

  const vm = seat.vm !== null && seat.vm.deletedAt === null ? seat.vm : null;
  if (vm === null) return waiting("This seat has no vm yet: it gets one when the class starts or the student first opens it.");
  const { redis } = services;
  const prefix = services.settings.queuePrefix;
  const [, thumbnail] = await Promise.all([
    redis.set(redisKeys.vmThumbnailWatched(prefix, vm.id), "1", "EX", thumbnailTiming.watchSeconds),
    redis.getBuffer(redisKeys.vmThumbnail(prefix, vm.id)),
  ]);
  if (thumbnail !== null) {
    return new Response(new Uint8Array(thumbnail), { status: 200, headers: { "content-type": "image/png", "cache-control": "no-store", "content-length": String(thumbnail.length) } });
  }
  if (vm.state !== "running") return waiting(`The seat's vm is ${vm.state}; its thumbnail shows once it runs.`);
  return waiting("The first thumbnail of this vm is being rendered; ask again in a few seconds.");
}

function waiting(message: string): Response {
  return new Response(message, {
    status: 202,
    headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store", "retry-after": String(thumbnailTiming.intervalMs / 1000) },
  });
}
