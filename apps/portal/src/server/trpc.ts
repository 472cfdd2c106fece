// tRPC setup for the portal. Read in order:
// 1. context: who is asking (session cookie or API token) and the services procedures use
// 2. errors: one function turns any thrown error into our `{ code, message, details }`
// 3. procedures: `authedProcedure` (and `auditedProcedure` on it) for everything but lab student links
import { isDatabaseBusy } from "@ferry/db";
import { initTRPC, TRPCError } from "@trpc/server";
import type { TRPC_ERROR_CODE_KEY } from "@trpc/server/rpc";
import type { OpenApiMeta } from "trpc-to-openapi";
import { ZodError, type z } from "zod";
import { type TokenScope, type Viewer, tokenScopes } from "./access.ts";
export type { Viewer } from "./access.ts";
import { apiTokenHash } from "./api-token.ts";
import { recordAudit } from "./audit.ts";
import { PortalError, portalErrorStatus, type PortalErrorCode } from "./errors.ts";
import type { PortalServices } from "./services.ts";

// ---------------------------------------------------------------------------------------
// 1. context

export interface PortalContext {
  services: PortalServices;
  viewer: Viewer | null;
  ip: string | null;
  /** True when the request carried an API token that is unknown, revoked or expired. */
  tokenRejected?: boolean;
  /** The request's Idempotency-Key header (REST), for creates that must happen once. */
  idempotencyKey?: string | null;
}

/** Build the context for one HTTP request: resolves the viewer from a bearer token or the session cookie. */
export async function createPortalContext(services: PortalServices, headers: Headers): Promise<PortalContext> {
  const ip = headers.get("x-forwarded-for")?.split(",")[0]?.trim() || headers.get("x-real-ip") || null;
  const idempotencyKey = headers.get("idempotency-key");
  const authorization = headers.get("authorization");
  if (authorization !== null) {
    const viewer = await viewerFromBearer(services, authorization);
    return { services, ip, viewer, tokenRejected: viewer === null, idempotencyKey };
  }
  const session = await services.auth.api.getSession({ headers });
  if (session === null) return { services, ip, viewer: null, idempotencyKey };
  const { id, email, name, role } = session.user as { id: string; email: string; name: string; role?: string };
  return { services, ip, idempotencyKey, viewer: { id, email, name, role: role === "admin" ? "admin" : "member", token: null, sessionId: session.session.id } };
}

/** How precisely an API token's `lastUsedAt` is kept. */
const lastUsedResolutionMs = 60_000;

async function viewerFromBearer(services: PortalServices, authorization: string): Promise<Viewer | null> {
  const match = /^Bearer\s+(\S+)$/i.exec(authorization.trim());
  if (!match?.[1]) return null;
  const now = new Date();
  const tokenHash = apiTokenHash(match[1]);
  const recalled = services.tokenViewers.recall(tokenHash, now);
  if (recalled !== undefined) return recalled;
  const mark = services.tokenViewers.mark();
  const token = await services.db.apiToken.findUnique({
    where: { tokenHash },
    select: {
      id: true,
      projectId: true,
      scopes: true,
      revokedAt: true,
      expiresAt: true,
      lastUsedAt: true,
      user: { select: { id: true, email: true, name: true, role: true } },
    },
  });
  if (token === null || token.revokedAt !== null || (token.expiresAt !== null && token.expiresAt <= now)) return null;
  // Written at most once a minute per token: a write on every request made all the requests
  // of one token queue on that row's lock (bench/api: list p99 1.4 s with 50 clients).
  if (token.lastUsedAt === null || now.getTime() - token.lastUsedAt.getTime() >= lastUsedResolutionMs) {
    await services.db.apiToken.updateMany({ where: { id: token.id, OR: [{ lastUsedAt: null }, { lastUsedAt: { lt: new Date(now.getTime() - lastUsedResolutionMs) } }] }, data: { lastUsedAt: now } });
  }
  const { id, email, name, role } = token.user;
  const scopes = token.scopes.filter((scope): scope is TokenScope => (tokenScopes as readonly string[]).includes(scope));
  const viewer: Viewer = { id, email, name, role: role === "admin" ? "admin" : "member", token: { id: token.id, projectId: token.projectId, scopes }, sessionId: null };
  services.tokenViewers.remember(tokenHash, viewer, token.expiresAt, mark, now);
  return viewer;
}

// ---------------------------------------------------------------------------------------
// 2. errors

/** What every error response carries, in tRPC's `data.ferry` and as REST's `{ error }`. */
export interface ApiError {
  code: PortalErrorCode;
  message: string;
  details?: Record<string, unknown>;
}

