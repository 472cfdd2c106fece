// Where a suspended vm's guest state is kept: for now two files in the vm's folder, the
// zstd stream and its manifest. Both are written under temporary names and renamed, the
// manifest last, so a guest state is either complete or absent. Object storage will replace
// this module (same three functions), not the jobs that call it.
import { createReadStream, createWriteStream } from "node:fs";
import { readFile, rename, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Readable, Writable } from "node:stream";
import { finished } from "node:stream/promises";

const streamFile = "guest-state.zst";
const manifestFile = "guest-state.json";

/** An open guest state being written: pipe the stream into `stream`, then `commit` or `abort`. */
export interface GuestStateSink {
  stream: Writable;
  commit(manifest: unknown): Promise<void>;
  abort(): Promise<void>;
}

/** Open a sink for a vm's guest state in `vmDir`. */
export function openGuestStateSink(vmDir: string): GuestStateSink {
  const temporary = join(vmDir, `${streamFile}.partial`);
  const stream = createWriteStream(temporary);
  return {
    stream,
    async commit(manifest) {
      if (!stream.writableFinished) {
        stream.end();
        await finished(stream);
      }
      await rename(temporary, join(vmDir, streamFile));
      await writeFile(join(vmDir, `${manifestFile}.partial`), JSON.stringify(manifest, null, 2));
      await rename(join(vmDir, `${manifestFile}.partial`), join(vmDir, manifestFile));
    },
    async abort() {
      stream.destroy();
      await rm(temporary, { force: true });
    },
  };
}

/** The vm's saved guest state, or undefined if it has none (never suspended, or discarded). */
export async function openGuestStateSource(vmDir: string): Promise<{ stream: Readable; manifest: unknown } | undefined> {
  let manifest: unknown;
  try {
    manifest = JSON.parse(await readFile(join(vmDir, manifestFile), "utf8"));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw error;
  }
  return { stream: createReadStream(join(vmDir, streamFile)), manifest };
}

/** Remove a vm's guest state (after a resume, or when a suspended vm is stopped). */
export async function discardGuestState(vmDir: string): Promise<void> {
  await rm(join(vmDir, manifestFile), { force: true });
  await rm(join(vmDir, streamFile), { force: true });
}
