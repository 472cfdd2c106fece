// The REST API for programs: the same procedures as the UI, mapped to /api/v1 paths by
// trpc-to-openapi. This file only adapts the wire format: empty bodies, status codes and
// the `{ error: { code, message, details? } }` body every failure carries.
import { createOpenApiNodeHttpHandler, generateOpenApiDocument } from "trpc-to-openapi";
import { RateLimiterRes } from "rate-limiter-flexible";
import { apiTokenHash } from "./api-token.ts";
import type { ApiError } from "./trpc.ts";
import { appRouter } from "./root.ts";
import type { PortalServices } from "./services.ts";
import { busyRetryAfterSeconds, createPortalContext } from "./trpc.ts";

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
    tags: ["vms", "workers", "tenancy", "tokens", "audit", "webhooks", "labs", "classes", "seats"],
  });
}

/** A REST answer before it is written: its status, headers and JSON text (null: no body). */
export interface RestAnswer {
  status: number;
  headers: Record<string, string>;
  body: string | null;
}

/** Answer one REST request as a Fetch Response (tests; the portal's server writes `answerRestRequest`'s answer itself). */
export async function handleRestRequest(request: Request, services: PortalServices): Promise<Response> {
  const answer = await answerRestRequest(request, services);
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}

/** Answer one REST request; the portal's server (http.ts) calls this for every path under /api/v1. */
export async function answerRestRequest(request: Request, services: PortalServices): Promise<RestAnswer> {
  const url = new URL(request.url);
  if (url.pathname === `${restBasePath}/openapi.json`) {
    if (request.method !== "GET") return errorAnswer(405, { code: "method_not_allowed", message: "openapi.json only answers GET" });
    return jsonAnswer(200, openApiDocument(services.settings.publicUrl));
  }
  const limited = await rateLimited(request, services);
  if (limited !== null) return limited;
  const checked = await checkedBody(request);
  if ("status" in checked) return checked;
  const answer = await callProcedure(request, checked.body, services);
  if (answer.status < 400) return { status: answer.status, headers: { "content-type": "application/json" }, body: answer.body ?? null };
  const body = JSON.parse(answer.body ?? "null") as { data?: { ferry?: ApiError } } | null;
  const error = body?.data?.ferry ?? { code: "internal", message: "The portal hit an unexpected error; it has been logged. Try again, and report it if it persists." };
  return errorAnswer(answer.status, error, answer.status === 503 ? { "Retry-After": String(busyRetryAfterSeconds) } : {});
}

