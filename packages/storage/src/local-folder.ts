// The folder driver: each object is a file under the root, at the path its key names. A put
// writes to a temporary file in `<root>/.ferry-partial/`, fsyncs it and renames it into place,
// so an object is complete or absent even if the worker dies mid-write. One folder on a
// shared file system (NFS, CephFS) lets several workers share guest states without S3.
import { randomUUID } from "node:crypto";
import { type Dirent } from "node:fs";
import { mkdir, open, readdir, rename, rm, rmdir, stat } from "node:fs/promises";
import { dirname, isAbsolute, join } from "node:path";
import type { Readable } from "node:stream";
import { StorageError } from "./errors.ts";
import { checkKey, checkPrefix, type ObjectInfo, type ObjectStore } from "./object-store.ts";

// Temporary files live here; the name is reserved and never listed.
const partialDir = ".ferry-partial";

function errnoCode(error: unknown): string | undefined {
  return typeof error === "object" && error !== null && "syscall" in error ? (error as NodeJS.ErrnoException).code : undefined;
}

/** Objects stored as files under one local (or network-mounted) folder. */
export class LocalFolderStore implements ObjectStore {
  readonly location: string;

  constructor(readonly rootDir: string) {
    if (!isAbsolute(rootDir)) {
      throw new StorageError(
        "invalid_config",
        `The storage folder ${JSON.stringify(rootDir)} is not an absolute path. Set FERRY_STORAGE_PATH to one, e.g. /var/lib/ferry/objects.`,
      );
    }
    this.location = `folder ${rootDir}`;
  }

  async put(key: string, body: Readable, options: { contentLength?: number } = {}): Promise<{ bytes: number }> {
    this.checkObjectKey(key);
    const temporary = join(this.rootDir, partialDir, randomUUID());
    let placed = false;
    try {
      await mkdir(dirname(temporary), { recursive: true });
      const handle = await open(temporary, "wx");
      let bytes = 0;
      try {
        for await (const chunk of body) {
          const data = typeof chunk === "string" ? Buffer.from(chunk) : (chunk as Buffer);
          for (let offset = 0; offset < data.length; ) {
            offset += (await handle.write(data, offset, data.length - offset)).bytesWritten;
          }
          bytes += data.length;
        }
        await handle.sync();
      } finally {
        await handle.close();
      }
      if (options.contentLength !== undefined && bytes !== options.contentLength) {
        throw new StorageError(
          "incomplete",
          `Object ${key} received ${bytes} bytes but ${options.contentLength} were announced; nothing was stored. Retry the upload with the whole stream.`,
        );
      }
      await this.place(temporary, key);
      placed = true;
      return { bytes };
    } catch (error) {
      throw this.translate(error, `writing object ${key}`);
    } finally {
      if (!placed) await rm(temporary, { force: true });
    }
  }

  async get(key: string): Promise<Readable> {
    this.checkObjectKey(key);
    try {
      const handle = await open(this.pathOf(key), "r");
      if (!(await handle.stat()).isFile()) {
        await handle.close();
        throw this.notFound(key);
      }
      return handle.createReadStream();
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") throw this.notFound(key);
      throw this.translate(error, `reading object ${key}`);
    }
  }

