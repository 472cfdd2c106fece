// The S3-protocol driver: AWS S3, MinIO, Ceph RGW and anything else that speaks the S3 API.
// Imported only through "@ferry/storage/s3" (or openObjectStore's dynamic import), so code
// that uses the folder driver never loads the AWS SDK.
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import { PassThrough, type Readable, Transform } from "node:stream";
import { pipeline } from "node:stream/promises";
import { StorageError } from "./errors.ts";
import { checkKey, checkPrefix, type ObjectInfo, type ObjectStore, type PutOptions } from "./object-store.ts";

/** How to reach one bucket; `endpoint` is omitted for AWS S3 itself. */
export interface S3StoreOptions {
  endpoint?: string;
  region: string;
  bucket: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** true for MinIO, Ceph RGW and most self-hosted servers (http://host/bucket/key). */
  forcePathStyle: boolean;
  /** Multipart part size for large puts; S3 refuses parts under 5 MiB. */
  partSizeBytes?: number;
  /** Keys per list request; S3 returns at most 1000. */
  listPageSize?: number;
}

const mebibyte = 1024 * 1024;
/** The smallest part S3's multipart upload accepts (except the last). */
export const minimumPartSizeBytes = 5 * mebibyte;
const defaultPartSizeBytes = 8 * mebibyte;
// Parts uploading at once; with the part being filled, memory per put stays near 3 parts.
const uploadQueueSize = 2;
const deleteBatchSize = 1000;

const networkErrorCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ENOTFOUND",
  "EAI_AGAIN",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EPIPE",
]);
const deniedErrorNames = new Set(["AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"]);

// Node reports a refused dual-stack connect as an AggregateError whose parts carry the code.
function networkCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== "object" || error === null || depth > 4) return undefined;
  const { code, name, cause, errors } = error as { code?: unknown; name?: unknown; cause?: unknown; errors?: unknown };
  if (typeof code === "string" && networkErrorCodes.has(code)) return code;
  if (name === "TimeoutError") return "timed out";
  if (Array.isArray(errors)) {
    for (const inner of errors) {
      const found = networkCode(inner, depth + 1);
      if (found !== undefined) return found;
    }
  }
  return networkCode(cause, depth + 1);
}

/** Objects in one bucket of an S3-protocol server. */
export class S3Store implements ObjectStore {
  readonly location: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly server: string;
  private readonly partSizeBytes: number;
  private readonly listPageSize: number;

  constructor(options: S3StoreOptions) {
    const partSizeBytes = options.partSizeBytes ?? defaultPartSizeBytes;
    if (!Number.isInteger(partSizeBytes) || partSizeBytes < minimumPartSizeBytes) {
      throw new StorageError(
        "invalid_config",
        `The S3 part size is ${partSizeBytes} bytes; S3 needs at least ${minimumPartSizeBytes} (5 MiB). Pass a larger partSizeBytes.`,
      );
    }
    this.bucket = options.bucket;
    this.server = options.endpoint ?? `AWS S3 (${options.region})`;
    this.location = `s3://${options.bucket} at ${this.server}`;
    this.partSizeBytes = partSizeBytes;
    this.listPageSize = options.listPageSize ?? 1000;
    this.client = new S3Client({
      region: options.region,
      forcePathStyle: options.forcePathStyle,
      credentials: { accessKeyId: options.accessKeyId, secretAccessKey: options.secretAccessKey },
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      // The SDK's default CRC checksums on every request are newer than MinIO, Ceph RGW and
      // s3rver releases still in use; send them only where the S3 API demands one.
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: 3,
      // A dead endpoint must fail in seconds, not hang a vm.suspend job.
      requestHandler: { connectionTimeout: 5_000, socketTimeout: 60_000 },
    });
  }

  async put(key: string, body: Readable, options: PutOptions = {}): Promise<{ bytes: number }> {
    checkKey(key);
    const { contentLength, sha256 } = options;
    if (sha256 !== undefined && contentLength !== undefined && contentLength <= this.partSizeBytes) return this.putHashed(key, body, contentLength, sha256);
    let bytes = 0;
    let uploadFailed = false;
    let sourceError: unknown;
    const counter = new Transform({
      transform(chunk: Buffer, _encoding, done) {
        bytes += chunk.length;
        done(null, chunk);
      },
    });
    // Only the body's own failure counts; tearing down after a failed upload errors it too.
    body.once("error", (error) => {
      if (!uploadFailed) sourceError ??= error;
    });
    const feeding = pipeline(body, counter).catch(() => undefined);
    const upload = new Upload({
      client: this.client,
      params: { Bucket: this.bucket, Key: key, Body: counter },
      partSize: this.partSizeBytes,
      queueSize: uploadQueueSize,
      leavePartsOnError: false,
    });
    try {
      await upload.done();
    } catch (error) {
      uploadFailed = sourceError === undefined;
      counter.destroy();
      await feeding;
      // The caller's stream failed: that is the error to report, not the upload it broke.
      throw sourceError ?? this.translate(error, `writing object ${key}`, key);
    }
    await feeding;
    if (sourceError !== undefined) throw sourceError;
    if (options.contentLength !== undefined && bytes !== options.contentLength) {
      await this.delete(key);
      throw new StorageError(
        "incomplete",
        `Object ${key} received ${bytes} bytes but ${options.contentLength} were announced; nothing was kept. Retry the upload with the whole stream.`,
      );
    }
    return { bytes };
  }

