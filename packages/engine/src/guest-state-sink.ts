// Where Vm.saveState puts a guest state's compressed stream. The engine lends its chunks rather
// than giving them away: it reads the stream into a few blocks it reuses from save to save,
// because fresh blocks for every save (~20 MB per 256 MiB guest) cost ~35 ms of the worker's
// CPU in page faults and the garbage collections their external memory forces, on cores that
// QEMU and zstd need for the save itself.
import { type FileHandle, open } from "node:fs/promises";

/**
 * Receives a guest state's compressed stream. Each chunk is the sink's only until the promise
 * its write returned settles: the engine then reads the next bytes into it, so a sink that keeps
 * bytes longer (a queue, a part being filled) copies them. Writes come one at a time, in stream
 * order, each once the previous resolved (the engine reads the next chunk meanwhile). `end`
 * follows the last write and the save is done when it resolves. A write or end that rejects
 * fails the save at once (the guest resumes); `abort` tells the sink that the save failed, so
 * it releases what it holds.
 */
export interface GuestStateSink {
  write(chunk: Buffer): Promise<void>;
  end(): Promise<void>;
  abort(error: Error): void;
}

/** A sink writing the stream to `file` (created or truncated); each write resolves once its chunk is written. */
export function guestStateFileSink(file: string): GuestStateSink {
  let opened: Promise<FileHandle> | undefined;
  const handle = () => (opened ??= open(file, "w"));
  return {
    async write(chunk) {
      const target = await handle();
      for (let offset = 0; offset < chunk.length; ) {
        const { bytesWritten } = await target.write(chunk, offset, chunk.length - offset);
        offset += bytesWritten;
      }
    },
    async end() {
      await (await handle()).close();
    },
    abort() {
      void opened?.then((target) => target.close()).catch(() => undefined);
    },
  };
}