const trpcCodeByStatus: Record<number, TRPC_ERROR_CODE_KEY> = {
  400: "BAD_REQUEST",
  401: "UNAUTHORIZED",
  403: "FORBIDDEN",
  404: "NOT_FOUND",
  405: "METHOD_NOT_SUPPORTED",
  409: "CONFLICT",
  429: "TOO_MANY_REQUESTS",
  413: "PAYLOAD_TOO_LARGE",
  415: "UNSUPPORTED_MEDIA_TYPE",
  422: "UNPROCESSABLE_CONTENT",
  500: "INTERNAL_SERVER_ERROR",
  503: "SERVICE_UNAVAILABLE",
};

/** Turn anything a procedure threw into the TRPCError whose HTTP status matches our code. */
export function toTRPCError(error: unknown): TRPCError {
  if (error instanceof PortalError) {
    const code = trpcCodeByStatus[portalErrorStatus[error.code]] ?? "INTERNAL_SERVER_ERROR";
    return new TRPCError({ code, message: error.message, cause: error });
  }
  if (error instanceof TRPCError) return error;
  return new TRPCError({ code: "INTERNAL_SERVER_ERROR", message: "unexpected error", cause: error instanceof Error ? error : undefined });
}

/** Describe a TRPCError as our API error: the one place codes and messages are chosen. */
export function toApiError(error: TRPCError): ApiError {
  const cause = error.cause;
  if (cause instanceof PortalError) {
    return cause.details === undefined ? { code: cause.code, message: cause.message } : { code: cause.code, message: cause.message, details: cause.details };
  }
  if (cause instanceof ZodError) return describeInputError(cause);
  switch (error.code) {
    case "PARSE_ERROR":
      return { code: "malformed_json", message: "The request body is not valid JSON. Send a JSON object with Content-Type: application/json." };
    case "UNSUPPORTED_MEDIA_TYPE":
      return { code: "unsupported_media_type", message: `${error.message}. Send the body as JSON with Content-Type: application/json.` };
    case "PAYLOAD_TOO_LARGE":
      return { code: "payload_too_large", message: "The request body is larger than 100 kB. Send a smaller body." };
    case "NOT_FOUND":
      return { code: "not_found", message: "No such endpoint. See GET /api/v1/openapi.json for the list of endpoints." };
    case "METHOD_NOT_SUPPORTED":
      return { code: "method_not_allowed", message: `${error.message}. See GET /api/v1/openapi.json for the methods each path accepts.` };
    case "UNAUTHORIZED":
      return { code: "unauthenticated", message: error.message };
    case "BAD_REQUEST":
      return { code: "invalid_input", message: error.message };
    default:
      return { code: "internal", message: "The portal hit an unexpected error; it has been logged. Try again, and report it if it persists." };
  }
}

function describeInputError(error: ZodError): ApiError {
  const unknown = error.issues.flatMap((issue) => (issue.code === "unrecognized_keys" ? issue.keys.map((key) => [...issue.path, key].join(".")) : []));
  if (unknown.length > 0) {
    return {
      code: "unknown_field",
      message: `unknown field${unknown.length > 1 ? "s" : ""} ${unknown.map((f) => `"${f}"`).join(", ")}; remove ${unknown.length > 1 ? "them" : "it"} and send the request again`,
      details: { fields: unknown },
    };
  }
  const problems = error.issues.map((issue) => `${issue.path.length > 0 ? issue.path.join(".") : "input"}: ${issue.message}`);
  return {
    code: "invalid_input",
    message: `invalid input: ${problems.join("; ")}. Fix these fields and send the request again.`,
    details: { issues: error.issues.map((issue) => ({ path: issue.path.map(String), message: issue.message })) },
  };
}

// ---------------------------------------------------------------------------------------
// 3. procedures

const t = initTRPC
  .context<PortalContext>()
  .meta<OpenApiMeta>()
  .create({
    errorFormatter({ shape, error }) {
      const ferry = toApiError(error);
      return { ...shape, message: ferry.message, data: { code: shape.data.code, httpStatus: shape.data.httpStatus, path: shape.data.path, ferry } };
    },
  });

export const createTRPCRouter = t.router;
export const createCallerFactory = t.createCallerFactory;

/**
 * `schema` as the output of a procedure whose answer a typed mapper builds (vm list and get:
 * `toView`). tRPC parses every output with its schema: for a page of 50 vms a tenth of a
 * millisecond and much of the garbage of a request (bench/api). In production (`trusted`, by
 * default when tRPC is not in development) the parse is skipped; in development and tests it
 * runs, so a mapper that drifts from its schema fails there. The OpenAPI document is the same.
 */
export function mappedOutput<T extends z.ZodType>(schema: T, trusted = !t._config.isDev): T {
  if (!trusted) return schema;
  return Object.assign(schema.clone(), { parseAsync: async (value: unknown) => value }) as T;
}

