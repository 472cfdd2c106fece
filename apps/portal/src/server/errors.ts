// The portal's error codes. A code is stable (programs branch on it); the message is for a
// person and says what to do next. `trpc.ts` maps each code to an HTTP status in one place.

export const portalErrorStatus = {
  invalid_input: 400,
  unknown_field: 400,
  malformed_json: 400,
  unauthenticated: 401,
  forbidden: 403,
  not_found: 404,
  vm_not_found: 404,
  method_not_allowed: 405,
  action_refused: 409,
  quota_exceeded: 409,
  name_taken: 409,
  idempotency_key_reused: 422,
  idempotency_in_progress: 409,
  migration_refused: 409,
  incompatible_worker: 409,
  cluster_full: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  unknown_image: 422,
  unknown_profile: 422,
  memory_too_small: 422,
  memory_exceeds_workers: 422,
  unknown_worker: 422,
  project_required: 422,
  unknown_user: 422,
  rate_limited: 429,
  internal: 500,
  unavailable: 503,
} as const;

export type PortalErrorCode = keyof typeof portalErrorStatus;

/** Throw from a procedure when a request must be refused; the caller gets the code and message. */
export class PortalError extends Error {
  override readonly name = "PortalError";
  constructor(
    readonly code: PortalErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }
}
