/**
 * Admin API keys (table `api_keys`). A token is `gcs_<id>_<secret>`, shown once when created; only its SHA-256
 * is stored, so a copy of the database does not give API access.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { Kysely } from 'kysely';
import { GlasscastError } from '../core/errors.js';
import type { DatabaseSchema } from './database.js';

/**
 * Scopes an API key may hold. `admin` holds every scope. `streams:read` sees every stream with its keys and
 * sessions; `streams:write` creates, changes, deletes, rotates keys, disconnects and kicks; `stats:read` reads
 * stats, history and `/metrics`; `webhooks` manages subscriptions and deliveries; `playback-tokens` mints
 * playback tokens; `api-keys` manages API keys.
 */
export const API_SCOPES = ['admin', 'streams:read', 'streams:write', 'stats:read', 'webhooks', 'playback-tokens', 'api-keys'] as const;

/** One scope. */
export type ApiScope = (typeof API_SCOPES)[number];

/** An API key as listed (never its token). */
export interface ApiKeyRecord {
  id: string;
  name: string;
  scopes: ApiScope[];
  createdAt: string;
  lastUsedAt: string | undefined;
  revokedAt: string | undefined;
}

/** How long a verified token is remembered, ms. */
const VERIFIED_CACHE_MS = 1000;

const hash = (token: string): string => createHash('sha256').update(token).digest('hex');
const iso = (ms: number | null): string | undefined => (ms === null ? undefined : new Date(ms).toISOString());

/** True when `scopes` grant `wanted` (`admin` grants all). */
export function hasScope(scopes: readonly string[], wanted: ApiScope): boolean {
  return scopes.includes('admin') || scopes.includes(wanted);
}

/** Reads and writes `api_keys`. */
export class ApiKeyStore {
  /** Keys seen recently: last-use writes are at most one a minute per key. */
  private readonly lastUseWritten = new Map<string, number>();
  /**
   * Verified tokens for {@link VERIFIED_CACHE_MS}, so a dashboard polling several times a second costs one
   * lookup a second. A revocation through this store clears it at once; one made by another process (the CLI)
   * takes effect within that time.
   */
  private readonly verified = new Map<string, { at: number; key: { id: string; scopes: ApiScope[] } | undefined }>();

  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  /**
   * Creates a key; returns it with its token (shown once).
   * @throws GlasscastError `BAD_REQUEST` for an unknown scope or no scope.
   */
  async create(name: string, scopes: readonly string[]): Promise<ApiKeyRecord & { token: string }> {
    if (scopes.length === 0) throw new GlasscastError('BAD_REQUEST', `an API key needs at least one scope (${API_SCOPES.join(', ')})`);
    for (const s of scopes) {
      if (!(API_SCOPES as readonly string[]).includes(s)) throw new GlasscastError('BAD_REQUEST', `unknown scope "${s.slice(0, 40)}"; known: ${API_SCOPES.join(', ')}`);
    }
    const id = randomBytes(6).toString('hex');
    const token = `gcs_${id}_${randomBytes(24).toString('base64url')}`;
    const createdAt = Date.now();
    await this.db.insertInto('api_keys').values({ id, name: name.slice(0, 100), token_hash: hash(token), scopes: [...new Set(scopes)].join(' '), created_at: createdAt, last_used_at: null, revoked_at: null }).execute();
    return { id, name, scopes: [...new Set(scopes)] as ApiScope[], createdAt: new Date(createdAt).toISOString(), lastUsedAt: undefined, revokedAt: undefined, token };
  }

  /** Keys in id order, `limit` after `after`; revoked ones included (with `revokedAt`). */
  async list(limit = 1000, after?: string): Promise<ApiKeyRecord[]> {
    let q = this.db.selectFrom('api_keys').selectAll().orderBy('id').limit(limit);
    if (after !== undefined) q = q.where('id', '>', after);
    return (await q.execute()).map((r) => ({ id: r.id, name: r.name, scopes: r.scopes.split(' ') as ApiScope[], createdAt: new Date(r.created_at).toISOString(), lastUsedAt: iso(r.last_used_at), revokedAt: iso(r.revoked_at) }));
  }

  /** How many keys exist (revoked included). */
  async count(): Promise<number> {
    const r = await this.db.selectFrom('api_keys').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirst();
    return Number(r?.n ?? 0);
  }

  /** The live key of `token` and its scopes, or undefined (unknown, malformed or revoked). */
  async verify(token: string): Promise<{ id: string; scopes: ApiScope[] } | undefined> {
    if (!/^gcs_[0-9a-f]{12}_[A-Za-z0-9_-]{32}$/.test(token)) return undefined;
    const cached = this.verified.get(token);
    if (cached && Date.now() - cached.at < VERIFIED_CACHE_MS) return cached.key;
    const key = await this.lookup(token);
    if (this.verified.size >= 10_000) this.verified.clear();
    this.verified.set(token, { at: Date.now(), key });
    return key;
  }

  private async lookup(token: string): Promise<{ id: string; scopes: ApiScope[] } | undefined> {
    const r = await this.db.selectFrom('api_keys').select(['id', 'scopes', 'revoked_at']).where('token_hash', '=', hash(token)).executeTakeFirst();
    if (!r || r.revoked_at !== null) return undefined;
    const now = Date.now();
    if (now - (this.lastUseWritten.get(r.id) ?? 0) > 60_000) {
      this.lastUseWritten.set(r.id, now);
      await this.db.updateTable('api_keys').set({ last_used_at: now }).where('id', '=', r.id).execute();
    }
    return { id: r.id, scopes: r.scopes.split(' ') as ApiScope[] };
  }

  /**
   * Revokes a key (its token stops working at once).
   * @throws GlasscastError `NOT_FOUND` when there is no live key `id`.
   */
  async revoke(id: string): Promise<void> {
    const r = await this.db.updateTable('api_keys').set({ revoked_at: Date.now() }).where('id', '=', id).where('revoked_at', 'is', null).executeTakeFirst();
    this.verified.clear();
    if (Number(r.numUpdatedRows) === 0) throw new GlasscastError('NOT_FOUND', `no live API key ${id.slice(0, 40)}`);
  }
}
