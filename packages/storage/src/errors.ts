/** Every way storage can fail; callers branch on the code, people read the message. */
export type StorageErrorCode =
  | "invalid_config"
  | "invalid_key"
  | "not_found"
  | "no_bucket"
  | "unreachable"
  | "denied"
  | "io_failed"
  | "compression_failed"
  | "corrupt"
  | "incomplete"
  | "bad_signature"
  | "foreign"
  | "exists"
  | "closed";

/** Throw this from storage: the message says what happened and what to do next. */
export class StorageError extends Error {
  override readonly name = "StorageError";
  readonly code: StorageErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: StorageErrorCode, message: string, options: { cause?: unknown; details?: Record<string, unknown> } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    if (options.details !== undefined) this.details = options.details;
  }
}

/** Whether `error` is a StorageError with `code`: the one test callers need. */
export function isStorageError(error: unknown, code?: StorageErrorCode): error is StorageError {
  return error instanceof StorageError && (code === undefined || error.code === code);
}