/** The context of a procedure that requires a viewer, once it has one. */
export type AuthedContext = PortalContext & { viewer: Viewer };

/** Why a request without a viewer is refused. */
function unauthenticated(ctx: PortalContext): PortalError {
  return new PortalError(
    "unauthenticated",
    ctx.tokenRejected
      ? "The API token in the Authorization header is unknown, revoked or expired. Send 'Authorization: Bearer <token>' with a current token."
      : "You are not signed in. Sign in at /sign-in, or send an API token as 'Authorization: Bearer <token>'.",
  );
}

/** Every procedure requires a signed-in person or a valid API token. */
export const authedProcedure = t.procedure.use(async ({ ctx, next }) => {
  if (ctx.viewer === null) throw toTRPCError(unauthenticated(ctx));
  const result = await next({ ctx: { ...ctx, viewer: ctx.viewer } });
  if (!result.ok && result.error.cause instanceof PortalError) throw toTRPCError(result.error.cause);
  if (!result.ok && isDatabaseBusy(result.error.cause)) throw toTRPCError(databaseBusy());
  return result;
});

/** An authed procedure's input schema and resolver, for `resolveAuthed`. */
export interface AuthedRead<Input extends z.ZodType, Output> {
  input: Input;
  resolve(ctx: AuthedContext, input: z.output<Input>): Promise<Output>;
}

/**
 * Run an authed procedure's resolver (`read`, which its procedure also uses) without tRPC's
 * caller, with the same checks in the same order and the same errors: no viewer is
 * unauthenticated, input that fails the schema is BAD_REQUEST carrying the ZodError, a
 * PortalError keeps its status, a busy database is 503. For the reads programs poll (rest.ts):
 * tRPC's caller and middleware chain cost about a quarter of the portal's CPU per list page
 * (bench/api).
 */
export async function resolveAuthed<Input extends z.ZodType, Output>(ctx: PortalContext, read: AuthedRead<Input, Output>, rawInput: unknown): Promise<Output> {
  if (ctx.viewer === null) throw toTRPCError(unauthenticated(ctx));
  const input = await read.input.safeParseAsync(rawInput);
  if (!input.success) throw new TRPCError({ code: "BAD_REQUEST", message: input.error.message, cause: input.error });
  try {
    return await read.resolve({ ...ctx, viewer: ctx.viewer }, input.data);
  } catch (error) {
    throw toTRPCError(isDatabaseBusy(error) ? databaseBusy() : error);
  }
}

/** The answer when the database could not start a transaction in time: nothing was changed. */
function databaseBusy(): PortalError {
  return new PortalError("unavailable", `the database is too busy to take this request now; nothing was changed. Retry after ${busyRetryAfterSeconds} s`, {
    retryAfterSeconds: busyRetryAfterSeconds,
  });
}

export const busyRetryAfterSeconds = 2;

/**
 * A procedure anyone may call: its input carries the credential itself (a lab student link).
 * Refusals keep their status, as in `authedProcedure`.
 */
export const linkProcedure = t.procedure.use(async ({ next }) => {
  const result = await next();
  if (!result.ok && result.error.cause instanceof PortalError) throw toTRPCError(result.error.cause);
  if (!result.ok && isDatabaseBusy(result.error.cause)) throw toTRPCError(databaseBusy());
  return result;
});

/** Where an audited action landed: filled in by the procedure as soon as it knows. */
export interface AuditTarget {
  projectId: string | null;
  targetType: string;
  targetId: string | null;
}

/**
 * A state-changing procedure. Every call by a known viewer leaves an audit entry (who, what,
 * when, from where, outcome), refusals included; the procedure names the project and target
 * through `ctx.audit` once it has found them.
 */
export function auditedProcedure(action: string) {
  return authedProcedure.use(async ({ ctx, next, getRawInput }) => {
    const raw = (await getRawInput().catch(() => undefined)) as { id?: unknown } | undefined;
    const audit: AuditTarget = { projectId: null, targetType: action.split(".")[0] ?? action, targetId: typeof raw?.id === "string" ? raw.id.slice(0, 200) : null };
    const result = await next({ ctx: { ...ctx, audit } });
    const cause = result.ok ? undefined : result.error.cause;
    const outcome = result.ok ? "ok" : cause instanceof PortalError || result.error.code !== "INTERNAL_SERVER_ERROR" ? "refused" : "failed";
    const message = result.ok ? action : cause instanceof PortalError ? `${cause.code}: ${cause.message}` : result.error.message;
    await recordAudit(ctx.services, { viewer: ctx.viewer, ip: ctx.ip, action, outcome, message, ...audit });
    return result;
  });
}