function jsonAnswer(status: number, body: unknown, headers: Record<string, string> = {}): RestAnswer {
  return { status, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
}

/** What trpc-to-openapi's handler is given: the request, as it reads it, and who serves it. */
interface ProcedureCall {
  request: Request;
  services: PortalServices;
}

type OpenApiHandler = (request: Request, response: { statusCode: number; setHeader(name: string, value: string | string[]): void; end(body: string | undefined): void }) => Promise<void>;
let openApiHandler: OpenApiHandler | undefined;

/**
 * Run the procedure the path names with `body` (already read and checked) through
 * trpc-to-openapi's node handler, built once: its fetch adapter built the routing table (and,
 * outside production, the whole OpenAPI document) again for every request. The handler is
 * given the request itself (a Fetch Request, so it takes its abort signal rather than making a
 * second Request) with the path below /api/v1 and the body.
 */
function callProcedure(request: Request, body: unknown, services: PortalServices): Promise<{ status: number; body: string | undefined }> {
  openApiHandler ??= createOpenApiNodeHttpHandler({
    router: appRouter,
    createContext: ({ req }: { req: object }) => {
      const call = procedureCalls.get(req)!;
      return createPortalContext(call.services, call.request.headers);
    },
    responseMeta: ({ paths, errors }: { paths?: string[]; errors: unknown[] }) => (errors.length === 0 && paths?.[0] === "vm.create" ? { status: 201 } : {}),
    onError: ({ error, path, req }: { error: { code: string; cause?: unknown }; path?: string; req: object }) => {
      if (error.code === "INTERNAL_SERVER_ERROR") procedureCalls.get(req)?.services.log.error({ err: error.cause ?? error, path }, "REST request failed");
    },
  } as never) as unknown as OpenApiHandler;
  const url = request.url.replace(restBasePath, "");
  // A body was read and checked as JSON (or was empty, read as {}): say so to the handler.
  const headers = body !== undefined && request.headers.get("content-type") !== "application/json" ? new Headers(request.headers) : request.headers;
  if (headers !== request.headers) headers.set("content-type", "application/json");
  const proxy = new Proxy(request, {
    get: (target, property) => {
      if (property === "url") return url;
      if (property === "body") return body;
      if (property === "headers") return headers;
      return Reflect.get(target, property, target);
    },
    has: (target, property) => property === "body" || Reflect.has(target, property),
  });
  procedureCalls.set(proxy, { request, services });
  return new Promise((resolve) => {
    let status = 200;
    void openApiHandler!(proxy, {
      get statusCode() {
        return status;
      },
      set statusCode(code: number) {
        status = code;
      },
      setHeader() {},
      end: (text: string | undefined) => resolve({ status, body: text }),
    });
  });
}

const procedureCalls = new WeakMap<object, ProcedureCall>();

function errorAnswer(status: number, error: ApiError, extraHeaders: Record<string, string> = {}): RestAnswer {
  const headers = status === 401 ? { "WWW-Authenticate": 'Bearer realm="ferry"', ...extraHeaders } : extraHeaders;
  return jsonAnswer(status, { error }, headers);
}

/**
 * The 429 answer when the request's API token (or, without one, its address) has used up its
 * requests for the current minute; null to go ahead. Counted before the token is looked up,
 * so a flood of requests with a bad token is limited too.
 */
async function rateLimited(request: Request, services: PortalServices): Promise<RestAnswer | null> {
  const bearer = /^Bearer\s+(\S+)$/i.exec(request.headers.get("authorization")?.trim() ?? "")?.[1];
  const address = request.headers.get("x-forwarded-for")?.split(",")[0]?.trim() || request.headers.get("x-real-ip") || "unknown";
  const key = bearer ? `token:${apiTokenHash(bearer)}` : `address:${address}`;
  try {
    await services.rateLimiter.consume(key);
    return null;
  } catch (rejection) {
    if (rejection instanceof RateLimiterRes) {
      const retryAfter = Math.max(1, Math.ceil(rejection.msBeforeNext / 1000));
      return errorAnswer(
        429,
        {
          code: "rate_limited",
          message: `too many requests: ${services.settings.apiRateLimitPerMinute} per minute are allowed for one API token; retry after ${retryAfter} s`,
          details: { limitPerMinute: services.settings.apiRateLimitPerMinute, retryAfterSeconds: retryAfter },
        },
        { "Retry-After": String(retryAfter) },
      );
    }
    // Redis unreachable: serve the request rather than fail every API call.
    services.log.warn({ err: rejection }, "rate limiter unavailable; request let through");
    return null;
  }
}

/** The largest request body the API reads. */
const maxBodyBytes = 1024 * 1024;

/**
 * What trpc-to-openapi does not check itself, refused in the error schema: query names such as
 * `constructor` (its query parser indexes a plain object with them and throws), bodies over
 * `maxBodyBytes`, bodies that are not JSON, and JSON that is not an object (an action would
 * otherwise run on `null` or `[]`). Actions such as POST /vms/{id}/start carry no body;
 * trpc-to-openapi insists on a JSON one, so an empty body is read as `{}`. Returns the body
 * read (undefined for GET, HEAD and DELETE, whose input is the query).
 */
async function checkedBody(request: Request): Promise<{ body: unknown } | RestAnswer> {
  for (const name of new URL(request.url).searchParams.keys()) {
    if (name in Object.prototype) {
      return errorAnswer(400, { code: "unknown_field", message: `unknown field "${name}"; remove it and send the request again`, details: { fields: [name] } });
    }
  }
  if (request.method === "GET" || request.method === "HEAD" || request.method === "DELETE") return { body: undefined };
  const tooLarge = () =>
    errorAnswer(413, { code: "payload_too_large", message: `The request body is larger than ${maxBodyBytes} bytes (1 MiB). Send a smaller body.` });
  if (Number(request.headers.get("content-length") ?? 0) > maxBodyBytes) return tooLarge();
  const text = await readText(request, maxBodyBytes);
  if (text === null) return tooLarge();
  if (text.trim() === "") return { body: {} };
  const mediaType = request.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  if (mediaType !== "application/json") {
    return errorAnswer(415, {
      code: "unsupported_media_type",
      message: `The request body is ${mediaType ? `"${mediaType}"` : "sent without a Content-Type"}. Send it as JSON with Content-Type: application/json.`,
    });
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return errorAnswer(400, { code: "malformed_json", message: "The request body is not valid JSON. Send a JSON object with Content-Type: application/json." });
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    return errorAnswer(400, { code: "invalid_input", message: `The request body is ${describeJson(body)}. Send a JSON object, e.g. {}.` });
  }
  const wrongTypes = Object.entries(body).flatMap(([field, value]) => {
    const wanted = bodyFieldTypes(request.method, new URL(request.url).pathname)?.[field];
    return wanted !== undefined && typeof value !== wanted ? [{ field, wanted, got: describeJson(value) }] : [];
  });
  if (wrongTypes.length > 0) {
    return errorAnswer(400, {
      code: "invalid_input",
      message: `invalid input: ${wrongTypes.map((w) => `${w.field}: expected a ${w.wanted}, got ${w.got}`).join("; ")}. Fix these fields and send the request again.`,
      details: { issues: wrongTypes.map((w) => ({ path: [w.field], message: `expected a ${w.wanted}, got ${w.got}` })) },
    });
  }
  return { body };
}

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return typeof value === "object" || typeof value === "undefined" ? `an ${typeof value}` : `a ${typeof value}`;
}

