/**
 * The recorder (issue 13): keeps the LL-HLS muxer's completed segments of recorded streams on disk, as the CMAF
 * fMP4 segments viewers were served (no second muxing, no re-encode), so a recording is the broadcast's own
 * segments with their init segments and can be served as an HLS playlist while it is still growing.
 *
 * Layout: `<dataDir>/recordings/<id>/<rendition>/init<n>.mp4` (one per codec change) and `seg<seq>.m4s`. Each file
 * is written, synced (fdatasync) and closed before its row goes to the database (store/recording-store.ts): after a
 * crash the rows name exactly the playable segments, and at most the segment in progress is lost. A publisher's
 * reconnect within the grace period is the same stream object, so the same recording continues (the segment after
 * it carries a discontinuity); a new broadcast is a new recording.
 *
 * What is recorded: every stream with `--record all`, a stream whose `record` flag is set, or one an operator
 * started (`POST /api/v1/streams/{name}/recording`); the source rendition by default. A failed write, or a disk
 * with less free space than `minFreeBytes`, stops that recording — what was written stays playable — and never
 * touches the live stream. Retention deletes ended recordings past an age or a disk quota, oldest first.
 */
import { mkdir, open, rm, statfs, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { Stream } from '../core/stream.js';
import type { CompletedSegment } from '../egress/llhls/llhls-muxer.js';
import type { RecordingRecord, RecordingStore } from '../store/recording-store.js';
import { makeMp4 } from './mp4.js';
import type { Uploader } from './uploader.js';
import { renderVodPlaylist } from './vod-playlist.js';

/** What the recorder needs to know of a stream's configuration. */
export interface RecordedStreamConfig {
  /** The stream's own `record` flag. */
  record: boolean;
  visibility: string;
}

/** Options of the recorder. */
export interface RecorderOptions {
  /** `<dataDir>/recordings` holds the files. */
  dataDir: string;
  /** `all`: every stream is recorded; `none`: only streams with their flag set, or started over the API. */
  mode: 'all' | 'none';
  /** Renditions recorded (default `['src']`; `src` first: a recording begins with a source segment). */
  renditions: readonly string[];
  /** The stream's configuration (undefined for a stream published without one, in open mode). */
  streamConfig(name: string): Promise<RecordedStreamConfig | undefined>;
  /** A recording event was written to the webhook outbox. */
  outboxWritten(): void;
  /** Recordings older than this are deleted, ms (0: kept). */
  retentionMs: number;
  /** Most bytes recordings may use; the oldest ended ones are deleted past it (0: no quota). */
  quotaBytes: number;
  /** Recording stops when the disk has less free space than this, bytes. */
  minFreeBytes: number;
  /** A recording stopped early (disk full, a failed write): for `stream.health`. Must not throw. */
  stopped?: (stream: string, reason: string) => void;
  /** The stream's newest thumbnail (JPEG), kept with its recording. */
  thumbnail?: (stream: string) => Buffer | undefined;
  /** Uploads to S3-compatible storage, when configured. */
  uploader?: Uploader;
  /** The disk's free bytes under `dataDir` (statfs); injectable for tests. */
  freeBytes?: (dir: string) => Promise<number>;
}

/** How often retention runs without a segment to trigger it, ms. */
const RETENTION_INTERVAL_MS = 10 * 60_000;
/** Least time between two retention sweeps, ms. */
const SWEEP_SPACING_MS = 5_000;

/** One stream object's recording. */
interface Active {
  stream: Stream;
  /** Resolves with the recording (undefined when it could not be created). */
  record: Promise<RecordingRecord | undefined>;
  id: string | undefined;
  renditions: readonly string[];
  /** Next segment number per rendition. */
  seq: Map<string, number>;
  /** `<rendition>/<initId>` already on disk. */
  inits: Set<string>;
  /** Writes run one after another, in segment order. */
  chain: Promise<void>;
  /** Set once the recording is ending: later segments are not written. */
  stopping: boolean;
  /** Why writing stopped early (a failed write), kept on the recording. */
  error: string | undefined;
  /** Its thumbnail was written. */
  thumbnail: boolean;
}

/** The recording's thumbnail is taken when this many segments are written. */
const THUMBNAIL_AFTER_SEGMENTS = 2;

/** Records streams' segments. `close()` waits for writes in flight. */
export class Recorder {
  /** Recordings in progress, by stream name. */
  private readonly active = new Map<string, Active>();
  /** Finishes in flight (close waits for them). */
  private readonly finishing = new Set<Promise<RecordingRecord | undefined>>();
  /** Decisions taken per stream object: undefined while asking, then whether it records. */
  private readonly decided = new WeakMap<Stream, Promise<boolean>>();
  /** Streams an operator asked to record (from their next segment) or to stop recording, by name. */
  private readonly requested = new Map<string, boolean>();
  /** Renditions an operator asked for, by stream name (else the configured ones). */
  private readonly requestedRenditions = new Map<string, readonly string[]>();
  readonly counters = { segmentsWritten: 0, bytesWritten: 0, writeFailures: 0, stoppedForDiskSpace: 0, deletedByRetention: 0 };
  private readonly timer: NodeJS.Timeout;
  private lastSweep = 0;
  private sweeping: Promise<void> | undefined;

  constructor(
    private readonly store: RecordingStore,
    private readonly options: RecorderOptions,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.sweep(), RETENTION_INTERVAL_MS);
    this.timer.unref();
  }

  /**
   * Retention: deletes ended recordings older than the retention time, then the oldest ended ones while every
   * recording together is over the quota. A recording in progress is never deleted, nor for the quota the newest
   * one. Runs one at a time.
   */
  sweep(): Promise<void> {
    this.sweeping ??= (async () => {
      this.lastSweep = Date.now();
      const { retentionMs, quotaBytes } = this.options;
      if (retentionMs <= 0 && quotaBytes <= 0) return;
      const { ended, totalBytes: total, newestId } = await this.store.ended();
      let totalBytes = total;
      const now = Date.now();
      for (const r of ended) {
        const old = retentionMs > 0 && now - Date.parse(r.startedAt) > retentionMs;
        // The newest recording stays whatever the quota: the last broadcast is never lost to it.
        const over = quotaBytes > 0 && totalBytes > quotaBytes && r.id !== newestId;
        if (!old && !over) continue;
        await this.deleteFiles(r.id);
        await this.store.delete(r.id);
        totalBytes -= r.sizeBytes;
        this.counters.deletedByRetention++;
        this.log.info({ recording: r.id, stream: r.stream, startedAt: r.startedAt, sizeBytes: r.sizeBytes, reason: old ? 'older than the retention time' : 'over the disk quota' }, 'recording deleted by retention');
      }
    })()
      .catch((err: unknown) => this.log.error({ err }, 'recording retention failed'))
      .finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  /** The directory of a recording (its renditions are subdirectories). */
  dirOf(id: string): string {
    return join(this.options.dataDir, 'recordings', id);
  }

  /** Recordings in progress. */
  get activeCount(): number {
    return this.active.size;
  }

  /** The recording in progress of `name`, if any. */
  current(name: string): { id: string | undefined; stopping: boolean; error: string | undefined } | undefined {
    const a = this.active.get(name);
    return a && { id: a.id, stopping: a.stopping, error: a.error };
  }

  /**
   * An operator starts recording live `stream` from its next source segment (idempotent), of `renditions`
   * (`src` first; default the configured ones).
   */
  start(stream: Stream, renditions?: readonly string[]): void {
    if (this.active.get(stream.name)?.stream === stream) return;
    this.requested.set(stream.name, true);
    if (renditions && renditions.length > 0) this.requestedRenditions.set(stream.name, ['src', ...renditions.filter((r) => r !== 'src')]);
    this.decided.delete(stream);
  }

  /** An operator stops recording `name`: the recording ends with what it has. Resolves with it, if there was one. */
  async stop(name: string): Promise<RecordingRecord | undefined> {
    this.requested.set(name, false);
    const a = this.active.get(name);
    if (!a) return undefined;
    this.decided.set(a.stream, Promise.resolve(false));
    return this.finish(a, undefined);
  }

  /** LlHlsServer's listener: a segment of `stream`'s `rendition` completed. */
  completed(stream: Stream, rendition: string, segment: CompletedSegment): void {
    const a = this.active.get(stream.name);
    if (a && a.stream === stream) {
      if (!a.stopping && a.renditions.includes(rendition)) this.enqueue(a, rendition, segment);
      return;
    }
    // Recordings begin with a source segment, so every rendition starts at the same point in time.
    if (rendition !== 'src') return;
    if (a && a.stream !== stream) void this.finish(a, undefined); // an old stream object of that name
    let decision = this.decided.get(stream);
    if (!decision) {
      decision = this.shouldRecord(stream.name);
      this.decided.set(stream, decision);
    }
    // The decision is usually known (it was asked at the first segment); the first segment waits for it.
    void decision.then((yes) => {
      if (!yes) return;
      const now = this.active.get(stream.name);
      const target = now && now.stream === stream ? now : this.begin(stream);
      if (!target.stopping && target.renditions.includes(rendition)) this.enqueue(target, rendition, segment);
    });
  }

  /** LlHlsServer's listener: `stream`'s `rendition` ended (the stream is over). */
  ended(stream: Stream, rendition: string, reason: string): void {
    if (rendition !== 'src') return;
    const a = this.active.get(stream.name);
    if (a && a.stream === stream) void this.finish(a, undefined).catch((err: unknown) => this.log.error({ err, reason }, 'recording could not be finished'));
    this.requested.delete(stream.name);
    this.requestedRenditions.delete(stream.name);
  }

  private async shouldRecord(name: string): Promise<boolean> {
    const asked = this.requested.get(name);
    if (asked !== undefined) return asked;
    if (this.options.mode === 'all') return true;
    try {
      return (await this.options.streamConfig(name))?.record ?? false;
    } catch (err) {
      this.log.error({ err, stream: name }, 'could not read whether the stream is recorded');
      return false;
    }
  }

  /** Starts the recording of `stream`: its row is created first, and every write is chained behind that. */
  private begin(stream: Stream): Active {
    const a: Active = {
      stream,
      record: Promise.resolve(undefined),
      id: undefined,
      renditions: this.requestedRenditions.get(stream.name) ?? this.options.renditions,
      seq: new Map(),
      inits: new Set(),
      chain: Promise.resolve(),
      stopping: false,
      error: undefined,
      thumbnail: false,
    };
    a.record = (async () => {
      const config = await this.options.streamConfig(stream.name).catch(() => undefined);
      const r = await this.store.create(stream.name, [...a.renditions], config?.visibility ?? 'public');
      a.id = r.id;
      this.options.outboxWritten();
      this.log.info({ stream: stream.name, recording: r.id, renditions: a.renditions }, 'recording started');
      return r;
    })().catch((err: unknown) => {
      this.log.error({ err, stream: stream.name }, 'recording could not be created');
      if (this.active.get(stream.name) === a) this.active.delete(stream.name);
      return undefined;
    });
    a.chain = a.record.then(() => undefined);
    this.active.set(stream.name, a);
    return a;
  }

  /** Writes one segment (and its init segment the first time), then records it. */
  private enqueue(a: Active, rendition: string, segment: CompletedSegment): void {
    const seq = a.seq.get(rendition) ?? 0;
    a.seq.set(rendition, seq + 1);
    a.chain = a.chain.then(async () => {
      if (!a.id || a.error) return;
      const dir = join(this.dirOf(a.id), rendition);
      try {
        const free = await (this.options.freeBytes ?? diskFreeBytes)(this.options.dataDir);
        if (free < this.options.minFreeBytes) {
          this.counters.stoppedForDiskSpace++;
          throw Object.assign(new Error(`the disk has ${Math.round(free / 1e6)} MB free, under the ${Math.round(this.options.minFreeBytes / 1e6)} MB minimum`), { code: 'ENOSPC' });
        }
        await mkdir(dir, { recursive: true });
        const initKey = `${rendition}/${segment.initId}`;
        const uploader = this.options.uploader;
        if (!a.inits.has(initKey)) {
          await writeSynced(join(dir, `init${segment.initId}.mp4`), segment.init);
          a.inits.add(initKey);
          await this.store.addBytes(a.id, segment.init.length);
          if (uploader) await this.store.enqueueUpload(a.id, `${rendition}/init${segment.initId}.mp4`, 'video/mp4');
        }
        await writeSynced(join(dir, `seg${seq}.m4s`), segment.bytes);
        await this.store.addSegment(
          a.id,
          { rendition, seq, initId: segment.initId, duration: segment.duration, bytes: segment.bytes.length, discontinuity: segment.discontinuity && seq > 0, programDateTime: segment.programDateTime },
          rendition === a.renditions[0],
        );
        if (uploader) {
          await this.store.enqueueUpload(a.id, `${rendition}/seg${seq}.m4s`, 'video/iso.segment');
          uploader.nudge();
        }
        // The recording's thumbnail: the stream's a few seconds in (a first picture is often black). Asking
        // from the first segment on has the thumbnailer make one.
        if (rendition === a.renditions[0] && seq < THUMBNAIL_AFTER_SEGMENTS) this.options.thumbnail?.(a.stream.name);
        if (rendition === a.renditions[0] && seq >= THUMBNAIL_AFTER_SEGMENTS && !a.thumbnail) await this.saveThumbnail(a);
        this.counters.segmentsWritten++;
        this.counters.bytesWritten += segment.bytes.length;
        if (this.options.quotaBytes > 0 && Date.now() - this.lastSweep >= SWEEP_SPACING_MS) void this.sweep();
      } catch (err) {
        // A full disk or a broken directory stops this recording; what was written stays playable.
        this.counters.writeFailures++;
        a.error = `recording stopped: ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim();
        this.log.error({ err, stream: a.stream.name, recording: a.id }, 'recording stopped: a segment could not be written');
        this.options.stopped?.(a.stream.name, a.error);
        void this.finish(a, a.error);
      }
    });
  }

  /** Writes the stream's newest thumbnail as the recording's (`thumbnail.jpg`), once. */
  private async saveThumbnail(a: Active): Promise<void> {
    const jpeg = this.options.thumbnail?.(a.stream.name);
    if (!jpeg || !a.id || a.thumbnail) return;
    a.thumbnail = true;
    await writeSynced(join(this.dirOf(a.id), 'thumbnail.jpg'), jpeg);
    if (this.options.uploader) await this.store.enqueueUpload(a.id, 'thumbnail.jpg', 'image/jpeg');
  }

  /**
   * Ends a recording after its pending writes: `ready` with what it has (`failed` when nothing). `close()` waits
   * for every finish in flight (a stream that ended just before shutdown is no longer among the active ones).
   */
  private finish(a: Active, error: string | undefined): Promise<RecordingRecord | undefined> {
    const done = this.finishNow(a, error);
    this.finishing.add(done);
    const forget = (): void => void this.finishing.delete(done);
    done.then(forget, forget);
    return done;
  }

  private async finishNow(a: Active, error: string | undefined): Promise<RecordingRecord | undefined> {
    if (this.active.get(a.stream.name) === a) this.active.delete(a.stream.name);
    a.stopping = true;
    const chain = a.chain;
    await chain;
    if (!a.error) await this.saveThumbnail(a).catch(() => undefined);
    const r = await a.record;
    if (!r) return undefined;
    const done = await this.store.finish(r.id, error ?? a.error);
    this.options.outboxWritten();
    this.log.info({ stream: a.stream.name, recording: r.id, state: done?.state, durationMs: done?.durationMs }, 'recording ended');
    void this.sweep();
    if (done?.state === 'ready' && this.options.uploader) return this.finalizeUpload(done);
    return done;
  }

  /**
   * A ready recording's last uploads: its VOD playlist and its MP4 join the queue, and it becomes `uploading`
   * (`uploaded` once the queue has sent all of it). Also for recordings a crash left open.
   */
  async finalizeUpload(r: RecordingRecord): Promise<RecordingRecord> {
    const uploader = this.options.uploader;
    if (!uploader || r.state !== 'ready') return r;
    const dir = this.dirOf(r.id);
    for (const rendition of r.renditions) {
      await writeFile(join(dir, rendition, 'index.m3u8'), renderVodPlaylist(await this.store.segments(r.id, rendition), true)).catch(() => undefined);
      await this.store.enqueueUpload(r.id, `${rendition}/index.m3u8`, 'application/vnd.apple.mpegurl');
    }
    try {
      await makeMp4(this.store, dir, r, this.log);
      await this.store.enqueueUpload(r.id, 'download.mp4', 'video/mp4');
    } catch (err) {
      this.log.error({ err, recording: r.id }, 'the MP4 for upload could not be made; the segments are uploaded without it');
    }
    await this.store.transition(r.id, 'ready', 'uploading');
    uploader.nudge();
    await uploader.maybeComplete(r.id);
    return (await this.store.get(r.id)) ?? r;
  }

  /** Deletes a recording's files (its rows are the store's). */
  async deleteFiles(id: string): Promise<void> {
    await rm(this.dirOf(id), { recursive: true, force: true });
  }

  /** Ends every recording in progress (server shutdown), waiting for their writes. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    await Promise.all([...this.active.values()].map((a) => this.finish(a, undefined).catch(() => undefined)));
    await Promise.all([...this.finishing].map((f) => f.catch(() => undefined)));
  }
}

/** Free bytes for unprivileged users on the disk holding `dir`. */
async function diskFreeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Writes `data` to `path`, syncs it to disk and closes it. */
async function writeSynced(path: string, data: Uint8Array): Promise<void> {
  const file = await open(path, 'w');
  try {
    await file.writeFile(data);
    await file.datasync();
  } finally {
    await file.close();
  }
}
