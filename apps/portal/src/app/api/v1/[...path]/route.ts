import { handleRestRequest } from "../../../../server/rest.ts";
import { withPortalServices } from "../../../../server/services.ts";

function handler(req: Request): Promise<Response> {
  return withPortalServices((services) => handleRestRequest(req, services));
}

export { handler as DELETE, handler as GET, handler as PATCH, handler as POST, handler as PUT };
