import { portalServices } from "../../../../server/services.ts";

async function handler(req: Request): Promise<Response> {
  const { auth } = await portalServices();
  return auth.handler(req);
}

export { handler as GET, handler as POST };
