/**
 * Webhook subscriptions, the outbox and the delivery log (SQLite tables `webhooks`, `webhook_messages`,
 * `webhook_deliveries`). An event is written to the outbox by {@link enqueueEvent} inside the transaction of the
 * change it reports, so a change is never stored without its event, nor an event sent for a change that rolled
 * back. Delivery (webhooks/webhook-dispatcher.ts) reads the outbox; the message id is Standard Webhooks'
 * `webhook-id`, the same on every attempt.
 */
import { randomBytes } from 'node:crypto';
import type { Kysely, Transaction } from 'kysely';
import { GlasscastError } from '../core/errors.js';
import type { DatabaseSchema, WebhookMessagesTable } from './database.js';

/** Every event type a subscription can name (`*` names all). */
export const WEBHOOK_EVENTS = [
  'stream.created',
  'stream.updated',
  'stream.deleted',
  'stream.key_rotated',
  'stream.started',
  'stream.ended',
  'stream.health',
  'viewer.joined',
  'viewer.left',
  'recording.started',
  'recording.ready',
  'recording.failed',
  'recording.uploaded',
] as const;

/** An event type. */
export type WebhookEventType = (typeof WEBHOOK_EVENTS)[number];

/** One event as delivered: the Standard Webhooks payload shape (`type`, `timestamp`, `data`). */
export interface WebhookEvent {
  type: WebhookEventType;
  /** The stream it is about; '' for none. Messages of one stream reach a subscription in order. */
  stream: string;
  data: Record<string, unknown>;
}

/** A subscription as the API shows it (the secret only when created). */
export interface WebhookRecord {
  id: string;
  url: string;
  events: string[];
  createdAt: string;
  disabled: boolean;
}

/** One outbox message. */
export interface WebhookMessageRecord {
  id: string;
  webhookId: string;
  type: string;
  stream: string;
  state: 'pending' | 'delivered' | 'failed';
  attempts: number;
  createdAt: string;
  nextAttemptAt: string | undefined;
  deliveredAt: string | undefined;
  lastStatus: number | undefined;
  lastError: string | undefined;
}

/** One delivery attempt. */
export interface WebhookAttemptRecord {
  messageId: string;
  attempt: number;
  at: string;
  status: number | undefined;
  error: string | undefined;
  durationMs: number;
}

/** A database or a transaction on it. */
export type Executor = Kysely<DatabaseSchema> | Transaction<DatabaseSchema>;

/** A fresh Standard Webhooks secret: `whsec_` + base64 of 24 random bytes. */
export function generateWebhookSecret(): string {
  return `whsec_${randomBytes(24).toString('base64')}`;
}

const iso = (ms: number | null | undefined): string | undefined => (ms === null || ms === undefined ? undefined : new Date(ms).toISOString());

/**
 * Writes `event` to the outbox for every enabled subscription that wants it, in the caller's transaction.
 * Returns how many messages were written.
 */
export async function enqueueEvent(trx: Executor, event: WebhookEvent, now = Date.now()): Promise<number> {
  const hooks = await trx.selectFrom('webhooks').select(['id', 'events']).where('disabled', '=', 0).execute();
  let written = 0;
  for (const hook of hooks) {
    const wanted = JSON.parse(hook.events) as string[];
    if (!wanted.includes('*') && !wanted.includes(event.type)) continue;
    await insertMessage(trx, hook.id, event.type, event.stream, event.data, now);
    written++;
  }
  return written;
}

/** Writes one pending message for subscription `webhookId`, due now. */
async function insertMessage(trx: Executor, webhookId: string, type: string, stream: string, data: Record<string, unknown>, now: number): Promise<WebhookMessagesTable> {
  return trx
    .insertInto('webhook_messages')
    .values({
      id: `msg_${randomBytes(12).toString('base64url')}`,
      webhook_id: webhookId,
      type,
      stream,
      payload: JSON.stringify({ type, timestamp: new Date(now).toISOString(), data }),
      created_at: now,
      state: 'pending',
      attempts: 0,
      next_attempt_at: now,
      last_status: null,
      last_error: null,
      delivered_at: null,
    })
    .returningAll()
    .executeTakeFirstOrThrow();
}

