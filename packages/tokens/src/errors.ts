/** Why a console token or relay ticket was refused; callers map codes to responses. */
export type TokenErrorCode = "malformed" | "bad_signature" | "expired" | "wrong_worker";

/** Thrown by the verify functions; `message` tells a person what to do next. */
export class TokenError extends Error {
  override readonly name = "TokenError";
  constructor(
    readonly code: TokenErrorCode,
    message: string,
  ) {
    super(message);
  }
}
