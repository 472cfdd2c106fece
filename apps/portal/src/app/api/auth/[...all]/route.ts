import { handleAuthRequest } from "../../../../server/sign-in-limit.ts";
import { withPortalServices } from "../../../../server/services.ts";

function handler(req: Request): Promise<Response> {
  return withPortalServices((services) => handleAuthRequest(req, services));
}

export { handler as GET, handler as POST };
