/**
 * Delivers the webhook outbox (store/webhook-store.ts), signed per the Standard Webhooks specification
 * (standardwebhooks.com, "Signature scheme": `webhook-id`, `webhook-timestamp` in seconds, `webhook-signature`
 * = `v1,` + base64 HMAC-SHA256 over `<id>.<timestamp>.<body>` with the secret's bytes after `whsec_`).
 *
 * Durable: the outbox is in SQLite, so a restart (even after SIGKILL) carries on where it stopped; a message
 * delivered just before a kill may be sent again (at-least-once: receivers deduplicate on `webhook-id`).
 * Ordered: of one subscription's messages about one stream, only the oldest pending one is attempted, so a
 * receiver sees them in order. Retries: exponential backoff with jitter (base × 2^(attempt−1), capped, times a
 * random 0.5–1) until the message is `maxAgeMs` old (default 24 h), then it is `failed` and the queue moves on.
 * Isolated: one subscription has at most {@link PER_WEBHOOK_IN_FLIGHT} requests out, each with a timeout, so a
 * dead receiver slows nobody else.
 */
import { createHmac } from 'node:crypto';
import type { Logger } from '../core/logger.js';
import type { WebhookStore } from '../store/webhook-store.js';

/** Options of the dispatcher. */
export interface WebhookDispatcherOptions {
  /** First retry delay, ms (before jitter). Default 1000. */
  retryBaseMs: number;
  /** Longest retry delay, ms. Default 600 000. */
  retryMaxMs: number;
  /** A message still undelivered after this long is given up, ms. Default 86 400 000 (24 h). */
  maxAgeMs: number;
  /** One request's timeout, ms. Default 10 000. */
  timeoutMs: number;
  /** How often the outbox is read when nothing nudges it, ms. Default 1000. */
  pollMs: number;
}

/** Requests out at once, all subscriptions. */
const MAX_IN_FLIGHT = 16;
/** Requests out at once per subscription. */
const PER_WEBHOOK_IN_FLIGHT = 2;
/** Longest error text kept in the log, characters. */
const MAX_ERROR_TEXT = 300;

/** What an attempt came to, for metrics. */
export type DeliveryResult = 'delivered' | 'retry' | 'gave_up';

/**
 * The Standard Webhooks signature of one request: `v1,<base64 HMAC-SHA256>`.
 * @param secret `whsec_<base64>`; `timestamp` in seconds.
 */
export function signWebhook(secret: string, id: string, timestamp: number, body: string): string {
  const key = Buffer.from(secret.startsWith('whsec_') ? secret.slice(6) : secret, 'base64');
  return `v1,${createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64')}`;
}

/** Delivers the outbox. `close()` stops it (requests out are abandoned and retried after a restart). */
export class WebhookDispatcher {
  /** Attempts by result since start. */
  readonly counts: Record<DeliveryResult, number> = { delivered: 0, retry: 0, gave_up: 0 };
  private readonly inFlight = new Set<string>();
  private readonly perWebhook = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private again = false;
  private closed = false;
  private readonly aborts = new AbortController();

  constructor(
    private readonly store: WebhookStore,
    private readonly options: WebhookDispatcherOptions,
    private readonly log: Logger,
  ) {}

  /** Starts reading the outbox. */
  start(): void {
    this.schedule(0);
  }

  /** Something was written to the outbox: read it now rather than at the next poll. */
  nudge(): void {
    if (!this.closed) this.schedule(0);
  }

  /** Stops. Idempotent. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.aborts.abort();
  }

  private schedule(ms: number): void {
    if (this.closed) return;
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.pump(), ms);
    this.timer.unref();
  }

  private async pump(): Promise<void> {
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    try {
      do {
        this.again = false;
        const free = MAX_IN_FLIGHT - this.inFlight.size;
        if (free <= 0) break;
        const heads = await this.store.dueHeads(Date.now(), free + this.inFlight.size);
        for (const head of heads) {
          if (this.closed || this.inFlight.size >= MAX_IN_FLIGHT) break;
          if (this.inFlight.has(head.id) || (this.perWebhook.get(head.webhook_id) ?? 0) >= PER_WEBHOOK_IN_FLIGHT) continue;
          this.inFlight.add(head.id);
          this.perWebhook.set(head.webhook_id, (this.perWebhook.get(head.webhook_id) ?? 0) + 1);
          void this.deliver(head).finally(() => {
            this.inFlight.delete(head.id);
            this.perWebhook.set(head.webhook_id, (this.perWebhook.get(head.webhook_id) ?? 1) - 1);
            // The next message of that queue may be due now.
            this.nudge();
          });
        }
      } while (this.again && !this.closed);
    } catch (err) {
      if (!this.closed) this.log.error({ err }, 'webhook outbox read failed');
    } finally {
      this.running = false;
      this.schedule(this.options.pollMs);
    }
  }

  private async deliver(message: { id: string; webhook_id: string; url: string; secret: string; payload: string; attempts: number; created_at: number; type: string }): Promise<void> {
    const started = Date.now();
    const timestamp = Math.floor(started / 1000);
    let status: number | undefined;
    let error: string | undefined;
    try {
      const res = await fetch(message.url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'user-agent': 'Glasscast-Webhooks/1',
          'webhook-id': message.id,
          'webhook-timestamp': String(timestamp),
          'webhook-signature': signWebhook(message.secret, message.id, timestamp, message.payload),
        },
        body: message.payload,
        redirect: 'manual',
        signal: AbortSignal.any([AbortSignal.timeout(this.options.timeoutMs), this.aborts.signal]),
      });
      status = res.status;
      // Read (and bound) the answer so the connection is reused; its content does not matter.
      await res.body?.cancel().catch(() => undefined);
      if (!res.ok) error = `receiver answered ${res.status}`;
    } catch (err) {
      if (this.closed) return;
      error = ((err as Error).name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : `${(err as Error).message}${(err as { cause?: { code?: string } }).cause?.code ? ` (${(err as { cause: { code: string } }).cause.code})` : ''}`).slice(0, MAX_ERROR_TEXT);
    }
    if (this.closed) return;
    const now = Date.now();
    const attempt = message.attempts + 1;
    let next: { state: 'delivered' | 'failed' } | { state: 'pending'; at: number };
    let result: DeliveryResult;
    if (!error) {
      next = { state: 'delivered' };
      result = 'delivered';
    } else if (now - message.created_at >= this.options.maxAgeMs) {
      next = { state: 'failed' };
      result = 'gave_up';
      this.log.warn({ webhook: message.webhook_id, message: message.id, type: message.type, attempts: attempt }, `webhook given up after ${attempt} attempts: ${error}`);
    } else {
      const delay = Math.min(this.options.retryMaxMs, this.options.retryBaseMs * 2 ** Math.min(attempt - 1, 30));
      next = { state: 'pending', at: now + Math.round(delay * (0.5 + Math.random() * 0.5)) };
      result = 'retry';
      if (attempt === 1 || attempt % 10 === 0) this.log.warn({ webhook: message.webhook_id, message: message.id, type: message.type, attempt }, `webhook delivery failed, will retry: ${error}`);
    }
    this.counts[result]++;
    try {
      await this.store.recordAttempt(message, { at: now, status, error, durationMs: now - started, next });
    } catch (err) {
      if (!this.closed) this.log.error({ err }, 'webhook attempt could not be recorded');
    }
  }
}
