/**
 * Uploads recordings to S3-compatible storage (issue 13): AWS S3, Cloudflare R2, Google Cloud Storage (XML API with
 * HMAC keys), MinIO — anything that speaks the S3 protocol — with @aws-sdk/client-s3 and lib-storage.
 *
 * The queue is the `uploads` table (store/recording-store.ts): every segment and init segment is queued as it is
 * synced, the recording's VOD playlist and MP4 when it ends. One worker takes the oldest due file; a failure is
 * retried with exponential backoff (1 s doubling to 60 s) for as long as it takes, so an outage or a restart only
 * delays the upload. When a recording has nothing left to upload it becomes `uploaded` (`recording.uploaded`), and
 * its local files are kept or removed (`--s3-keep-local`); playback then redirects to short-lived signed URLs.
 *
 * Object keys: `<prefix><recording id>/<file>` (`recordings/rec_x/src/seg3.m4s`, `…/src/index.m3u8`,
 * `…/download.mp4`).
 */
import { createReadStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { Upload } from '@aws-sdk/lib-storage';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import type { Logger } from '../core/logger.js';
import type { RecordingStore, UploadJob } from '../store/recording-store.js';

/** Where recordings go. */
export interface S3Target {
  /** `https://s3.eu-west-1.amazonaws.com`, `https://<account>.r2.cloudflarestorage.com`, `https://storage.googleapis.com`, `http://minio:9000`. */
  endpoint: string;
  region: string;
  bucket: string;
  /** Key prefix, e.g. `recordings/`. */
  prefix: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Path-style URLs (`endpoint/bucket/key`): MinIO and most self-hosted servers need them. */
  pathStyle: boolean;
  /** Keep local files after upload (else they are removed and playback redirects to the bucket). */
  keepLocal: boolean;
}

/** First retry delay and the longest, ms. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;
/** How often the worker looks for due uploads when idle, ms. */
const POLL_MS = 1_000;
/** Signed URL lifetime for playback redirects, s. */
const SIGNED_URL_SECONDS = 3600;
/** Multipart part size for large files (the MP4), bytes. */
const PART_BYTES = 8 * 1024 * 1024;

/** Uploads the queue. `close()` stops after the file in flight. */
export class Uploader {
  private readonly client: S3Client;
  private readonly timer: NodeJS.Timeout;
  private running: Promise<void> | undefined;
  private closed = false;
  readonly counters = { uploaded: 0, bytesUploaded: 0, failures: 0 };
  /** The last failure, for status and logs (cleared by a success). */
  lastError: string | undefined;

  constructor(
    readonly target: S3Target,
    private readonly store: RecordingStore,
    private readonly dirOf: (id: string) => string,
    private readonly log: Logger,
    private readonly outboxWritten: () => void,
  ) {
    this.client = new S3Client({
      endpoint: target.endpoint,
      region: target.region,
      forcePathStyle: target.pathStyle,
      credentials: { accessKeyId: target.accessKeyId, secretAccessKey: target.secretAccessKey },
      // Retries are the queue's (they survive restarts); each attempt is bounded.
      maxAttempts: 1,
      requestHandler: { connectionTimeout: 5_000, requestTimeout: 60_000 },
      // Checksums only where S3 requires them: R2, GCS and older servers reject the SDK's default trailers.
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
    });
    this.timer = setInterval(() => this.nudge(), POLL_MS);
    this.timer.unref();
  }

  /** The object key of `file` of recording `id`. */
  keyOf(id: string, file: string): string {
    return `${this.target.prefix}${id}/${file}`;
  }

  /** Starts the worker if it is idle. */
  nudge(): void {
    if (this.closed || this.running) return;
    this.running = this.work().finally(() => (this.running = undefined));
  }

  /** Uploads due files one after another until none is due. */
  private async work(): Promise<void> {
    for (;;) {
      if (this.closed) return;
      const job = await this.store.nextUpload().catch(() => undefined);
      if (!job) return;
      await this.upload(job);
    }
  }

  private async upload(job: UploadJob): Promise<void> {
    const path = join(this.dirOf(job.recordingId), job.file);
    try {
      const info = await stat(path).catch(() => undefined);
      if (!info) {
        // The recording was deleted, or its local file was removed: nothing to send.
        await this.store.uploadDone(job.seq);
        return;
      }
      const upload = new Upload({
        client: this.client,
        params: { Bucket: this.target.bucket, Key: this.keyOf(job.recordingId, job.file), Body: createReadStream(path), ContentType: job.contentType, ContentLength: info.size },
        partSize: PART_BYTES,
        queueSize: 2,
      });
      await upload.done();
      await this.store.uploadDone(job.seq);
      this.counters.uploaded++;
      this.counters.bytesUploaded += info.size;
      if (this.lastError) this.log.info({ recording: job.recordingId, file: job.file }, 'uploads going again');
      this.lastError = undefined;
      await this.maybeComplete(job.recordingId);
    } catch (err) {
      this.counters.failures++;
      const message = `${(err as Error).name ?? 'Error'}: ${(err as Error).message ?? String(err)}`.slice(0, 300);
      const delay = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** Math.min(job.attempts, 16));
      if (!this.lastError) this.log.warn({ recording: job.recordingId, file: job.file, err: message, retryInMs: delay }, 'upload failed; retrying with backoff');
      this.lastError = message;
      await this.store.uploadFailed(job.seq, message, Date.now() + delay).catch(() => undefined);
    }
  }

  /** Marks an `uploading` recording `uploaded` once nothing of it is pending; removes local files if so configured. */
  async maybeComplete(id: string): Promise<void> {
    if ((await this.store.pendingUploads(id)) > 0) return;
    if (!(await this.store.transition(id, 'uploading', 'uploaded'))) return;
    this.outboxWritten();
    this.log.info({ recording: id, bucket: this.target.bucket, prefix: this.keyOf(id, '') }, 'recording uploaded');
    if (!this.target.keepLocal) await rm(this.dirOf(id), { recursive: true, force: true });
  }

  /** A signed GET URL of `file` of recording `id` (playback of files no longer on local disk). */
  signedUrl(id: string, file: string): Promise<string> {
    return getSignedUrl(this.client, new GetObjectCommand({ Bucket: this.target.bucket, Key: this.keyOf(id, file) }), { expiresIn: SIGNED_URL_SECONDS });
  }

  /** Deletes every object of recording `id` from the bucket. */
  async deleteRemote(id: string): Promise<void> {
    const prefix = this.keyOf(id, '');
    let token: string | undefined;
    do {
      const page = await this.client.send(new ListObjectsV2Command({ Bucket: this.target.bucket, Prefix: prefix, ContinuationToken: token }));
      // One DELETE per object: Google Cloud Storage's XML API has no multi-object delete.
      for (const o of page.Contents ?? []) await this.client.send(new DeleteObjectCommand({ Bucket: this.target.bucket, Key: o.Key! }));
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
  }

  /** Stops taking files; waits for the one in flight. */
  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.timer);
    await this.running;
    this.client.destroy();
  }
}
