// The portal UI's tRPC endpoint; the Next route handler at /api/trpc/[trpc] calls this.
import { fetchRequestHandler } from "@trpc/server/adapters/fetch";
import { appRouter } from "./root.ts";
import type { PortalServices } from "./services.ts";
import { createPortalContext } from "./trpc.ts";

export const trpcEndpoint = "/api/trpc";

export function handleTrpcRequest(request: Request, services: PortalServices): Promise<Response> {
  return fetchRequestHandler({
    endpoint: trpcEndpoint,
    req: request,
    router: appRouter,
    createContext: () => createPortalContext(services, request.headers),
    onError: ({ error, path }) => {
      if (error.code === "INTERNAL_SERVER_ERROR") services.log.error({ err: error.cause ?? error, path }, "tRPC request failed");
    },
  });
}