function toMessage(r: WebhookMessagesTable): WebhookMessageRecord {
  return {
    id: r.id,
    webhookId: r.webhook_id,
    type: r.type,
    stream: r.stream,
    state: r.state as WebhookMessageRecord['state'],
    attempts: r.attempts,
    createdAt: iso(r.created_at)!,
    nextAttemptAt: r.state === 'pending' ? iso(r.next_attempt_at) : undefined,
    deliveredAt: iso(r.delivered_at),
    lastStatus: r.last_status ?? undefined,
    lastError: r.last_error ?? undefined,
  };
}

/** Reads and writes subscriptions, the outbox and the delivery log. */
export class WebhookStore {
  constructor(private readonly db: Kysely<DatabaseSchema>) {}

  /**
   * Adds a subscription. `secret` defaults to a fresh one.
   * @throws GlasscastError `BAD_REQUEST` for an unknown event type or a secret that is not `whsec_<base64>`.
   */
  async create(input: { url: string; events: string[]; secret?: string | undefined }): Promise<WebhookRecord & { secret: string }> {
    for (const e of input.events) {
      if (e !== '*' && !(WEBHOOK_EVENTS as readonly string[]).includes(e)) throw new GlasscastError('BAD_REQUEST', `unknown event type "${e.slice(0, 40)}"; known: ${WEBHOOK_EVENTS.join(', ')}, *`);
    }
    const secret = input.secret ?? generateWebhookSecret();
    if (!/^whsec_[A-Za-z0-9+/]{16,}={0,2}$/.test(secret)) throw new GlasscastError('BAD_REQUEST', 'secret must be "whsec_" followed by at least 12 bytes in base64 (Standard Webhooks)');
    const id = `wh_${randomBytes(9).toString('base64url')}`;
    const createdAt = Date.now();
    await this.db.insertInto('webhooks').values({ id, url: input.url, events: JSON.stringify(input.events), secret, created_at: createdAt, disabled: 0 }).execute();
    return { id, url: input.url, events: input.events, createdAt: iso(createdAt)!, disabled: false, secret };
  }

  /** Subscriptions in creation order, `limit` after `cursor` (an id). */
  async list(limit: number, after?: string): Promise<WebhookRecord[]> {
    let q = this.db.selectFrom('webhooks').selectAll().orderBy('id').limit(limit);
    if (after) q = q.where('id', '>', after);
    return (await q.execute()).map((r) => ({ id: r.id, url: r.url, events: JSON.parse(r.events) as string[], createdAt: iso(r.created_at)!, disabled: r.disabled !== 0 }));
  }

  /** The subscription `id` with its secret (for signing). */
  async get(id: string): Promise<(WebhookRecord & { secret: string }) | undefined> {
    const r = await this.db.selectFrom('webhooks').selectAll().where('id', '=', id).executeTakeFirst();
    return r && { id: r.id, url: r.url, events: JSON.parse(r.events) as string[], createdAt: iso(r.created_at)!, disabled: r.disabled !== 0, secret: r.secret };
  }

  /** Removes a subscription and its pending messages (the log stays). Returns false if there was none. */
  async delete(id: string): Promise<boolean> {
    return this.db.transaction().execute(async (trx) => {
      const r = await trx.deleteFrom('webhooks').where('id', '=', id).executeTakeFirst();
      await trx.deleteFrom('webhook_messages').where('webhook_id', '=', id).where('state', '=', 'pending').execute();
      return Number(r.numDeletedRows) > 0;
    });
  }

  /** Messages of a subscription, newest first, `limit` before `cursor` (a seq). */
  async messages(webhookId: string, limit: number, before?: number): Promise<{ items: WebhookMessageRecord[]; last: number | undefined }> {
    let q = this.db.selectFrom('webhook_messages').selectAll().where('webhook_id', '=', webhookId).orderBy('seq', 'desc').limit(limit);
    if (before !== undefined) q = q.where('seq', '<', before);
    const rows = await q.execute();
    return { items: rows.map(toMessage), last: rows.length === limit ? (rows[rows.length - 1]!.seq ?? undefined) : undefined };
  }

  /** Attempts of one message, oldest first. */
  async attempts(messageId: string): Promise<WebhookAttemptRecord[]> {
    const rows = await this.db.selectFrom('webhook_deliveries').selectAll().where('message_id', '=', messageId).orderBy('seq').limit(1000).execute();
    return rows.map((r) => ({ messageId: r.message_id, attempt: r.attempt, at: iso(r.at)!, status: r.status ?? undefined, error: r.error ?? undefined, durationMs: r.duration_ms }));
  }

