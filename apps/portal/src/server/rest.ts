// The REST API for programs: the same procedures as the UI, mapped to /api/v1 paths by
// trpc-to-openapi, except the two reads programs poll, which run their procedures' resolvers
// directly (see `polledRead`). This file only adapts the wire format: empty bodies, status
// codes and the `{ error: { code, message, details? } }` body every failure carries.
import type { IncomingHttpHeaders } from "node:http";
import { createOpenApiNodeHttpHandler, generateOpenApiDocument } from "trpc-to-openapi";
import { RateLimiterRes } from "rate-limiter-flexible";
import { apiTokenHash } from "./api-token.ts";
import { getHTTPStatusCodeFromError } from "@trpc/server/http";
import { appRouter } from "./root.ts";
import type { PortalServices } from "./services.ts";
import { vmReads } from "./routers/vm.ts";
import { type ApiError, busyRetryAfterSeconds, createPortalContext, type PortalContext, resolveAuthed, toApiError, toTRPCError } from "./trpc.ts";

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

/**
 * One REST request as the handler reads it: node:http's request (http.ts) has this shape
 * itself, so the portal's server hands it over as it is, without building a Fetch Request.
 */
export interface RestRequest {
  method?: string;
  /** The path and query, e.g. /api/v1/vms?limit=50. */
  url?: string;
  /** Names in lower case; repeated headers joined as node:http joins them. */
  headers: IncomingHttpHeaders;
  /** The body's bytes as they arrive; not read for GET, HEAD and DELETE. */
  [Symbol.asyncIterator](): AsyncIterator<Uint8Array>;
}

/** Answer one REST request given as a Fetch Request, as a Fetch Response (tests; the portal's server calls `answerRestRequest`). */
export async function handleRestRequest(request: Request, services: PortalServices): Promise<Response> {
  const url = new URL(request.url);
  const body = new Uint8Array(await request.arrayBuffer());
  const answer = await answerRestRequest(
    {
      method: request.method,
      url: `${url.pathname}${url.search}`,
      headers: Object.fromEntries(request.headers),
      async *[Symbol.asyncIterator]() {
        if (body.byteLength > 0) yield body;
      },
    },
    services,
  );
  return new Response(answer.body, { status: answer.status, headers: answer.headers });
}

/** Answer one REST request; the portal's server (http.ts) calls this for every path under /api/v1. */
export async function answerRestRequest(request: RestRequest, services: PortalServices): Promise<RestAnswer> {
  const method = request.method ?? "GET";
  // Only the path and query are read; the Host header is the client's to garble.
  const url = new URL(request.url ?? "/", "http://localhost");
  if (url.pathname === `${restBasePath}/openapi.json`) {
    if (method !== "GET") return errorAnswer(405, { code: "method_not_allowed", message: "openapi.json only answers GET" });
    return jsonAnswer(200, openApiDocument(services.settings.publicUrl));
  }
  const limited = await rateLimited(request.headers, services);
  if (limited !== null) return limited;
  const checked = await checkedBody(request, method, url);
  if ("status" in checked) return checked;
  const read = method === "GET" ? polledRead(url) : null;
  if (read !== null) return answerRead(read, request.headers, services);
  const answer = await callProcedure(request.headers, method, url, checked.body, services);
  if (answer.status < 400) return { status: answer.status, headers: { "content-type": "application/json" }, body: answer.body ?? null };
  const body = JSON.parse(answer.body ?? "null") as { data?: { ferry?: ApiError } } | null;
  const error = body?.data?.ferry ?? { code: "internal", message: "The portal hit an unexpected error; it has been logged. Try again, and report it if it persists." };
  return errorAnswer(answer.status, error);
}

function jsonAnswer(status: number, body: unknown, headers: Record<string, string> = {}): RestAnswer {
  return { status, headers: { "content-type": "application/json", ...headers }, body: JSON.stringify(body) };
}