type BodyFieldTypes = Record<string, "number" | "boolean">;
let bodyRoutes: { method: string; path: RegExp; fields: BodyFieldTypes }[] | undefined;

/**
 * The body fields of a route that must be JSON numbers or booleans. trpc-to-openapi coerces
 * such fields (it turns "1", true and [1] into 1), which query strings need and JSON bodies
 * must not get: a wrong type is refused here, from the OpenAPI document's schemas.
 */
function bodyFieldTypes(method: string, pathname: string): BodyFieldTypes | undefined {
  bodyRoutes ??= Object.entries(openApiDocument("").paths ?? {}).flatMap(([path, item]) =>
    (["post", "put", "patch"] as const).flatMap((verb) => {
      const content = item?.[verb]?.requestBody;
      const schema = content && "content" in content ? content.content["application/json"]?.schema : undefined;
      const properties = schema && "properties" in schema ? (schema.properties ?? {}) : {};
      const fields: BodyFieldTypes = {};
      for (const [name, property] of Object.entries(properties)) {
        const type = "type" in property ? property.type : undefined;
        if (type === "integer" || type === "number") fields[name] = "number";
        if (type === "boolean") fields[name] = "boolean";
      }
      const pattern = new RegExp(`^${restBasePath}${path.replace(/\{[^}]+\}/g, "[^/]+")}$`);
      return [{ method: verb.toUpperCase(), path: pattern, fields }];
    }),
  );
  return bodyRoutes.find((route) => route.method === method && route.path.test(pathname))?.fields;
}

/** The body as text, or null when it is longer than `limit` bytes (reading stops there). */
async function readText(request: Request, limit: number): Promise<string | null> {
  if (request.body === null) return "";
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
