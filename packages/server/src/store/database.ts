/**
 * The embedded database: SQLite in the data directory (better-sqlite3), queried through kysely. Migrations run
 * at open, in order, inside a transaction each.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import SqliteDatabase from 'better-sqlite3';
import { Kysely, SqliteDialect, sql } from 'kysely';

/** Table `streams`: one row per configured stream. */
export interface StreamsTable {
  name: string;
  stream_key: string;
  created_at: string;
}

/** Columns added to `streams` by migration 2 (the platform: metadata, visibility, key rotation). */
export interface StreamsPlatformColumns {
  title: string;
  description: string;
  /** `public` | `unlisted` | `private`. */
  visibility: string;
  /** Ladder override (transcode/ladder.ts syntax), or null for the server's ladder. */
  ladder: string | null;
  /** The key before the last rotation, accepted until `previous_key_expires_at` (epoch ms). */
  previous_key: string | null;
  previous_key_expires_at: number | null;
  updated_at: string;
  /** Migration 3: the SRT passphrase callers must encrypt with (10–79 characters), or null. */
  srt_passphrase: string | null;
  /** Migration 4: 1 when every broadcast of this stream is recorded. */
  record: number;
  /** Migration 7: 0 when venue mode's peer-to-peer sharing is switched off for this stream (the kill switch). */
  p2p: number;
}

/** Table `api_keys`: admin API keys; only a SHA-256 of each token is stored. */
export interface ApiKeysTable {
  id: string;
  name: string;
  token_hash: string;
  /** Space-separated scopes. */
  scopes: string;
  created_at: number;
  last_used_at: number | null;
  revoked_at: number | null;
}

/** Table `settings`: server-wide values made once (the playback token secret). */
export interface SettingsTable {
  key: string;
  value: string;
}

/** Table `webhooks`: subscriptions. */
export interface WebhooksTable {
  id: string;
  url: string;
  /** JSON array of event types (`*` for all). */
  events: string;
  /** `whsec_<base64>` (Standard Webhooks). */
  secret: string;
  created_at: number;
  disabled: number;
}

/** Table `webhook_messages`: the outbox, one row per event per subscription. */
export interface WebhookMessagesTable {
  /** Insertion order: messages of one subscription and stream are delivered in this order. */
  seq: number | null;
  /** `webhook-id` (Standard Webhooks), the same on every attempt. */
  id: string;
  webhook_id: string;
  type: string;
  /** Ordering key: the stream name, or '' for events about no stream. */
  stream: string;
  /** The JSON body sent. */
  payload: string;
  created_at: number;
  /** `pending` | `delivered` | `failed` (gave up). */
  state: string;
  attempts: number;
  next_attempt_at: number;
  last_status: number | null;
  last_error: string | null;
  delivered_at: number | null;
}

/** Table `webhook_deliveries`: one row per attempt (the delivery log). */
export interface WebhookDeliveriesTable {
  seq: number | null;
  message_id: string;
  webhook_id: string;
  attempt: number;
  at: number;
  /** HTTP status, or null when no response came. */
  status: number | null;
  error: string | null;
  duration_ms: number;
}

/** Table `broadcasts`: one row per live session of a stream (history that outlives the stream). */
export interface BroadcastsTable {
  id: string;
  stream: string;
  protocol: string;
  started_at: number;
  ended_at: number | null;
  peak_viewers: number;
  bytes_in: number;
  bytes_out: number;
}

/** Table `recordings` (migration 4): one row per recording of a broadcast. */
export interface RecordingsTable {
  id: string;
  stream: string;
  /** Epoch ms. */
  started_at: number;
  ended_at: number | null;
  /** Sum of the recorded segments of the first rendition, ms. */
  duration_ms: number;
  /** Bytes on disk, every rendition. */
  size_bytes: number;
  /** JSON array of rendition names (`src`, `480p`, …). */
  renditions: string;
  /** `recording` | `finalizing` | `ready` | `failed` | `uploading` | `uploaded`. */
  state: string;
  error: string | null;
  /** The stream's visibility when recording began (a private stream's recordings stay private). */
  visibility: string;
}

/** Table `recording_segments` (migration 4): each segment on disk, written after its file is synced. */
export interface RecordingSegmentsTable {
  recording_id: string;
  rendition: string;
  /** 0, 1, 2… within the rendition. */
  seq: number;
  /** The init segment it needs (`init<init_id>.mp4`). */
  init_id: number;
  /** Seconds. */
  duration: number;
  bytes: number;
  discontinuity: number;
  /** Epoch ms of its first picture. */
  program_date_time: number;
}