/**
 * What trpc-to-openapi's node handler is given for one call. It reads `method`, `url`,
 * `headers.get("content-type")`, `body` (kept when present), `query` (it stores the parsed query
 * there) and `signal`. Given anything that is not a Fetch Request, it builds one from it
 * (headers, a body stream, abort listeners) only to take its signal, so this passes its
 * `instanceof Request` by its prototype while holding plain values (bench/api: the Fetch
 * Request a REST request was turned into cost about a tenth of the portal's CPU per list).
 */
interface ProcedureRequest {
  method: string;
  /** The path below /api/v1, with the query. */
  url: string;
  headers: { get(name: string): string | null };
  body: unknown;
  query?: unknown;
  /** Never aborted: procedures do not stop early when a client goes away. */
  signal: AbortSignal;
  /** Who asks (their headers) and who serves them, for the context. */
  caller: IncomingHttpHeaders;
  services: PortalServices;
}

type OpenApiHandler = (request: ProcedureRequest, response: { statusCode: number; setHeader(name: string, value: string | string[]): void; end(body: string | undefined): void }) => Promise<void>;
let openApiHandler: OpenApiHandler | undefined;
const neverAborted = new AbortController().signal;

/**
 * Run the procedure the path names with `body` (already read and checked) through
 * trpc-to-openapi's node handler, built once: its fetch adapter built the routing table (and,
 * outside production, the whole OpenAPI document) again for every request.
 */
