// The portal's one HTTP server: REST requests (/api/v1) go straight to the REST handler, every
// other request to Next. A REST request through a Next route handler cost about 2.5 ms of CPU
// more than the handler itself (bench/api: list p99 632 ms with 50 clients), a third of the
// whole request; here the REST handler reads node:http's request itself.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { answerRestRequest, restBasePath } from "./rest.ts";
import { type PortalServices, portalServices, servicesUnavailable } from "./services.ts";

/** Next's request handler (`next(...).getRequestHandler()`), or what stands in for it. */
export type NextRequestHandler = (request: IncomingMessage, response: ServerResponse) => Promise<void>;

/** Whether a request path (with its query) is the REST API's. */
export function isRestPath(url: string): boolean {
  return url === restBasePath || url.startsWith(`${restBasePath}/`) || url.startsWith(`${restBasePath}?`);
}

/** The portal's server: REST on node:http, the rest through `next`; `services` defaults to this process's. */
export function createPortalServer(next: NextRequestHandler, services?: () => Promise<PortalServices>): Server {
  return createServer((request, response) => {
    const url = request.url ?? "/";
    if (!isRestPath(url)) {
      void next(request, response);
      return;
    }
    serveRest(request, response, services).catch((error: unknown) => {
      // Only a broken connection gets here: answerRestRequest answers every error itself.
      if (!response.headersSent) response.writeHead(500, { "content-type": "application/json" });
      response.end(JSON.stringify({ error: { code: "internal", message: `The portal could not answer: ${error instanceof Error ? error.message : String(error)}. Try again.` } }));
    });
  });
}

async function serveRest(request: IncomingMessage, response: ServerResponse, from: () => Promise<PortalServices> = portalServices): Promise<void> {
  let services: PortalServices;
  try {
    services = await from();
  } catch (error) {
    const body = JSON.stringify(servicesUnavailable(error));
    response.writeHead(503, { "content-type": "application/json", "content-length": Buffer.byteLength(body) }).end(body);
    return;
  }
  const answer = await answerRestRequest(request, services);
  if (answer.body === null) {
    response.writeHead(answer.status, answer.headers).end();
    return;
  }
  response.writeHead(answer.status, { ...answer.headers, "content-length": Buffer.byteLength(answer.body) }).end(answer.body);
}
