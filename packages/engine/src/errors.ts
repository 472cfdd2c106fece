/** Every way the engine can fail; callers branch on the code, people read the message. */
export type EngineErrorCode =
  | "invalid_spec"
  | "qemu_not_found"
  | "qemu_img_failed"
  | "image_not_found"
  | "illegal_transition"
  | "qmp_timeout"
  | "qmp_closed"
  | "qmp_error"
  | "qemu_exited"
  | "state_mismatch"
  | "state_corrupt"
  | "incompatible"
  | "migration_failed"
  | "save_failed"
  | "restore_failed"
  | "socket_path_too_long";

/** Throw this from the engine: the message says what happened and what to do next. */
export class EngineError extends Error {
  readonly code: EngineErrorCode;
  readonly details?: Record<string, unknown>;

  constructor(code: EngineErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = "EngineError";
    this.code = code;
    if (details !== undefined) this.details = details;
  }
}
