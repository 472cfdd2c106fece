import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { appRouter } from "../../../../server/root.ts";
import { portalServices } from "../../../../server/services.ts";
import { createPortalContext } from "../../../../server/trpc.ts";

async function handler(req: Request): Promise<Response> {
  const services = await portalServices();
  return fetchRequestHandler({
    endpoint: "/api/trpc",
    req,
    router: appRouter,
    createContext: () => createPortalContext(services, req.headers),
    onError: ({ error, path }) => {
      if (error.code === "INTERNAL_SERVER_ERROR") services.log.error({ err: error.cause ?? error, path }, "tRPC request failed");
    },
  });
}

export { handler as GET, handler as POST };
