// The two ways a command fails, and the exit status each one gives.

/** The command line itself is wrong (unknown command or option, missing value): exit 2. */
export class UsageError extends Error {
  override readonly name = "UsageError";
  readonly exitCode = 2;
}

/**
 * The portal refused or could not be asked (API error, unreachable, a vm that failed while we
 * waited): exit 1. `code` is the API's error code when there is one.
 */
export class CommandError extends Error {
  override readonly name = "CommandError";
  readonly exitCode = 1;
  constructor(
    message: string,
    readonly code?: string,
    readonly status?: number,
  ) {
    super(message);
  }
}
