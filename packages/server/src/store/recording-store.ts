/**
 * Recordings (tables `recordings` and `recording_segments`): one row per recording, one per segment on disk. A
 * segment's row is written only after its file is synced (record/recorder.ts), so after a crash the rows name
 * exactly the segments that can be played. State changes carry their `recording.*` webhook events in the same
 * transaction.
 */
import { randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { GlasscastError } from '../core/errors.js';
import type { DatabaseSchema } from './database.js';
import { enqueueEvent } from './webhook-store.js';

/** Where a recording is in its life. */
export type RecordingState = 'recording' | 'finalizing' | 'ready' | 'failed' | 'uploading' | 'uploaded';

/** One file waiting for (or done with) its upload. */
export interface UploadJob {
  seq: number;
  recordingId: string;
  file: string;
  contentType: string;
  attempts: number;
}

/** One recording as the API shows it. */
export interface RecordingRecord {
  id: string;
  stream: string;
  startedAt: string;
  /** Undefined while recording. */
  endedAt: string | undefined;
  /** Recorded media of the first rendition, ms. */
  durationMs: number;
  /** Bytes on disk, every rendition. */
  sizeBytes: number;
  renditions: string[];
  state: RecordingState;
  error: string | undefined;
  /** The stream's visibility when it began: a private stream's recordings need a playback token. */
  visibility: string;
}

/** One segment of a recording. */
export interface RecordingSegment {
  rendition: string;
  seq: number;
  initId: number;
  /** Seconds. */
  duration: number;
  bytes: number;
  discontinuity: boolean;
  /** Epoch ms. */
  programDateTime: number;
}

type Row = DatabaseSchema['recordings'];

function view(r: Row): RecordingRecord {
  return {
    id: r.id,
    stream: r.stream,
    startedAt: new Date(r.started_at).toISOString(),
    endedAt: r.ended_at === null ? undefined : new Date(r.ended_at).toISOString(),
    durationMs: r.duration_ms,
    sizeBytes: r.size_bytes,
    renditions: JSON.parse(r.renditions) as string[],
    state: r.state as RecordingState,
    error: r.error ?? undefined,
    visibility: r.visibility,
  };
}

/** The webhook payload of a recording event. */
function eventData(r: RecordingRecord): Record<string, unknown> {
  return { recordingId: r.id, name: r.stream, startedAt: r.startedAt, endedAt: r.endedAt ?? null, durationMs: r.durationMs, sizeBytes: r.sizeBytes, renditions: r.renditions, state: r.state, ...(r.error ? { error: r.error } : {}) };
}

/** Reads and writes recordings. */
export class RecordingStore {
  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  /** A new recording of `stream` in state `recording`; emits `recording.started`. */
  async create(stream: string, renditions: string[], visibility: string, at = Date.now()): Promise<RecordingRecord> {
    const id = `rec_${randomBytes(9).toString('base64url')}`;
    const row: Row = { id, stream, started_at: at, ended_at: null, duration_ms: 0, size_bytes: 0, renditions: JSON.stringify(renditions), state: 'recording', error: null, visibility };
    await this.db.transaction().execute(async (trx) => {
      await trx.insertInto('recordings').values(row).execute();
      await enqueueEvent(trx, { type: 'recording.started', stream, data: eventData(view(row)) });
    });
    return view(row);
  }

  /** Adds a segment whose file is on disk and synced; the first rendition's segments add to the duration. */
  async addSegment(id: string, segment: RecordingSegment, countsDuration: boolean): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx
        .insertInto('recording_segments')
        .values({ recording_id: id, rendition: segment.rendition, seq: segment.seq, init_id: segment.initId, duration: segment.duration, bytes: segment.bytes, discontinuity: segment.discontinuity ? 1 : 0, program_date_time: segment.programDateTime })
        .execute();
      await trx
        .updateTable('recordings')
        .set((eb) => ({ size_bytes: eb('size_bytes', '+', segment.bytes), duration_ms: eb('duration_ms', '+', countsDuration ? Math.round(segment.duration * 1000) : 0) }))
        .where('id', '=', id)
        .execute();
    });
  }

  /** Adds bytes written besides segments (init segments). */
  async addBytes(id: string, bytes: number): Promise<void> {
    await this.db.updateTable('recordings').set((eb) => ({ size_bytes: eb('size_bytes', '+', bytes) })).where('id', '=', id).execute();
  }

  /**
   * Ends a recording: `ready` when it has media, else `failed` (with `error`); emits `recording.ready` or
   * `recording.failed`. A recording already ended is left as it is.
   */
  async finish(id: string, error: string | undefined, at = Date.now()): Promise<RecordingRecord | undefined> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('recordings').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row || (row.state !== 'recording' && row.state !== 'finalizing')) return row ? view(row) : undefined;
      const segments = await trx.selectFrom('recording_segments').select((eb) => eb.fn.countAll<number>().as('n')).where('recording_id', '=', id).executeTakeFirst();
      const failed = error !== undefined || Number(segments?.n ?? 0) === 0;
      const reason = error ?? (failed ? 'nothing was recorded (no complete segment)' : null);
      const next: Row = { ...row, state: failed ? 'failed' : 'ready', ended_at: row.ended_at ?? at, error: reason };
      await trx.updateTable('recordings').set({ state: next.state, ended_at: next.ended_at, error: next.error }).where('id', '=', id).execute();
      const r = view(next);
      await enqueueEvent(trx, { type: failed ? 'recording.failed' : 'recording.ready', stream: row.stream, data: eventData(r) });
      return r;
    });
  }

  /**
   * Recordings a stopped server left open (crash, SIGKILL): each is finished from the segments it has on record
   * (its end is its start plus what was recorded). Returns them.
   */
  async finishDangling(): Promise<RecordingRecord[]> {
    const open = await this.db.selectFrom('recordings').selectAll().where('state', 'in', ['recording', 'finalizing']).execute();
    const out: RecordingRecord[] = [];
    for (const row of open) {
      const r = await this.finish(row.id, undefined, row.started_at + row.duration_ms);
      if (r) out.push(r);
    }
    return out;
  }

  async get(id: string): Promise<RecordingRecord | undefined> {
    const row = await this.db.selectFrom('recordings').selectAll().where('id', '=', id).executeTakeFirst();
    return row && view(row);
  }

  /** Like get, but a missing recording is RECORDING_NOT_FOUND. */
  async require(id: string): Promise<RecordingRecord> {
    const r = await this.get(id);
    if (!r) throw new GlasscastError('RECORDING_NOT_FOUND', `no recording ${id.slice(0, 64)}`);
    return r;
  }

  /**
   * Recordings newest first, optionally of one stream and started within [from, to) (epoch ms), `limit` at a
   * time after the cursor (the last item's `started_at:id` of the previous page).
   */
  async list(filter: { stream?: string; from?: number; to?: number; limit: number; after?: string; visibility?: string }): Promise<RecordingRecord[]> {
    let q = this.db.selectFrom('recordings').selectAll();
    if (filter.visibility !== undefined) q = q.where('visibility', '=', filter.visibility);
    if (filter.stream !== undefined) q = q.where('stream', '=', filter.stream);
    if (filter.from !== undefined) q = q.where('started_at', '>=', filter.from);
    if (filter.to !== undefined) q = q.where('started_at', '<', filter.to);
    const cursor = /^(\d+):(rec_[\w-]+)$/.exec(filter.after ?? '');
    if (cursor) {
      const at = Number(cursor[1]);
      const id = cursor[2]!;
      q = q.where((eb) => eb.or([eb('started_at', '<', at), eb.and([eb('started_at', '=', at), eb('id', '<', id)])]));
    }
    const rows = await q.orderBy('started_at', 'desc').orderBy('id', 'desc').limit(filter.limit).execute();
    return rows.map(view);
  }

  /** The cursor after `r` in list(). */
  static cursorOf(r: RecordingRecord): string {
    return `${Date.parse(r.startedAt)}:${r.id}`;
  }

  /** A recording's segments of one rendition, in order. */
  async segments(id: string, rendition: string): Promise<RecordingSegment[]> {
    const rows = await this.db.selectFrom('recording_segments').selectAll().where('recording_id', '=', id).where('rendition', '=', rendition).orderBy('seq').execute();
    return rows.map((s) => ({ rendition: s.rendition, seq: s.seq, initId: s.init_id, duration: s.duration, bytes: s.bytes, discontinuity: s.discontinuity === 1, programDateTime: s.program_date_time }));
  }

  /** Ended recordings (`ready` / `failed`), oldest first, the total size of every recording (bytes), and the newest one's id. */
  async ended(): Promise<{ ended: RecordingRecord[]; totalBytes: number; newestId: string | undefined }> {
    const rows = await this.db.selectFrom('recordings').selectAll().orderBy('started_at').orderBy('id').execute();
    return { ended: rows.filter((r) => r.state === 'ready' || r.state === 'failed' || r.state === 'uploaded').map(view), totalBytes: rows.reduce((n, r) => n + r.size_bytes, 0), newestId: rows[rows.length - 1]?.id };
  }

  // ---- the upload queue ----

  /** Queues `file` of recording `id` for upload (once per file). */
  async enqueueUpload(id: string, file: string, contentType: string, at = Date.now()): Promise<void> {
    await this.db
      .insertInto('uploads')
      .values({ recording_id: id, file, content_type: contentType, state: 'pending', attempts: 0, next_attempt_at: at, last_error: null })
      .onConflict((oc) => oc.columns(['recording_id', 'file']).doUpdateSet({ state: 'pending', next_attempt_at: at }))
      .execute();
  }

  /** The next pending upload due at `now`, oldest first. */
  async nextUpload(now = Date.now()): Promise<UploadJob | undefined> {
    const r = await this.db.selectFrom('uploads').selectAll().where('state', '=', 'pending').where('next_attempt_at', '<=', now).orderBy('next_attempt_at').orderBy('seq').limit(1).executeTakeFirst();
    return r ? { seq: r.seq!, recordingId: r.recording_id, file: r.file, contentType: r.content_type, attempts: r.attempts } : undefined;
  }

  async uploadDone(seq: number): Promise<void> {
    await this.db.updateTable('uploads').set({ state: 'done', last_error: null }).where('seq', '=', seq).execute();
  }

  async uploadFailed(seq: number, error: string, nextAttemptAt: number): Promise<void> {
    await this.db.updateTable('uploads').set((eb) => ({ attempts: eb('attempts', '+', 1), last_error: error.slice(0, 500), next_attempt_at: nextAttemptAt })).where('seq', '=', seq).execute();
  }

  /** Uploads of recording `id` not done yet. */
  async pendingUploads(id: string): Promise<number> {
    const r = await this.db.selectFrom('uploads').select((eb) => eb.fn.countAll<number>().as('n')).where('recording_id', '=', id).where('state', '=', 'pending').executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** Whether any of recording `id`'s files was uploaded. */
  async anyUploaded(id: string): Promise<boolean> {
    return (await this.db.selectFrom('uploads').select('seq').where('recording_id', '=', id).where('state', '=', 'done').limit(1).executeTakeFirst()) !== undefined;
  }

  /** Pending uploads in the whole queue, and the oldest one's last error. */
  async uploadBacklog(): Promise<{ pending: number; lastError: string | undefined }> {
    const r = await this.db.selectFrom('uploads').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'pending').executeTakeFirst();
    const e = await this.db.selectFrom('uploads').select('last_error').where('state', '=', 'pending').where('last_error', 'is not', null).orderBy('seq').limit(1).executeTakeFirst();
    return { pending: Number(r?.n ?? 0), lastError: e?.last_error ?? undefined };
  }

  /** Recordings in `state`. */
  async inState(state: RecordingState): Promise<RecordingRecord[]> {
    return (await this.db.selectFrom('recordings').selectAll().where('state', '=', state).execute()).map(view);
  }

  /**
   * Moves a recording from `from` to `to`; `uploaded` emits `recording.uploaded`. False when it was not in `from`.
   */
  async transition(id: string, from: RecordingState, to: RecordingState): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const row = await trx.selectFrom('recordings').selectAll().where('id', '=', id).executeTakeFirst();
      if (!row || row.state !== from) return false;
      await trx.updateTable('recordings').set({ state: to }).where('id', '=', id).execute();
      if (to === 'uploaded') await enqueueEvent(trx, { type: 'recording.uploaded', stream: row.stream, data: eventData(view({ ...row, state: to })) });
      return true;
    });
  }

  /** Removes a recording's rows (its files are the caller's). */
  async delete(id: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      await trx.deleteFrom('uploads').where('recording_id', '=', id).execute();
      await trx.deleteFrom('recording_segments').where('recording_id', '=', id).execute();
      await trx.deleteFrom('recordings').where('id', '=', id).execute();
    });
  }
}