/** Table `uploads` (migration 4): the S3 upload queue, one row per file of a recording. */
export interface UploadsTable {
  seq: number | null;
  recording_id: string;
  /** The file's path inside the recording's directory (`src/seg3.m4s`, `download.mp4`). */
  file: string;
  content_type: string;
  /** `pending` | `done`. */
  state: string;
  attempts: number;
  /** Epoch ms. */
  next_attempt_at: number;
  last_error: string | null;
}

/** Table `schema_version`. */
export interface SchemaVersionTable {
  version: number;
}

/** The database schema as kysely sees it. */
export interface DatabaseSchema {
  streams: StreamsTable & StreamsPlatformColumns;
  api_keys: ApiKeysTable;
  settings: SettingsTable;
  webhooks: WebhooksTable;
  webhook_messages: WebhookMessagesTable;
  webhook_deliveries: WebhookDeliveriesTable;
  broadcasts: BroadcastsTable;
  recordings: RecordingsTable;
  recording_segments: RecordingSegmentsTable;
  uploads: UploadsTable;
  schema_version: SchemaVersionTable;
}

const MIGRATIONS: ((db: Kysely<DatabaseSchema>) => Promise<void>)[] = [
  async (db) => {
    await db.schema
      .createTable('streams')
      .addColumn('name', 'text', (c) => c.primaryKey())
      .addColumn('stream_key', 'text', (c) => c.notNull().unique())
      .addColumn('created_at', 'text', (c) => c.notNull())
      .execute();
  },
  async (db) => {
    await sql`ALTER TABLE streams ADD COLUMN title TEXT NOT NULL DEFAULT ''`.execute(db);
    await sql`ALTER TABLE streams ADD COLUMN description TEXT NOT NULL DEFAULT ''`.execute(db);
    await sql`ALTER TABLE streams ADD COLUMN visibility TEXT NOT NULL DEFAULT 'public'`.execute(db);
    await sql`ALTER TABLE streams ADD COLUMN ladder TEXT`.execute(db);
    await sql`ALTER TABLE streams ADD COLUMN previous_key TEXT`.execute(db);
    await sql`ALTER TABLE streams ADD COLUMN previous_key_expires_at INTEGER`.execute(db);
    await sql`ALTER TABLE streams ADD COLUMN updated_at TEXT NOT NULL DEFAULT ''`.execute(db);
    await sql`CREATE INDEX streams_previous_key ON streams (previous_key)`.execute(db);
    await db.schema
      .createTable('api_keys')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('name', 'text', (c) => c.notNull())
      .addColumn('token_hash', 'text', (c) => c.notNull().unique())
      .addColumn('scopes', 'text', (c) => c.notNull())
      .addColumn('created_at', 'integer', (c) => c.notNull())
      .addColumn('last_used_at', 'integer')
      .addColumn('revoked_at', 'integer')
      .execute();
    await db.schema.createTable('settings').addColumn('key', 'text', (c) => c.primaryKey()).addColumn('value', 'text', (c) => c.notNull()).execute();
    await db.schema
      .createTable('webhooks')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('url', 'text', (c) => c.notNull())
      .addColumn('events', 'text', (c) => c.notNull())
      .addColumn('secret', 'text', (c) => c.notNull())
      .addColumn('created_at', 'integer', (c) => c.notNull())
      .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await db.schema
      .createTable('webhook_messages')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('id', 'text', (c) => c.notNull().unique())
      .addColumn('webhook_id', 'text', (c) => c.notNull())
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('stream', 'text', (c) => c.notNull())
      .addColumn('payload', 'text', (c) => c.notNull())
      .addColumn('created_at', 'integer', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', 'integer', (c) => c.notNull())
      .addColumn('last_status', 'integer')
      .addColumn('last_error', 'text')
      .addColumn('delivered_at', 'integer')
      .execute();
    await sql`CREATE INDEX webhook_messages_pending ON webhook_messages (state, webhook_id, stream, seq)`.execute(db);
    await db.schema
      .createTable('webhook_deliveries')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('message_id', 'text', (c) => c.notNull())
      .addColumn('webhook_id', 'text', (c) => c.notNull())
      .addColumn('attempt', 'integer', (c) => c.notNull())
      .addColumn('at', 'integer', (c) => c.notNull())
      .addColumn('status', 'integer')
      .addColumn('error', 'text')
      .addColumn('duration_ms', 'integer', (c) => c.notNull())
      .execute();
    await sql`CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, seq)`.execute(db);
    await db.schema
      .createTable('broadcasts')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('stream', 'text', (c) => c.notNull())
      .addColumn('protocol', 'text', (c) => c.notNull())
      .addColumn('started_at', 'integer', (c) => c.notNull())
      .addColumn('ended_at', 'integer')
      .addColumn('peak_viewers', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('bytes_in', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('bytes_out', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    await sql`CREATE INDEX broadcasts_by_stream ON broadcasts (stream, started_at)`.execute(db);
  },
  async (db) => {
    await sql`ALTER TABLE streams ADD COLUMN srt_passphrase TEXT`.execute(db);
  },
  async (db) => {
    await sql`ALTER TABLE streams ADD COLUMN record INTEGER NOT NULL DEFAULT 0`.execute(db);
    await db.schema
      .createTable('recordings')
      .addColumn('id', 'text', (c) => c.primaryKey())
      .addColumn('stream', 'text', (c) => c.notNull())
      .addColumn('started_at', 'integer', (c) => c.notNull())
      .addColumn('ended_at', 'integer')
      .addColumn('duration_ms', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('size_bytes', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('renditions', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('error', 'text')
      .addColumn('visibility', 'text', (c) => c.notNull().defaultTo('public'))
      .execute();
    await sql`CREATE INDEX recordings_by_start ON recordings (started_at, id)`.execute(db);
    await sql`CREATE INDEX recordings_by_stream ON recordings (stream, started_at)`.execute(db);
    await db.schema
      .createTable('recording_segments')
      .addColumn('recording_id', 'text', (c) => c.notNull())
      .addColumn('rendition', 'text', (c) => c.notNull())
      .addColumn('seq', 'integer', (c) => c.notNull())
      .addColumn('init_id', 'integer', (c) => c.notNull())
      .addColumn('duration', 'real', (c) => c.notNull())
      .addColumn('bytes', 'integer', (c) => c.notNull())
      .addColumn('discontinuity', 'integer', (c) => c.notNull())
      .addColumn('program_date_time', 'integer', (c) => c.notNull())
      .addPrimaryKeyConstraint('recording_segments_pk', ['recording_id', 'rendition', 'seq'])
      .execute();
    await db.schema
      .createTable('uploads')
      .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('recording_id', 'text', (c) => c.notNull())
      .addColumn('file', 'text', (c) => c.notNull())
      .addColumn('content_type', 'text', (c) => c.notNull())
      .addColumn('state', 'text', (c) => c.notNull())
      .addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0))
      .addColumn('next_attempt_at', 'integer', (c) => c.notNull())
      .addColumn('last_error', 'text')
      .execute();
    await sql`CREATE INDEX uploads_pending ON uploads (state, next_attempt_at, seq)`.execute(db);
    await sql`CREATE UNIQUE INDEX uploads_file ON uploads (recording_id, file)`.execute(db);
  },
  async (db) => {
    await sql`ALTER TABLE streams ADD COLUMN p2p INTEGER NOT NULL DEFAULT 1`.execute(db);
  },
];

/** The open database: kysely for queries; `close()` ends it. */
export type Database = Kysely<DatabaseSchema>;

/** Opens (creating if needed) `<dataDir>/glasscast.db` and brings its schema up to date. */
export async function openDatabase(dataDir: string): Promise<Kysely<DatabaseSchema>> {
  mkdirSync(dataDir, { recursive: true });
  const sqlite = new SqliteDatabase(join(dataDir, 'glasscast.db'));
  sqlite.pragma('journal_mode = WAL');
  // The CLI writes the same file while the server runs: wait for the other's write lock instead of failing.
  sqlite.pragma('busy_timeout = 5000');
  // WAL + NORMAL is durable against a process kill (SIGKILL), the failure the webhook outbox must survive.
  sqlite.pragma('synchronous = NORMAL');
  const db = new Kysely<DatabaseSchema>({ dialect: new SqliteDialect({ database: sqlite }) });
  await sql`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`.execute(db);
  const row = await db.selectFrom('schema_version').select('version').executeTakeFirst();
  let version = row?.version ?? 0;
  if (!row) await db.insertInto('schema_version').values({ version: 0 }).execute();
  while (version < MIGRATIONS.length) {
    const migrate = MIGRATIONS[version]!;
    const next = version + 1;
    await db.transaction().execute(async (trx) => {
      await migrate(trx);
      await trx.updateTable('schema_version').set({ version: next }).execute();
    });
    version = next;
  }
  return db;
}

/**
 * The setting `key`, made by `make()` and stored on first use (one transaction: two processes starting at once
 * agree on one value).
 */
export async function settingOnce(db: Kysely<DatabaseSchema>, key: string, make: () => string): Promise<string> {
  return db.transaction().execute(async (trx) => {
    const row = await trx.selectFrom('settings').select('value').where('key', '=', key).executeTakeFirst();
    if (row) return row.value;
    const value = make();
    await trx.insertInto('settings').values({ key, value }).execute();
    return value;
  });
}
