/**
 * Configured streams: name, metadata, visibility, ladder override and publish keys (with the key before the last
 * rotation, accepted until its grace period ends). Every change writes its webhook event to the outbox in the
 * same transaction (store/webhook-store.ts).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { GlasscastError } from '../core/errors.js';
import { STREAM_NAME_PATTERN } from '../core/stream-registry.js';
import type { DatabaseSchema, StreamsPlatformColumns, StreamsTable } from './database.js';
import { passphraseProblem } from '../ingest/srt/srt-crypto.js';
import { enqueueEvent } from './webhook-store.js';

/** Who may watch: anyone and listed; anyone with the link; only with a playback token. */
export type Visibility = 'public' | 'unlisted' | 'private';

/** A configured stream. */
export interface StreamRecord {
  name: string;
  /** Secret publish key (RTMP stream key, WHIP Bearer token). */
  key: string;
  title: string;
  description: string;
  visibility: Visibility;
  /** Ladder override (transcode/ladder.ts syntax, `none` for no ladder), or undefined for the server's. */
  ladder: string | undefined;
  /** The key before the last rotation while it still publishes, and until when (ISO 8601). */
  previousKey: { key: string; expiresAt: string } | undefined;
  /** SRT callers must encrypt with this passphrase (srt-crypto.ts), or undefined. A secret, like `key`. */
  srtPassphrase: string | undefined;
  /** Every broadcast of the stream is recorded (record/recorder.ts). */
  record: boolean;
  /** Venue mode's viewers may share segments with each other (false: the kill switch; they fetch over HTTP). */
  p2p: boolean;
  createdAt: string;
  updatedAt: string;
}

/** Fields a create or update may set. */
export interface StreamFields {
  title?: string | undefined;
  description?: string | undefined;
  visibility?: Visibility | undefined;
  /** `null` removes the override. */
  ladder?: string | null | undefined;
  /** `null` removes it. Checked: 10–79 characters. */
  srtPassphrase?: string | null | undefined;
  record?: boolean | undefined;
  p2p?: boolean | undefined;
}

/** A fresh random stream key: 24 bytes, base64url (32 characters). */
export function generateStreamKey(): string {
  return randomBytes(24).toString('base64url');
}

function toRecord(r: StreamsTable & StreamsPlatformColumns, now = Date.now()): StreamRecord {
  const previousValid = r.previous_key !== null && r.previous_key_expires_at !== null && r.previous_key_expires_at > now;
  return {
    name: r.name,
    key: r.stream_key,
    title: r.title,
    description: r.description,
    visibility: (['public', 'unlisted', 'private'].includes(r.visibility) ? r.visibility : 'public') as Visibility,
    ladder: r.ladder ?? undefined,
    previousKey: previousValid ? { key: r.previous_key!, expiresAt: new Date(r.previous_key_expires_at!).toISOString() } : undefined,
    srtPassphrase: r.srt_passphrase ?? undefined,
    record: r.record === 1,
    p2p: r.p2p !== 0,
    createdAt: r.created_at,
    updatedAt: r.updated_at || r.created_at,
  };
}

/** The stream's public event data (never a key). */
export function streamEventData(r: StreamRecord): Record<string, unknown> {
  return { name: r.name, title: r.title, description: r.description, visibility: r.visibility, ladder: r.ladder ?? null, srtEncrypted: r.srtPassphrase !== undefined, record: r.record, p2p: r.p2p, createdAt: r.createdAt, updatedAt: r.updatedAt };
}

const sameKey = (a: string, b: string): boolean => {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
};

/** @throws GlasscastError `BAD_REQUEST` for an SRT passphrase outside 10–79 characters. */
function checkPassphrase(passphrase: string | null | undefined): void {
  const problem = passphrase ? passphraseProblem(passphrase) : undefined;
  if (problem) throw new GlasscastError('BAD_REQUEST', problem);
}

/** Reads and writes `streams`. */
export class StreamStore {
  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  /** Configured streams ordered by name, at most `limit`, after the name `after` (cursor pagination). */
  async list(limit = 10_000, after?: string): Promise<StreamRecord[]> {
    let q = this.db.selectFrom('streams').selectAll().orderBy('name').limit(limit);
    if (after !== undefined) q = q.where('name', '>', after);
    const now = Date.now();
    return (await q.execute()).map((r) => toRecord(r, now));
  }

