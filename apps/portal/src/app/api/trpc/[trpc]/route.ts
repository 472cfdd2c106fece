import { portalServices } from "../../../../server/services.ts";
import { handleTrpcRequest } from "../../../../server/trpc-handler.ts";

async function handler(req: Request): Promise<Response> {
  return handleTrpcRequest(req, await portalServices());
}

export { handler as GET, handler as POST };