function callProcedure(headers: IncomingHttpHeaders, method: string, url: URL, body: unknown, services: PortalServices): Promise<{ status: number; body: string | undefined }> {
  openApiHandler ??= createOpenApiNodeHttpHandler({
    router: appRouter,
    createContext: ({ req }: { req: ProcedureRequest }) => createPortalContext(req.services, fetchHeaders(req.caller)),
    responseMeta: ({ paths, errors }: { paths?: string[]; errors: unknown[] }) => (errors.length === 0 && paths?.[0] === "vm.create" ? { status: 201 } : {}),
    onError: ({ error, path, req }: { error: { code: string; cause?: unknown }; path?: string; req: ProcedureRequest }) => {
      if (error.code === "INTERNAL_SERVER_ERROR") req.services.log.error({ err: error.cause ?? error, path }, "REST request failed");
    },
  } as never) as unknown as OpenApiHandler;
  // A body was read and checked as JSON (or was empty, read as {}): say so to the handler.
  const contentType = body !== undefined ? "application/json" : (header(headers, "content-type") ?? null);
  const request: ProcedureRequest = Object.create(Request.prototype, {
    method: { value: method },
    url: { value: `${url.pathname.slice(restBasePath.length)}${url.search}` },
    headers: { value: { get: (name: string) => (name.toLowerCase() === "content-type" ? contentType : (header(headers, name) ?? null)) } },
    body: { value: body },
    query: { value: undefined, writable: true },
    signal: { value: neverAborted },
    caller: { value: headers },
    services: { value: services },
  });
  return new Promise((resolve) => {
    let status = 200;
    void openApiHandler!(request, {
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

/**
 * The reads programs poll, GET /vms and GET /vms/{id}: their procedures' own input schemas and
 * resolvers (`vmReads`), run by `resolveAuthed` with the same checks and errors, without
 * trpc-to-openapi's node handler and tRPC's caller, which together cost about two fifths of the
 * portal's CPU per list page (bench/api). Query values come as that handler gives them: text, a
 * list when repeated, and `limit` (the one number) as `Number(text)`, as its coercion does, so
 * "abc" is refused as NaN.
 */
type PolledRead = (ctx: PortalContext, services: PortalServices) => Promise<string>;

const vmPath = new RegExp(`^${restBasePath}/vms/([^/]+)$`);

function polledRead(url: URL): PolledRead | null {
  if (url.pathname === `${restBasePath}/vms`) {
    const input = queryInput(url);
    return async (ctx, services) => services.vmViews.pageJson(await resolveAuthed(ctx, vmReads.list, input));
  }
  // The id as the path has it, not decoded: as trpc-to-openapi reads path parameters.
  const id = vmPath.exec(url.pathname)?.[1];
  if (id === undefined) return null;
  const input = { ...queryInput(url), id };
  return async (ctx) => JSON.stringify(await resolveAuthed(ctx, vmReads.get, input));
}

function queryInput(url: URL): Record<string, unknown> {
  const input: Record<string, unknown> = {};
  for (const name of new Set(url.searchParams.keys())) {
    const values = url.searchParams.getAll(name);
    input[name] = values.length > 1 ? values : name === "limit" ? Number(values[0]) : values[0];
  }
  return input;
}

async function answerRead(read: PolledRead, headers: IncomingHttpHeaders, services: PortalServices): Promise<RestAnswer> {
  try {
    const ctx = await createPortalContext(services, fetchHeaders(headers));
    return { status: 200, headers: { "content-type": "application/json" }, body: await read(ctx, services) };
  } catch (thrown) {
    const error = toTRPCError(thrown);
    if (error.code === "INTERNAL_SERVER_ERROR") services.log.error({ err: error.cause ?? error }, "REST request failed");
    return errorAnswer(getHTTPStatusCodeFromError(error), toApiError(error));
  }
}

/** A header's value by its lower-case name; node:http gives repeated Set-Cookie as a list. */
function header(headers: IncomingHttpHeaders, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value.join(", ") : value;
}

/** The headers as a Fetch Headers, for the context (better-auth reads the session cookie from one). */
function fetchHeaders(headers: IncomingHttpHeaders): Headers {
  const fetched = new Headers();
  for (const name of Object.keys(headers)) {
    const value = header(headers, name);
    if (value !== undefined) fetched.set(name, value);
  }
  return fetched;
}

/** An error answer; a 401 says how to authenticate, a 503 (the database busy) when to retry. */
function errorAnswer(status: number, error: ApiError, extraHeaders: Record<string, string> = {}): RestAnswer {
  const headers =
    status === 401
      ? { "WWW-Authenticate": 'Bearer realm="ferry"', ...extraHeaders }
      : status === 503
        ? { "Retry-After": String(busyRetryAfterSeconds), ...extraHeaders }
        : extraHeaders;
  return jsonAnswer(status, { error }, headers);
}

/**
 * The 429 answer when the request's API token (or, without one, its address) has used up its
 * requests for the current minute; null to go ahead. Counted before the token is looked up,
 * so a flood of requests with a bad token is limited too.
 */
async function rateLimited(headers: IncomingHttpHeaders, services: PortalServices): Promise<RestAnswer | null> {
  const bearer = /^Bearer\s+(\S+)$/i.exec(header(headers, "authorization")?.trim() ?? "")?.[1];
  const address = header(headers, "x-forwarded-for")?.split(",")[0]?.trim() || header(headers, "x-real-ip") || "unknown";
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
async function checkedBody(request: RestRequest, method: string, url: URL): Promise<{ body: unknown } | RestAnswer> {
  for (const name of url.searchParams.keys()) {
    if (name in Object.prototype) {
      return errorAnswer(400, { code: "unknown_field", message: `unknown field "${name}"; remove it and send the request again`, details: { fields: [name] } });
    }
  }
  if (method === "GET" || method === "HEAD" || method === "DELETE") return { body: undefined };
  const tooLarge = () =>
    errorAnswer(413, { code: "payload_too_large", message: `The request body is larger than ${maxBodyBytes} bytes (1 MiB). Send a smaller body.` });
  if (Number(header(request.headers, "content-length") ?? 0) > maxBodyBytes) return tooLarge();
  const text = await readText(request, maxBodyBytes);
  if (text === null) return tooLarge();
  if (text.trim() === "") return { body: {} };
  const mediaType = header(request.headers, "content-type")?.split(";")[0]?.trim().toLowerCase();
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
    const wanted = bodyFieldTypes(method, url.pathname)?.[field];
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
async function readText(request: RestRequest, limit: number): Promise<string | null> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += chunk.byteLength;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
