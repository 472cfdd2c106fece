import { handleRestRequest } from "../../../../server/rest.ts";
import { portalServices, type PortalServices } from "../../../../server/services.ts";

async function handler(req: Request): Promise<Response> {
  let services: PortalServices;
  try {
    services = await portalServices();
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return Response.json({ error: { code: "unavailable", message: `The portal cannot reach its services: ${message}` } }, { status: 503 });
  }
  return handleRestRequest(req, services);
}

export { handler as DELETE, handler as GET, handler as PATCH, handler as POST, handler as PUT };