  /**
   * Queues a `webhook.test` message for this subscription alone (the admin page's "send a test"), whatever events
   * it names; it is delivered, signed and logged like any other.
   * @throws GlasscastError `NOT_FOUND` when there is no such subscription.
   */
  async test(webhookId: string, now = Date.now()): Promise<WebhookMessageRecord> {
    const hook = await this.get(webhookId);
    if (!hook) throw new GlasscastError('NOT_FOUND', `no webhook ${webhookId.slice(0, 40)}`);
    return toMessage(await insertMessage(this.db, hook.id, 'webhook.test', '', { webhookId: hook.id, url: hook.url }, now));
  }

  /**
   * Queues a message again now (manual redelivery), whatever its state; it keeps its `webhook-id`.
   * @throws GlasscastError `NOT_FOUND` when the subscription has no such message.
   */
  async redeliver(webhookId: string, messageId: string): Promise<WebhookMessageRecord> {
    const r = await this.db
      .updateTable('webhook_messages')
      .set({ state: 'pending', next_attempt_at: Date.now() })
      .where('id', '=', messageId)
      .where('webhook_id', '=', webhookId)
      .returningAll()
      .executeTakeFirst();
    if (!r) throw new GlasscastError('NOT_FOUND', `webhook ${webhookId.slice(0, 40)} has no message ${messageId.slice(0, 40)}`);
    return toMessage(r);
  }

  /**
   * The head of every queue (subscription × stream) that is due by `now`: the oldest pending message of each
   * queue, if its next attempt is due. Later messages of a queue wait for its head (per-stream order).
   */
  async dueHeads(now: number, limit: number): Promise<(WebhookMessagesTable & { url: string; secret: string })[]> {
    const heads = await this.db
      .selectFrom('webhook_messages as m')
      .innerJoin('webhooks as w', 'w.id', 'm.webhook_id')
      .selectAll('m')
      .select(['w.url', 'w.secret'])
      .where('m.state', '=', 'pending')
      .where('w.disabled', '=', 0)
      .where('m.next_attempt_at', '<=', now)
      .where(({ selectFrom, not, exists }) =>
        not(
          exists(
            selectFrom('webhook_messages as e')
              .select('e.seq')
              .where('e.state', '=', 'pending')
              .whereRef('e.webhook_id', '=', 'm.webhook_id')
              .whereRef('e.stream', '=', 'm.stream')
              .whereRef('e.seq', '<', 'm.seq'),
          ),
        ),
      )
      .orderBy('m.seq')
      .limit(limit)
      .execute();
    return heads;
  }

  /** Records one attempt and the message's new state, in one transaction. */
  async recordAttempt(
    message: { id: string; webhook_id: string; attempts: number },
    outcome: { at: number; status: number | undefined; error: string | undefined; durationMs: number; next: { state: 'delivered' | 'failed' } | { state: 'pending'; at: number } },
  ): Promise<void> {
    await this.db.transaction().execute(async (trx) => {
      const attempt = message.attempts + 1;
      await trx
        .insertInto('webhook_deliveries')
        .values({ message_id: message.id, webhook_id: message.webhook_id, attempt, at: outcome.at, status: outcome.status ?? null, error: outcome.error ?? null, duration_ms: outcome.durationMs })
        .execute();
      await trx
        .updateTable('webhook_messages')
        .set({
          attempts: attempt,
          state: outcome.next.state,
          next_attempt_at: outcome.next.state === 'pending' ? outcome.next.at : outcome.at,
          last_status: outcome.status ?? null,
          last_error: outcome.error ?? null,
          delivered_at: outcome.next.state === 'delivered' ? outcome.at : null,
        })
        .where('id', '=', message.id)
        .execute();
    });
  }

  /** Pending messages now (all subscriptions). */
  async pendingCount(): Promise<number> {
    const r = await this.db.selectFrom('webhook_messages').select((eb) => eb.fn.countAll<number>().as('n')).where('state', '=', 'pending').executeTakeFirst();
    return Number(r?.n ?? 0);
  }
}
