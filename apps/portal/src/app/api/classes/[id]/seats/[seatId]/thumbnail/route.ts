import { withPortalServices } from "../../../../../../../server/services.ts";
import { handleThumbnailRequest } from "../../../../../../../server/thumbnail.ts";

export async function GET(request: Request, { params }: { params: Promise<{ id: string; seatId: string }> }): Promise<Response> {
  const { id, seatId } = await params;
  return withPortalServices((services) => handleThumbnailRequest(request, services, { classId: id, seatId }));
}
