import { portalServices, type PortalServices } from "../../../../../../../server/services.ts";
import { handleThumbnailRequest } from "../../../../../../../server/thumbnail.ts";

export async function GET(request: Request, { params }: { params: Promise<{ id: string; seatId: string }> }): Promise<Response> {
  let services: PortalServices;
  try {
    services = await portalServices();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return Response.json({ error: { code: "unavailable", message: `The portal cannot reach its services: ${message}` } }, { status: 503 });
  }
  const { id, seatId } = await params;
  return handleThumbnailRequest(request, services, { classId: id, seatId });
}
