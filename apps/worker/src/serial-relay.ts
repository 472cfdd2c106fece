// Streams each vm's serial log into Redis, where the portal reads it. QEMU appends to
// <vmDir>/serial.log; we watch the vm's folder (the file may not exist yet when QEMU is
// starting) and, on each change, send what lies past the last offset. No polling.
import { type FSWatcher, watch } from "node:fs";
import { open, stat } from "node:fs/promises";
import { basename, dirname } from "node:path";

import { redisKeys, serialLogMaxChunks } from "@ferry/jobs";
import type { Redis } from "ioredis";
import type { Logger } from "pino";

const chunkBytes = 64 * 1024;

interface Followed {
  logFile: string;
  offset: number;
  watcher: FSWatcher;
  draining: Promise<void> | undefined;
  again: boolean;
}

/** Follows vms' serial logs and XADDs new output to `redisKeys.serialLog(prefix, vmId)`. */
export class SerialRelay {
  readonly #followed = new Map<string, Followed>();
  readonly #offsets = new Map<string, number>();

  constructor(private readonly options: { redis: Redis; prefix: string; log: Logger }) {}

  /**
   * Start following a vm's serial log; call it before QEMU starts so no output is missed.
   * Output written before this process first followed the vm (a previous worker run) is
   * not sent again.
   */
  async follow(vmId: string, logFile: string): Promise<void> {
    if (this.#followed.has(vmId)) return;
    let offset = this.#offsets.get(vmId);
    if (offset === undefined) offset = await stat(logFile).then((s) => s.size, () => 0);
    const name = basename(logFile);
    const watcher = watch(dirname(logFile), (_event, file) => {
      if (file === name) this.#drain(vmId);
    });
    watcher.on("error", (error) => this.options.log.warn({ vmId, err: error }, "serial log watch failed"));
    this.#followed.set(vmId, { logFile, offset, watcher, draining: undefined, again: false });
    this.#drain(vmId);
  }

  /** Stop following (after sending what is left); `forget` drops the offset too (vm deleted). */
  async unfollow(vmId: string, { forget = false } = {}): Promise<void> {
    const followed = this.#followed.get(vmId);
    if (followed) {
      followed.watcher.close();
      this.#drain(vmId);
      await followed.draining;
      this.#followed.delete(vmId);
      this.#offsets.set(vmId, followed.offset);
    }
    if (forget) this.#offsets.delete(vmId);
  }

  async close(): Promise<void> {
    await Promise.all([...this.#followed.keys()].map((vmId) => this.unfollow(vmId)));
  }

  #drain(vmId: string): void {
    const followed = this.#followed.get(vmId);
    if (!followed) return;
    if (followed.draining) {
      followed.again = true;
      return;
    }
    followed.draining = (async () => {
      do {
        followed.again = false;
        try {
          await this.#send(vmId, followed);
        } catch (error) {
          this.options.log.warn({ vmId, err: error }, "sending serial output to Redis failed; retrying on the next change");
        }
      } while (followed.again);
      followed.draining = undefined;
    })();
  }

  async #send(vmId: string, followed: Followed): Promise<void> {
    let file;
    try {
      file = await open(followed.logFile, "r");
    } catch {
      return; // QEMU has not created it yet; its creation is a change we will see.
    }
    try {
      const { size } = await file.stat();
      if (size < followed.offset) followed.offset = 0; // the log was replaced
      const key = redisKeys.serialLog(this.options.prefix, vmId);
      while (followed.offset < size) {
        const buffer = new Uint8Array(Math.min(chunkBytes, size - followed.offset));
        const { bytesRead } = await file.read(buffer, 0, buffer.length, followed.offset);
        if (bytesRead === 0) break;
        const data = Buffer.from(buffer.buffer, 0, bytesRead);
        await this.options.redis.xadd(key, "MAXLEN", "~", serialLogMaxChunks, "*", "data", data);
        followed.offset += bytesRead;
      }
    } finally {
      await file.close();
    }
  }
}