  async head(key: string): Promise<{ bytes: number } | null> {
    this.checkObjectKey(key);
    try {
      const info = await stat(this.pathOf(key));
      return info.isFile() ? { bytes: info.size } : null;
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") return null;
      throw this.translate(error, `looking up object ${key}`);
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    // Start at the deepest folder the prefix names whole; filter the rest by string prefix.
    const folderKey = prefix.slice(0, prefix.lastIndexOf("/") + 1);
    yield* this.walk(folderKey, prefix);
  }

  async delete(key: string): Promise<void> {
    this.checkObjectKey(key);
    try {
      await rm(this.pathOf(key), { force: true });
    } catch (error) {
      throw this.translate(error, `deleting object ${key}`);
    }
    await this.removeEmptyFolders(key);
  }

  async deletePrefix(prefix: string): Promise<number> {
    const keys: string[] = [];
    for await (const object of this.list(prefix)) keys.push(object.key);
    for (const key of keys) await this.delete(key);
    return keys.length;
  }

  private pathOf(key: string): string {
    return join(this.rootDir, ...key.split("/"));
  }

  private checkObjectKey(key: string): void {
    checkKey(key);
    if (key === partialDir || key.startsWith(`${partialDir}/`)) {
      throw new StorageError(
        "invalid_key",
        `Object key ${JSON.stringify(key)} is invalid: "${partialDir}/" is reserved for the folder driver's unfinished writes. Choose another key.`,
      );
    }
  }

  private notFound(key: string): StorageError {
    return new StorageError("not_found", `No object ${key} in ${this.location}. Check the key, or whether it was deleted.`, {
      details: { key },
    });
  }

  // A concurrent delete may remove the (empty) parent folder between mkdir and rename.
  private async place(temporary: string, key: string): Promise<void> {
    const target = this.pathOf(key);
    for (let attempt = 1; ; attempt++) {
      await mkdir(dirname(target), { recursive: true });
      try {
        await rename(temporary, target);
        break;
      } catch (error) {
        if (errnoCode(error) !== "ENOENT" || attempt === 3) throw error;
      }
    }
    // The rename is durable only once the folder holding the new name is synced.
    const folder = await open(dirname(target), "r");
    try {
      await folder.sync();
    } finally {
      await folder.close();
    }
  }

  private async removeEmptyFolders(key: string): Promise<void> {
    const segments = key.split("/").slice(0, -1);
    while (segments.length > 0) {
      try {
        await rmdir(join(this.rootDir, ...segments));
      } catch {
        return; // not empty, already gone, or in use: the folder stays, which is harmless
      }
      segments.pop();
    }
  }

  private async *walk(folderKey: string, prefix: string): AsyncIterable<ObjectInfo> {
    let entries: Dirent[];
    try {
      entries = await readdir(folderKey === "" ? this.rootDir : this.pathOf(folderKey.slice(0, -1)), { withFileTypes: true });
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ENOENT" || code === "ENOTDIR") return;
      throw this.translate(error, `listing ${prefix === "" ? "all objects" : `objects under ${prefix}`}`);
    }
    for (const entry of entries) {
      if (folderKey === "" && entry.name === partialDir) continue;
      const key = folderKey + entry.name;
      if (entry.isDirectory()) {
        const childFolder = `${key}/`;
        if (childFolder.startsWith(prefix) || prefix.startsWith(childFolder)) yield* this.walk(childFolder, prefix);
      } else if (entry.isFile() && key.startsWith(prefix)) {
        try {
          const info = await stat(join(this.rootDir, ...key.split("/")));
          yield { key, bytes: info.size, lastModified: info.mtime };
        } catch (error) {
          if (errnoCode(error) !== "ENOENT") throw this.translate(error, `listing object ${key}`);
        }
      }
    }
  }

  // File system errors become StorageErrors; errors from the caller's body stream pass unchanged.
  private translate(error: unknown, action: string): unknown {
    const code = errnoCode(error);
    if (code === undefined) return error;
    const where = `${action} in ${this.location}`;
    switch (code) {
      case "EACCES":
      case "EPERM":
      case "EROFS":
        return new StorageError(
          "denied",
          `${where} was refused (${code}). Make ${this.rootDir} writable by the worker's user, or set FERRY_STORAGE_PATH to a folder it may write.`,
          { cause: error },
        );
      case "ENOSPC":
      case "EDQUOT":
        return new StorageError(
          "io_failed",
          `${where} failed: the device holding ${this.rootDir} is full (${code}). Free space (prune old guest states) or move FERRY_STORAGE_PATH.`,
          { cause: error },
        );
      case "ENOTDIR":
      case "EISDIR":
      case "EEXIST":
        return new StorageError(
          "invalid_key",
          `${where} failed (${code}): the key collides with an existing object or folder of the same name (the folder driver cannot hold both "a" and "a/b"). Use keys that are never a prefix folder of another key.`,
          { cause: error },
        );
      default:
        return new StorageError("io_failed", `${where} failed (${code}: ${(error as Error).message}). Check the folder and its file system.`, {
          cause: error,
        });
    }
  }
}
