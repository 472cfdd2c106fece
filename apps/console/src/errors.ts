/** Why an upgrade was refused: sent to the browser as `{ error: { code, message } }` with `status`. */
export class ConsoleRefusal extends Error {
  override readonly name = "ConsoleRefusal";
  constructor(
    readonly status: 401 | 403 | 404 | 409 | 502 | 500,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The worker's VNC relay could not be reached or said no; `code` is ours or the relay's. */
export class RelayError extends Error {
  override readonly name = "RelayError";
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
