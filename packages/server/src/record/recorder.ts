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
 * started (`POST /api/v1/streams/{name}/recording`); the source rendition by default. A failed write (disk full)
 * stops that recording — what was written stays playable — and never touches the live stream.
 */
import { mkdir, open, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../core/logger.js';
import type { Stream } from '../core/stream.js';
import type { CompletedSegment } from '../egress/llhls/llhls-muxer.js';
import type { RecordingRecord, RecordingStore } from '../store/recording-store.js';

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
  /** Renditions recorded (default `['src']`). */
  renditions: readonly string[];
  /** The stream's configuration (undefined for a stream published without one, in open mode). */
  streamConfig(name: string): Promise<RecordedStreamConfig | undefined>;
  /** A recording event was written to the webhook outbox. */
  outboxWritten(): void;
}

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
}

/** Records streams' segments. `close()` waits for writes in flight. */
export class Recorder {
  /** Recordings in progress, by stream name. */
  private readonly active = new Map<string, Active>();
  /** Decisions taken per stream object: undefined while asking, then whether it records. */
  private readonly decided = new WeakMap<Stream, Promise<boolean>>();
  /** Streams an operator asked to record (from their next segment) or to stop recording, by name. */
  private readonly requested = new Map<string, boolean>();
  readonly counters = { segmentsWritten: 0, bytesWritten: 0, writeFailures: 0 };

  constructor(
    private readonly store: RecordingStore,
    private readonly options: RecorderOptions,
    private readonly log: Logger,
  ) {}

  /** The directory of a recording (its renditions are subdirectories). */
  dirOf(id: string): string {
    return join(this.options.dataDir, 'recordings', id);
  }

  /** The recording in progress of `name`, if any. */
  current(name: string): { id: string | undefined; stopping: boolean; error: string | undefined } | undefined {
    const a = this.active.get(name);
    return a && { id: a.id, stopping: a.stopping, error: a.error };
  }

  /** An operator starts recording live `stream` from its next source segment (idempotent). */
  start(stream: Stream): void {
    if (this.active.get(stream.name)?.stream === stream) return;
    this.requested.set(stream.name, true);
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
    if (rendition !== this.options.renditions[0]) return;
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
    if (rendition !== this.options.renditions[0]) return;
    const a = this.active.get(stream.name);
    if (a && a.stream === stream) void this.finish(a, undefined).catch((err: unknown) => this.log.error({ err, reason }, 'recording could not be finished'));
    this.requested.delete(stream.name);
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
      renditions: this.options.renditions,
      seq: new Map(),
      inits: new Set(),
      chain: Promise.resolve(),
      stopping: false,
      error: undefined,
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
        await mkdir(dir, { recursive: true });
        const initKey = `${rendition}/${segment.initId}`;
        if (!a.inits.has(initKey)) {
          await writeSynced(join(dir, `init${segment.initId}.mp4`), segment.init);
          a.inits.add(initKey);
          await this.store.addBytes(a.id, segment.init.length);
        }
        await writeSynced(join(dir, `seg${seq}.m4s`), segment.bytes);
        await this.store.addSegment(
          a.id,
          { rendition, seq, initId: segment.initId, duration: segment.duration, bytes: segment.bytes.length, discontinuity: segment.discontinuity && seq > 0, programDateTime: segment.programDateTime },
          rendition === a.renditions[0],
        );
        this.counters.segmentsWritten++;
        this.counters.bytesWritten += segment.bytes.length;
      } catch (err) {
        // A full disk or a broken directory stops this recording; what was written stays playable.
        this.counters.writeFailures++;
        a.error = `recording stopped: ${(err as NodeJS.ErrnoException).code ?? ''} ${(err as Error).message}`.trim();
        this.log.error({ err, stream: a.stream.name, recording: a.id }, 'recording stopped: a segment could not be written');
        void this.finish(a, a.error);
      }
    });
  }

  /** Ends a recording after its pending writes: `ready` with what it has (`failed` when nothing). */
  private async finish(a: Active, error: string | undefined): Promise<RecordingRecord | undefined> {
    if (this.active.get(a.stream.name) === a) this.active.delete(a.stream.name);
    a.stopping = true;
    const chain = a.chain;
    await chain;
    const r = await a.record;
    if (!r) return undefined;
    const done = await this.store.finish(r.id, error ?? a.error);
    this.options.outboxWritten();
    this.log.info({ stream: a.stream.name, recording: r.id, state: done?.state, durationMs: done?.durationMs }, 'recording ended');
    return done;
  }

  /** Deletes a recording's files (its rows are the store's). */
  async deleteFiles(id: string): Promise<void> {
    await rm(this.dirOf(id), { recursive: true, force: true });
  }

  /** Ends every recording in progress (server shutdown), waiting for their writes. */
  async close(): Promise<void> {
    await Promise.all([...this.active.values()].map((a) => this.finish(a, undefined).catch(() => undefined)));
  }
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
