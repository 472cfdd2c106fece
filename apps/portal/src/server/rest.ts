// The REST API for programs: the same procedures as the UI, mapped to /api/v1 paths by
// trpc-to-openapi. This file only adapts the wire format: empty bodies, status codes and
// the `{ error: { code, message, details? } }` body every failure carries.
import { createOpenApiFetchHandler, generateOpenApiDocument } from "trpc-to-openapi";
import type { ApiError } from "./trpc.ts";
import { appRouter } from "./root.ts";
import type { PortalServices } from "./services.ts";
import { createPortalContext } from "./trpc.ts";

/** Where the REST API is mounted. */
export const restBasePath = "/api/v1";

/** The OpenAPI 3.1 description of the REST API. */
export function openApiDocument(publicUrl: string) {
  return generateOpenApiDocument(appRouter, {
    title: "Ferry API",
    description: "Create and run vms. Authenticate with 'Authorization: Bearer <API token>'. Errors are { error: { code, message, details? } }.",
    version: "1.0.0",
    openApiVersion: "3.1.0",
    baseUrl: `${publicUrl}${restBasePath}`,
    tags: ["vms", "workers"],
  });
}

/** Answer one REST request; the Next route handler at /api/v1/[...path] calls this. */
export async function handleRestRequest(request: Request, services: PortalServices): Promise<Response> {
  const url = new URL(request.url);
  if (url.pathname === `${restBasePath}/openapi.json`) {
    if (request.method !== "GET") return errorResponse(405, { code: "method_not_allowed", message: "openapi.json only answers GET" });
    return Response.json(openApiDocument(services.settings.publicUrl));
  }
  const response = await createOpenApiFetchHandler({
    req: await withJsonBody(request),
    endpoint: restBasePath,
    router: appRouter,
    createContext: () => createPortalContext(services, request.headers),
    responseMeta: ({ paths, errors }) => (errors.length === 0 && paths?.[0] === "vm.create" ? { status: 201 } : {}),
    onError: ({ error, path }) => {
      if (error.code === "INTERNAL_SERVER_ERROR") services.log.error({ err: error.cause ?? error, path }, "REST request failed");
    },
  });
  if (response.status < 400) return response;
  const body = (await response.json().catch(() => null)) as { data?: { ferry?: ApiError } } | null;
  const error = body?.data?.ferry ?? { code: "internal", message: "The portal hit an unexpected error; it has been logged. Try again, and report it if it persists." };
  return errorResponse(response.status, error);
}

function errorResponse(status: number, error: ApiError): Response {
  const headers = status === 401 ? { "WWW-Authenticate": 'Bearer realm="ferry"' } : undefined;
  return Response.json({ error }, { status, headers });
}

// Actions such as POST /vms/{id}/start carry no body; trpc-to-openapi insists on a JSON
// one, so an empty body is read as `{}`.
async function withJsonBody(request: Request): Promise<Request> {
  if (request.method === "GET" || request.method === "HEAD" || request.method === "DELETE") return request;
  const text = await request.text();
  const headers = new Headers(request.headers);
  if (text.trim() === "") {
    headers.set("content-type", "application/json");
    return new Request(request.url, { method: request.method, headers, body: "{}" });
  }
  return new Request(request.url, { method: request.method, headers, body: text });
}
