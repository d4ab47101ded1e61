/**
 * LL-HLS viewers: HTTP has no sessions, so a viewer is what its requests have in common — its playback token
 * when it has one, else its address and User-Agent (viewers behind one NAT with the same browser count as
 * one). A viewer is new on its first request (the admission hook is asked then), counts while it requests at
 * least every {@link VIEWER_IDLE_MS}, and has left after that. A kicked viewer is refused until its token
 * expires (or for {@link KICK_MS} without one).
 */
import { createHash } from 'node:crypto';

/** A viewer with no request for this long has left, ms. */
export const VIEWER_IDLE_MS = 10_000;
/** How long a kicked viewer without a token stays refused, ms. */
export const KICK_MS = 5 * 60_000;
/** Most viewers tracked per server; past it new ones are served but not tracked. */
const MAX_VIEWERS = 100_000;

/** One LL-HLS viewer. */
export interface LlHlsViewer {
  /** `hls-` + 16 hex characters derived from the key (stable for the viewer's requests). */
  id: string;
  stream: string;
  address: string;
  /** Epoch ms. */
  startedAt: number;
  lastSeenAt: number;
  /** When its right to play was last checked, epoch ms. */
  checkedAt: number;
  bytesSent: number;
  /** The rendition of its last media request (`src`, `720p`, …). */
  rendition: string;
  viewerId: string | undefined;
  tokenId: string | undefined;
  /** Token expiry, epoch ms, if it has a token. */
  expiresAt: number | undefined;
}

/** The viewers of every stream. */
export class LlHlsViewers {
  private readonly viewers = new Map<string, LlHlsViewer>();
  private readonly kicked = new Map<string, number>();

  /** The key of a request: its token, else address + User-Agent; per stream. */
  static key(stream: string, token: string | undefined, address: string, userAgent: string | undefined): string {
    return createHash('sha256').update(token ? `t\0${stream}\0${token}` : `a\0${stream}\0${address}\0${userAgent ?? ''}`).digest('hex').slice(0, 16);
  }

  /** Keys by what they are made of: hashing once per viewer, not once per request. */
  private readonly keys = new Map<string, string>();

  /** {@link LlHlsViewers.key}, remembered. */
  keyOf(stream: string, token: string | undefined, address: string, userAgent: string | undefined): string {
    const raw = `${stream}\0${token ?? ''}\0${token ? '' : address}\0${token ? '' : (userAgent ?? '')}`;
    let key = this.keys.get(raw);
    if (key === undefined) {
      if (this.keys.size >= MAX_VIEWERS) this.keys.clear();
      key = LlHlsViewers.key(stream, token, address, userAgent);
      this.keys.set(raw, key);
    }
    return key;
  }

  /** The viewer of `key`, if it is current. */
  get(key: string, now = Date.now()): LlHlsViewer | undefined {
    const v = this.viewers.get(key);
    return v && now - v.lastSeenAt < VIEWER_IDLE_MS ? v : undefined;
  }

  /** True when `key` was kicked and may not come back yet. */
  isKicked(key: string, now = Date.now()): boolean {
    const until = this.kicked.get(key);
    if (until === undefined) return false;
    if (until > now) return true;
    this.kicked.delete(key);
    return false;
  }

  /** Adds a viewer (after it was authorized). */
  add(key: string, viewer: Omit<LlHlsViewer, 'id' | 'bytesSent' | 'lastSeenAt' | 'checkedAt'>): LlHlsViewer | undefined {
    if (this.viewers.size >= MAX_VIEWERS) return undefined;
    const v: LlHlsViewer = { ...viewer, id: `hls-${key}`, bytesSent: 0, lastSeenAt: viewer.startedAt, checkedAt: viewer.startedAt };
    this.viewers.set(key, v);
    return v;
  }

  /** Viewers of `stream` now. */
  of(stream: string, now = Date.now()): LlHlsViewer[] {
    return [...this.viewers.values()].filter((v) => v.stream === stream && now - v.lastSeenAt < VIEWER_IDLE_MS);
  }

  /** Ends the viewer `id` of `stream` and refuses it until its token expires (or for {@link KICK_MS}). */
  kick(stream: string, id: string, now = Date.now()): LlHlsViewer | undefined {
    const key = id.startsWith('hls-') ? id.slice(4) : '';
    const v = this.viewers.get(key);
    if (!v || v.stream !== stream) return undefined;
    this.viewers.delete(key);
    this.kicked.set(key, v.expiresAt ?? now + KICK_MS);
    return v;
  }

  /** Removes and returns viewers idle for {@link VIEWER_IDLE_MS} (they left); drops expired kicks. */
  sweep(now = Date.now()): LlHlsViewer[] {
    const gone: LlHlsViewer[] = [];
    for (const [key, v] of this.viewers) {
      if (now - v.lastSeenAt >= VIEWER_IDLE_MS) {
        this.viewers.delete(key);
        gone.push(v);
      }
    }
    for (const [key, until] of this.kicked) if (until <= now) this.kicked.delete(key);
    return gone;
  }
}
