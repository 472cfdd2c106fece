// Helpers shared by the storage tests (not exported from the package).
import { createHash, randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import { StorageError, type StorageErrorCode } from "./errors.ts";

/** A stream of `totalBytes` random bytes, generated as it is read; `sha256()` once it ended. */
export function randomStream(totalBytes: number, chunkBytes = 64 * 1024): { stream: Readable; sha256: () => string } {
  const hash = createHash("sha256");
  let left = totalBytes;
  async function* chunks(): AsyncGenerator<Buffer> {
    while (left > 0) {
      const chunk = randomBytes(Math.min(chunkBytes, left));
      left -= chunk.length;
      hash.update(chunk);
      yield chunk;
    }
  }
  let digest: string | undefined;
  return { stream: Readable.from(chunks(), { objectMode: false }), sha256: () => (digest ??= hash.digest("hex")) };
}

/** A stream that yields `goodBytes` random bytes, then fails with `error`. */
export function failingStream(goodBytes: number, error: Error): Readable {
  async function* chunks(): AsyncGenerator<Buffer> {
    yield* randomStream(goodBytes).stream;
    throw error;
  }
  return Readable.from(chunks(), { objectMode: false });
}

export async function readAll(stream: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** Length and sha256 of a stream, without keeping it. */
export async function streamDigest(stream: AsyncIterable<unknown>): Promise<{ bytes: number; sha256: string }> {
  const hash = createHash("sha256");
  let bytes = 0;
  for await (const chunk of stream) {
    hash.update(chunk as Buffer);
    bytes += (chunk as Buffer).length;
  }
  return { bytes, sha256: hash.digest("hex") };
}

export function sha256(data: Buffer): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Consumes `stream`, counting what it emitted before it failed; returns both. */
export async function drainUntilError(stream: Readable): Promise<{ emitted: Buffer; error: unknown }> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of stream) chunks.push(chunk as Buffer);
  } catch (error) {
    return { emitted: Buffer.concat(chunks), error };
  }
  throw new Error(`the stream ended without an error after ${Buffer.concat(chunks).length} bytes`);
}

/** The StorageError `action` rejects with; fails the test if it resolves or throws another kind. */
export async function storageError(action: Promise<unknown> | (() => Promise<unknown>), code?: StorageErrorCode): Promise<StorageError> {
  try {
    await (typeof action === "function" ? action() : action);
  } catch (error) {
    if (!(error instanceof StorageError)) throw error;
    if (code !== undefined && error.code !== code) {
      throw new Error(`expected StorageError ${code}, got ${error.code}: ${error.message}`, { cause: error });
    }
    return error;
  }
  throw new Error(`expected a StorageError${code === undefined ? "" : ` ${code}`}, but it succeeded`);
}
