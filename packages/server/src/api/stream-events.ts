/**
 * Live state pushed to pages (issue 14): Server-Sent Events (WHATWG HTML §9.2, `text/event-stream`) at
 * `GET /api/v1/events` (the directory: every public stream) and `GET /api/v1/streams/{name}/events` (one stream,
 * for its watch page; a private one needs a playback token). Instead of every page polling the status, one
 * ticker looks at the streams somebody listens to every `tickMs` and sends what changed:
 *
 * - `event: streams` once on connect (directory): `{"streams": [StreamSummary, …]}`;
 * - `event: stream` on a change: one `StreamSummary` (a stream that ended is sent once with `state: "offline"`).
 *
 * A change of state, playability or WebRTC is sent on the next tick (an offline watch page starts playing within
 * ~`tickMs` of the stream becoming playable); a change of the viewer count alone at most every
 * `viewerIntervalMs`, so a thousand viewers joining do not make a thousand events per listener. A comment line
 * every 15 s keeps idle connections open through proxies. Listeners are bounded in number; one whose socket
 * buffer stays full (a stalled tab) is dropped, never waited for.
 */
import type { ServerResponse } from 'node:http';

/** What a page shows of a stream; the same for every listener (never a key or an address). */
export interface StreamSummary {
  name: string;
  state: 'live' | 'reconnecting' | 'offline';
  /** An LL-HLS playlist plays now. */
  playable: boolean;
  /** WHEP (WebRTC) plays now. */
  webrtc: boolean;
  /** Viewers now, every protocol. */
  viewers: number;
  title: string;
  /** When the current broadcast started (ISO 8601), if live. */
  startedAt: string | null;
  /** The live thumbnail's URL with its version (`/thumbnails/<name>.jpg?v=<ms>`), once one was made. */
  thumbnail: string | null;
  /** Venue-mode viewers may share segments now (false: P2P off on the server, for this stream, or it is private). */
  p2p: boolean;
}

/** What the events read. */
export interface StreamEventsSource {
  /** Names of the streams with a publisher (live or reconnecting) now. */
  live(): string[];
  /** The summary of `name` now (offline when it has no publisher); visibility decides who hears of it. */
  summary(name: string): { summary: StreamSummary; visibility: 'public' | 'unlisted' | 'private' };
}

/** Options of the events. */
export interface StreamEventsOptions {
  /** How often changes are looked for while anybody listens, ms (default 100). */
  tickMs: number;
  /** Shortest time between two events that only change a stream's viewer count, ms (default 2000). */
  viewerIntervalMs: number;
  /** Most listeners at once (default 10 000); more are refused. */
  maxListeners: number;
}

/** A listener whose unsent output passes this many bytes is dropped (a stalled tab). */
const MAX_BUFFERED_BYTES = 256 * 1024;
/** A comment line this often, ms: proxies and browsers keep a quiet stream open. */
const KEEPALIVE_MS = 15_000;

interface Listener {
  res: ServerResponse;
  /** One stream's page; undefined for the directory. */
  stream: string | undefined;
}

interface Sent {
  summary: StreamSummary;
  /** JSON of the fields other than the viewer count, to tell a real change from a count change. */
  key: string;
  viewersAt: number;
  visibility: string;
}

/** Pushes stream changes to pages. `close()` is idempotent and ends every listener. */
export class StreamEvents {
  private readonly listeners = new Set<Listener>();
  private readonly sent = new Map<string, Sent>();
  private ticker: NodeJS.Timeout | undefined;
  private keepalive: NodeJS.Timeout | undefined;
  private closed = false;
  readonly counters = { events: 0, dropped: 0, refused: 0 };

  constructor(
    private readonly source: StreamEventsSource,
    private readonly options: StreamEventsOptions,
  ) {}

  /** Listeners now. */
  get size(): number {
    return this.listeners.size;
  }

  /**
   * Takes over `res` as an event stream: the directory (`stream` undefined: public streams only) or one stream
   * (the caller has checked the viewer may see it). Returns false (writing nothing) when the listener limit is
   * reached or the events are closed: the caller answers 503.
   */
  listen(res: ServerResponse, stream?: string): boolean {
    if (this.closed || this.listeners.size >= this.options.maxListeners) {
      this.counters.refused++;
      return false;
    }
    const listener: Listener = { res, stream };
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-store', 'x-accel-buffering': 'no', connection: 'keep-alive' });
    // The browser reconnects after 1 s if the connection drops (a server restart).
    res.write('retry: 1000\n\n');
    this.listeners.add(listener);
    res.on('close', () => this.listeners.delete(listener));
    res.on('error', () => this.listeners.delete(listener));
    if (stream === undefined) {
      const streams = this.source
        .live()
        .map((n) => this.source.summary(n))
        .filter((s) => s.visibility === 'public')
        .map((s) => s.summary);
      this.write(listener, 'streams', { streams });
    } else {
      this.write(listener, 'stream', this.source.summary(stream).summary);
    }
    this.ticker ??= setInterval(() => this.tick(), this.options.tickMs);
    this.keepalive ??= setInterval(() => {
      for (const l of this.listeners) this.send(l, ': keepalive\n\n');
    }, KEEPALIVE_MS);
    return true;
  }

  /** Looks for changes in the streams somebody listens to and sends them. */
  tick(now = Date.now()): void {
    if (this.listeners.size === 0) {
      this.stop();
      return;
    }
    const directory = [...this.listeners].some((l) => l.stream === undefined);
    const names = new Set<string>(directory ? this.source.live() : []);
    for (const l of this.listeners) if (l.stream !== undefined) names.add(l.stream);
    // Streams sent before that have gone: once more, as offline, then forgotten.
    for (const name of this.sent.keys()) names.add(name);
    for (const name of names) {
      const { summary, visibility } = this.source.summary(name);
      const before = this.sent.get(name);
      // Everything but the viewer count (its changes are paced separately).
      const key = JSON.stringify({ ...summary, viewers: 0 }) + visibility;
      const changed = !before || before.key !== key;
      const countChanged = before !== undefined && before.summary.viewers !== summary.viewers && now - before.viewersAt >= this.options.viewerIntervalMs;
      if (!changed && !countChanged) continue;
      if (summary.state === 'offline' && before === undefined) continue;
      if (summary.state === 'offline' && !this.watchedAlone(name)) this.sent.delete(name);
      else this.sent.set(name, { summary, key, viewersAt: countChanged || changed ? now : before!.viewersAt, visibility });
      for (const l of this.listeners) {
        if (l.stream === name || (l.stream === undefined && (visibility === 'public' || before?.visibility === 'public'))) this.write(l, 'stream', visibility === 'public' || l.stream === name ? summary : { ...summary, state: 'offline', viewers: 0 });
      }
    }
  }

  /** Someone listens to `name` by itself (its watch page): keep its last state to tell the next change. */
  private watchedAlone(name: string): boolean {
    for (const l of this.listeners) if (l.stream === name) return true;
    return false;
  }

  private write(l: Listener, event: string, data: unknown): void {
    this.counters.events++;
    this.send(l, `event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private send(l: Listener, text: string): void {
    if (l.res.writableLength > MAX_BUFFERED_BYTES) {
      this.counters.dropped++;
      this.listeners.delete(l);
      l.res.destroy();
      return;
    }
    l.res.write(text);
  }

  private stop(): void {
    clearInterval(this.ticker);
    clearInterval(this.keepalive);
    this.ticker = undefined;
    this.keepalive = undefined;
    this.sent.clear();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stop();
    for (const l of this.listeners) l.res.end();
    this.listeners.clear();
  }
}
