/** Configured streams and their publish keys. */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Kysely } from 'kysely';
import { GlasscastError } from '../core/errors.js';
import { STREAM_NAME_PATTERN } from '../core/stream-registry.js';
import type { DatabaseSchema } from './database.js';

/** A configured stream. */
export interface StreamRecord {
  name: string;
  /** Secret publish key (RTMP stream key). */
  key: string;
  createdAt: string;
}

/** A fresh random stream key: 24 bytes, base64url (32 characters). */
export function generateStreamKey(): string {
  return randomBytes(24).toString('base64url');
}

/** Reads and writes `streams`. */
export class StreamStore {
  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  /** Every configured stream, oldest first. */
  async list(): Promise<StreamRecord[]> {
    const rows = await this.db.selectFrom('streams').selectAll().orderBy('created_at').execute();
    return rows.map((r) => ({ name: r.name, key: r.stream_key, createdAt: r.created_at }));
  }

  /** The stream of that name. */
  async findByName(name: string): Promise<StreamRecord | undefined> {
    const r = await this.db.selectFrom('streams').selectAll().where('name', '=', name).executeTakeFirst();
    return r && { name: r.name, key: r.stream_key, createdAt: r.created_at };
  }

  /** The stream whose key is `key` (compared in constant time per candidate). */
  async findByKey(key: string): Promise<StreamRecord | undefined> {
    if (key.length === 0 || key.length > 256) return undefined;
    const all = await this.list();
    const wanted = Buffer.from(key);
    return all.find((s) => {
      const have = Buffer.from(s.key);
      return have.length === wanted.length && timingSafeEqual(have, wanted);
    });
  }

  /**
   * Creates a stream with a random key.
   * @throws GlasscastError `STREAM_NAME_INVALID` for a bad or taken name.
   */
  async create(name: string): Promise<StreamRecord> {
    if (!STREAM_NAME_PATTERN.test(name)) throw new GlasscastError('STREAM_NAME_INVALID', `stream name "${name.slice(0, 80)}" is not allowed`);
    if (await this.findByName(name)) throw new GlasscastError('STREAM_NAME_INVALID', `stream ${name} already exists`);
    const record: StreamRecord = { name, key: generateStreamKey(), createdAt: new Date().toISOString() };
    await this.db.insertInto('streams').values({ name, stream_key: record.key, created_at: record.createdAt }).execute();
    return record;
  }
}