  // One PutObject whose payload hash is the caller's sha256: the SDK would otherwise hash
  // the body itself to sign the request (a guest state's parts are already hashed once).
  private async putHashed(key: string, body: Readable, contentLength: number, sha256: string): Promise<{ bytes: number }> {
    const chunks: Buffer[] = [];
    for await (const chunk of body) chunks.push(chunk as Buffer);
    const data = Buffer.concat(chunks);
    if (data.length !== contentLength) {
      throw new StorageError(
        "incomplete",
        `Object ${key} received ${data.length} bytes but ${contentLength} were announced; nothing was stored. Retry the upload with the whole stream.`,
      );
    }
    const command = new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: data, ContentLength: contentLength });
    command.middlewareStack.add(
      (next) => (args) => {
        (args.request as { headers: Record<string, string> }).headers["x-amz-content-sha256"] = sha256;
        return next(args);
      },
      { step: "build", name: "ferryPayloadSha256" },
    );
    try {
      await this.client.send(command);
    } catch (error) {
      throw this.translate(error, `writing object ${key}`, key);
    }
    return { bytes: data.length };
  }

  async get(key: string): Promise<Readable> {
    checkKey(key);
    let body: Readable;
    try {
      const output = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: key }));
      body = output.Body as Readable;
    } catch (error) {
      throw this.translate(error, `reading object ${key}`, key);
    }
    // Errors while the body streams (a reset connection) get the same translation.
    const translated = new PassThrough();
    body.once("error", (error) => translated.destroy(this.translate(error, `reading object ${key}`, key) as Error));
    translated.once("close", () => body.destroy());
    body.pipe(translated);
    return translated;
  }

  async head(key: string): Promise<{ bytes: number } | null> {
    checkKey(key);
    try {
      const output = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { bytes: output.ContentLength ?? 0 };
    } catch (error) {
      const translated = this.translate(error, `looking up object ${key}`, key);
      if (translated instanceof StorageError && translated.code === "not_found") return null;
      throw translated;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    checkPrefix(prefix);
    let continuationToken: string | undefined;
    do {
      let page;
      try {
        page = await this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: prefix,
            MaxKeys: this.listPageSize,
            ...(continuationToken === undefined ? {} : { ContinuationToken: continuationToken }),
          }),
        );
      } catch (error) {
        throw this.translate(error, `listing objects under "${prefix}"`);
      }
      for (const object of page.Contents ?? []) {
        if (object.Key === undefined) continue;
        yield { key: object.Key, bytes: object.Size ?? 0, lastModified: object.LastModified ?? new Date(0) };
      }
      continuationToken = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (continuationToken !== undefined);
  }

  async delete(key: string): Promise<void> {
    checkKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      const translated = this.translate(error, `deleting object ${key}`, key);
      if (translated instanceof StorageError && translated.code === "not_found") return;
      throw translated;
    }
  }

  async deletePrefix(prefix: string): Promise<number> {
    const keys: string[] = [];
    for await (const object of this.list(prefix)) keys.push(object.key);
    for (let start = 0; start < keys.length; start += deleteBatchSize) {
      const batch = keys.slice(start, start + deleteBatchSize);
      let output;
      try {
        output = await this.client.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
          }),
        );
      } catch (error) {
        throw this.translate(error, `deleting objects under "${prefix}"`);
      }
      const failed = output.Errors ?? [];
      if (failed.length > 0) {
        const first = failed[0]!;
        throw new StorageError(
          first.Code === "AccessDenied" ? "denied" : "io_failed",
          `Deleting objects under "${prefix}" in ${this.location} left ${failed.length} of them (first: ${first.Key}: ${first.Code} ${first.Message ?? ""}). Check the credentials' delete permission and retry.`,
        );
      }
    }
    return keys.length;
  }

  /** Closes the client's connections; call when the process is done with the store. */
  close(): void {
    this.client.destroy();
  }

  private translate(error: unknown, action: string, key?: string): unknown {
    if (error instanceof StorageError) return error;
    const network = networkCode(error);
    if (network !== undefined) {
      return new StorageError(
        "unreachable",
        `Object storage at ${this.server} is unreachable (${network}) while ${action}. Check FERRY_S3_ENDPOINT and that the server is running and reachable from this host.`,
        { cause: error },
      );
    }
    const { name, message } = error as { name?: string; message?: string };
    const status = (error as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
    if (name === "NoSuchBucket") {
      return new StorageError(
        "no_bucket",
        `Bucket ${this.bucket} does not exist at ${this.server} (while ${action}). Create it, or set FERRY_S3_BUCKET to an existing bucket.`,
        { cause: error },
      );
    }
    if (name === "NoSuchKey" || name === "NotFound" || status === 404) {
      return new StorageError("not_found", `No object ${key ?? ""} in ${this.location}. Check the key, or whether it was deleted.`, {
        cause: error,
        details: { key },
      });
    }
    if (status === 403 || (name !== undefined && deniedErrorNames.has(name))) {
      return new StorageError(
        "denied",
        `${this.location} refused ${action} (${name ?? `HTTP ${status}`}). Check FERRY_S3_ACCESS_KEY_ID, FERRY_S3_SECRET_ACCESS_KEY and the bucket policy.`,
        { cause: error },
      );
    }
    return new StorageError(
      "io_failed",
      `${action} in ${this.location} failed (${name ?? "error"}${status === undefined ? "" : `, HTTP ${status}`}: ${message ?? String(error)}). Check the server's logs; retry if it was transient.`,
      { cause: error },
    );
  }
}
