// The one interface every object storage driver implements, and the key rules they share.
// Keys look like S3 keys ("guest-states/<vm>/<state>/memory/0") but are restricted so the
// same key is also a safe relative path for the folder driver.
import type { Readable } from "node:stream";
import { StorageError } from "./errors.ts";

/** One stored object as `list` reports it. */
export interface ObjectInfo {
  key: string;
  bytes: number;
  lastModified: Date;
}

/** What a caller knows about a body it stores. */
export interface PutOptions {
  contentLength?: number;
  /**
   * The body's sha256 (hex), when the caller computed it anyway: the S3 driver sends it as the
   * request's payload hash, so the body is not hashed again and the server checks it.
   */
  sha256?: string;
}

/** Streaming object storage: a local folder or an S3-protocol bucket. */
export interface ObjectStore {
  /** Where the objects live, for messages: "folder /srv/ferry", "s3://ferry at http://…". */
  readonly location: string;
  /**
   * Stores `body` under `key`, replacing any object there. The object appears complete or not
   * at all. With `contentLength`, a body of another length is refused with `incomplete`.
   */
  put(key: string, body: Readable, options?: PutOptions): Promise<{ bytes: number }>;
  /** Streams the object; rejects with `not_found` when there is none. */
  get(key: string): Promise<Readable>;
  /** The object's size, or null when there is none. */
  head(key: string): Promise<{ bytes: number } | null>;
  /** Every object whose key starts with `prefix`, in no particular order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;
  /** Removes the object; removing an absent object is not an error. */
  delete(key: string): Promise<void>;
  /** Removes every object under `prefix` and returns how many there were. */
  deletePrefix(prefix: string): Promise<number>;
}

const maxKeyBytes = 1024;
// C0 controls, DEL and C1 controls: invisible in logs and hostile to shells and file names.
const controlCharacter = /[\u0000-\u001f\u007f-\u009f]/;

function keyProblem(key: string, allowTrailingSlash: boolean): string | undefined {
  if (Buffer.byteLength(key) > maxKeyBytes) return `it is longer than ${maxKeyBytes} bytes`;
  if (controlCharacter.test(key)) return "it contains a control character";
  if (key.includes("\\")) return "it contains a backslash";
  if (key.startsWith("/")) return "it starts with /";
  const segments = key.split("/");
  if (allowTrailingSlash && segments.at(-1) === "") segments.pop();
  for (const segment of segments) {
    if (segment === "") return "it has an empty path segment (// or a trailing /)";
    if (segment === "." || segment === "..") return `it has a "${segment}" segment`;
  }
  return undefined;
}

/** Refuses a key no driver may store: empty, absolute, with "..", "//" or control characters. */
export function checkKey(key: string): void {
  const problem = key === "" ? "it is empty" : keyProblem(key, false);
  if (problem !== undefined) {
    throw new StorageError(
      "invalid_key",
      `Object key ${JSON.stringify(key)} is invalid: ${problem}. Use /-separated names of letters, digits, "-", "_" and ".", like "guest-states/vm-1/s1/manifest.json".`,
    );
  }
}

/** Like checkKey, but "" (everything) and a trailing "/" are allowed. */
export function checkPrefix(prefix: string): void {
  if (prefix === "") return;
  const problem = keyProblem(prefix, true);
  if (problem !== undefined) {
    throw new StorageError(
      "invalid_key",
      `Object key prefix ${JSON.stringify(prefix)} is invalid: ${problem}. Use "" or /-separated names such as "guest-states/vm-1/".`,
    );
  }
}
