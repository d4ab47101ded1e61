/**
 * All source streams by name. Publishers claim a stream here and get its {@link PublisherSession} handle;
 * outputs and jobs learn of new streams through the observers passed in at construction (wired in app.ts),
 * not through a global event bus.
 */
import { GlasscastError } from './errors.js';
import type { Logger } from './logger.js';
import type { PublisherHooks, PublisherInfo, PublisherSession, Rendition } from './stream.js';
import { Stream } from './stream.js';
import type { SessionStart } from './subscriber.js';

/** Told when a stream is created, so outputs can subscribe before the first access unit. Must not throw. */
export interface StreamObserver {
  streamCreated(stream: Stream): void;
  /** A derived rendition joined `source`'s group (before its first access unit). */
  renditionCreated?(source: Stream, rendition: Rendition): void;
  /** A publisher session of `stream` starts; called synchronously, before readers hear of it. */
  sessionStarted?(stream: Stream, start: SessionStart): void;
}

/** Options of the registry. */
export interface StreamRegistryOptions {
  /** Reconnect grace period, ms (default 10 000). */
  reconnectGraceMs: number;
  log: Logger;
  observers: readonly StreamObserver[];
}

/** Stream names: letters, digits, `-`, `_` and `.`, 1–64 characters, not starting with a dot. */
export const STREAM_NAME_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/;

/** The registry of source streams. `close()` is idempotent. */
export class StreamRegistry {
  private readonly streams = new Map<string, Stream>();

  constructor(private readonly options: StreamRegistryOptions) {}

  /** The stream of that name if it exists and has not ended. */
  get(name: string): Stream | undefined {
    return this.streams.get(name);
  }

  /** Every stream that has not ended. */
  list(): Stream[] {
    return [...this.streams.values()];
  }

  /**
   * Claims the stream `name` for a publisher: an existing one waiting for its publisher to return, or a new one.
   * @throws GlasscastError `STREAM_ALREADY_PUBLISHING` when another publisher holds it (whatever its protocol);
   *   `STREAM_NAME_INVALID` for a name outside {@link STREAM_NAME_PATTERN}.
   */
  claimForPublish(name: string, info: PublisherInfo, hooks: PublisherHooks = {}): PublisherSession {
    if (!STREAM_NAME_PATTERN.test(name)) {
      throw new GlasscastError('STREAM_NAME_INVALID', `stream name "${name.slice(0, 80)}" is not allowed`);
    }
    const existing = this.streams.get(name);
    if (existing) return existing.claim(info, hooks);
    const stream = new Stream(name, {
      reconnectGraceMs: this.options.reconnectGraceMs,
      log: this.options.log,
      onEnded: (s) => {
        if (this.streams.get(s.name) === s) this.streams.delete(s.name);
      },
      onRendition: (source, rendition) => this.notify(name, (o) => o.renditionCreated?.(source, rendition)),
      onSessionStart: (s, start) => this.notify(name, (o) => o.sessionStarted?.(s, start)),
    });
    this.streams.set(name, stream);
    this.notify(name, (o) => o.streamCreated(stream));
    return stream.claim(info, hooks);
  }

  private notify(name: string, call: (observer: StreamObserver) => void): void {
    for (const observer of this.options.observers) {
      try {
        call(observer);
      } catch (err) {
        this.options.log.error({ err, stream: name }, 'stream observer threw');
      }
    }
  }

  /** Ends every stream (their publishers are told). Idempotent. */
  close(): void {
    for (const stream of [...this.streams.values()]) stream.close('server shutting down');
  }
}
