/**
 * Failed authentications per client address (wrong API key, bad playback token, wrong stream key over WHIP):
 * past `limit` in a minute, the address gets `429 RATE_LIMITED` with `Retry-After` until the minute is over, so
 * keys cannot be guessed at line rate. In memory; bounded.
 */
import { RateLimitedError } from '../core/errors.js';

/** Most addresses tracked; past it the table starts over (an attack from that many addresses is not stopped here). */
const MAX_ADDRESSES = 50_000;
const WINDOW_MS = 60_000;

/** Counts failures per address in fixed one-minute windows. */
export class FailureLimiter {
  private readonly windows = new Map<string, { start: number; count: number }>();

  /** @param limit failures allowed per address per minute (0 = no limit). */
  constructor(private readonly limit: number) {}

  /**
   * @throws RateLimitedError when `address` already failed `limit` times this minute.
   */
  check(address: string, now = Date.now()): void {
    if (this.limit <= 0) return;
    const w = this.windows.get(address);
    if (w && now - w.start < WINDOW_MS && w.count >= this.limit) {
      throw new RateLimitedError('too many failed authentications from this address; wait and retry', Math.ceil((w.start + WINDOW_MS - now) / 1000));
    }
  }

  /** Counts one failure of `address`. */
  failed(address: string, now = Date.now()): void {
    if (this.limit <= 0) return;
    let w = this.windows.get(address);
    if (!w || now - w.start >= WINDOW_MS) {
      if (this.windows.size >= MAX_ADDRESSES) this.windows.clear();
      w = { start: now, count: 0 };
      this.windows.set(address, w);
    }
    w.count++;
  }
}
