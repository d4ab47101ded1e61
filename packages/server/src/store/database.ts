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

/** Table `schema_version`. */
export interface SchemaVersionTable {
  version: number;
}

/** The database schema as kysely sees it. */
export interface DatabaseSchema {
  streams: StreamsTable;
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
];

/** Opens (creating if needed) `<dataDir>/glasscast.db` and brings its schema up to date. */
export async function openDatabase(dataDir: string): Promise<Kysely<DatabaseSchema>> {
  mkdirSync(dataDir, { recursive: true });
  const sqlite = new SqliteDatabase(join(dataDir, 'glasscast.db'));
  sqlite.pragma('journal_mode = WAL');
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