  /** How many streams are configured. */
  async count(): Promise<number> {
    const r = await this.db.selectFrom('streams').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** The stream of that name. */
  async findByName(name: string): Promise<StreamRecord | undefined> {
    const r = await this.db.selectFrom('streams').selectAll().where('name', '=', name).executeTakeFirst();
    return r && toRecord(r);
  }

  /**
   * The stream whose current key is `key`, or whose previous key it is while that key's grace period lasts.
   * The row is found by index; the key is then compared in constant time.
   */
  async findByKey(key: string): Promise<StreamRecord | undefined> {
    if (key.length === 0 || key.length > 256) return undefined;
    const rows = await this.db.selectFrom('streams').selectAll().where((eb) => eb.or([eb('stream_key', '=', key), eb('previous_key', '=', key)])).execute();
    const now = Date.now();
    for (const r of rows) {
      if (sameKey(r.stream_key, key)) return toRecord(r, now);
      if (r.previous_key !== null && sameKey(r.previous_key, key) && (r.previous_key_expires_at ?? 0) > now) return toRecord(r, now);
    }
    return undefined;
  }

  /**
   * Creates a stream with a random key; emits `stream.created`.
   * @throws GlasscastError `STREAM_NAME_INVALID` for a bad name; `STREAM_EXISTS` for a taken one.
   */
  async create(name: string, fields: StreamFields = {}): Promise<StreamRecord> {
    if (!STREAM_NAME_PATTERN.test(name)) throw new GlasscastError('STREAM_NAME_INVALID', `stream name "${name.slice(0, 80)}" is not allowed (letters, digits, - _ . ; 1–64 characters)`);
    checkPassphrase(fields.srtPassphrase);
    const now = new Date().toISOString();
    return this.db.transaction().execute(async (trx) => {
      if (await trx.selectFrom('streams').select('name').where('name', '=', name).executeTakeFirst()) {
        throw new GlasscastError('STREAM_EXISTS', `stream ${name} already exists`);
      }
      const row = {
        name,
        stream_key: generateStreamKey(),
        created_at: now,
        updated_at: now,
        title: fields.title ?? '',
        description: fields.description ?? '',
        visibility: fields.visibility ?? 'public',
        ladder: fields.ladder ?? null,
        previous_key: null,
        previous_key_expires_at: null,
        srt_passphrase: fields.srtPassphrase ?? null,
        record: fields.record ? 1 : 0,
        p2p: fields.p2p === false ? 0 : 1,
      };
      await trx.insertInto('streams').values(row).execute();
      const record = toRecord(row);
      await enqueueEvent(trx, { type: 'stream.created', stream: name, data: streamEventData(record) });
      return record;
    });
  }

  /**
   * Changes a stream's fields; emits `stream.updated` with the names of the fields that changed.
   * @throws GlasscastError `STREAM_NOT_FOUND`.
   */
  async update(name: string, fields: StreamFields): Promise<StreamRecord> {
    checkPassphrase(fields.srtPassphrase);
    return this.db.transaction().execute(async (trx) => {
      const before = await trx.selectFrom('streams').selectAll().where('name', '=', name).executeTakeFirst();
      if (!before) throw new GlasscastError('STREAM_NOT_FOUND', `no stream ${name.slice(0, 64)}`);
      const set: Partial<StreamsPlatformColumns> = {};
      if (fields.title !== undefined) set.title = fields.title;
      if (fields.description !== undefined) set.description = fields.description;
      if (fields.visibility !== undefined) set.visibility = fields.visibility;
      if (fields.ladder !== undefined) set.ladder = fields.ladder;
      if (fields.srtPassphrase !== undefined) set.srt_passphrase = fields.srtPassphrase;
      if (fields.record !== undefined) set.record = fields.record ? 1 : 0;
      if (fields.p2p !== undefined) set.p2p = fields.p2p ? 1 : 0;
      const changed = Object.keys(set).filter((k) => set[k as keyof typeof set] !== before[k as keyof typeof before]);
      if (changed.length === 0) return toRecord(before);
      set.updated_at = new Date().toISOString();
      const row = await trx.updateTable('streams').set(set).where('name', '=', name).returningAll().executeTakeFirstOrThrow();
      const record = toRecord(row);
      await enqueueEvent(trx, { type: 'stream.updated', stream: name, data: { ...streamEventData(record), changed } });
      return record;
    });
  }

  /**
   * Gives the stream a new key. The old key still publishes for `graceMs` (0: refused at once); a publisher
   * already live on it is not cut. Emits `stream.key_rotated` (without keys).
   * @throws GlasscastError `STREAM_NOT_FOUND`.
   */
  async rotateKey(name: string, graceMs: number): Promise<StreamRecord> {
    return this.db.transaction().execute(async (trx) => {
      const before = await trx.selectFrom('streams').selectAll().where('name', '=', name).executeTakeFirst();
      if (!before) throw new GlasscastError('STREAM_NOT_FOUND', `no stream ${name.slice(0, 64)}`);
      const now = Date.now();
      const row = await trx
        .updateTable('streams')
        .set({
          stream_key: generateStreamKey(),
          previous_key: graceMs > 0 ? before.stream_key : null,
          previous_key_expires_at: graceMs > 0 ? now + graceMs : null,
          updated_at: new Date(now).toISOString(),
        })
        .where('name', '=', name)
        .returningAll()
        .executeTakeFirstOrThrow();
      const record = toRecord(row, now);
      await enqueueEvent(trx, { type: 'stream.key_rotated', stream: name, data: { name, previousKeyExpiresAt: record.previousKey?.expiresAt ?? null } });
      return record;
    });
  }

  /**
   * Removes a stream (its broadcast history stays); emits `stream.deleted`.
   * @throws GlasscastError `STREAM_NOT_FOUND`.
   */
  async delete(name: string): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const r = await trx.deleteFrom('streams').where('name', '=', name).executeTakeFirst();
      if (Number(r.numDeletedRows) === 0) throw new GlasscastError('STREAM_NOT_FOUND', `no stream ${name.slice(0, 64)}`);
      await enqueueEvent(trx, { type: 'stream.deleted', stream: name, data: { name } });
    });
  }
}
