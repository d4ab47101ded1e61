/**
 * All streams by name. Publishers claim a stream here; outputs learn of new streams through the observers
 * passed in at construction (wired in app.ts), not through a global event bus.
 */
import { GlasscastError } from './errors.js';
import type { Logger } from './logger.js';
import type { Rendition } from './stream.js';
import { Stream } from './stream.js';

/** Told when a stream is created, so outputs can subscribe before the first access unit. */
export interface StreamObserver {
  streamCreated(stream: Stream): void;
  /** A transcoded rendition joined `source`'s rendition group (before its first access unit). */
  renditionCreated?(source: Stream, rendition: Rendition): void;
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

/** The registry of live streams. */
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
   * Gets the stream a publisher may start a session on: an existing one waiting for its publisher to return,
   * or a new one.
   * @throws GlasscastError `STREAM_ALREADY_PUBLISHING` when another publisher is live on it;
   *   `STREAM_NAME_INVALID` for a name outside {@link STREAM_NAME_PATTERN}.
   */
  claimForPublish(name: string): Stream {
    if (!STREAM_NAME_PATTERN.test(name)) {
      throw new GlasscastError('STREAM_NAME_INVALID', `stream name "${name.slice(0, 80)}" is not allowed`);
    }
    const existing = this.streams.get(name);
    if (existing) {
      if (existing.state === 'live') {
        throw new GlasscastError('STREAM_ALREADY_PUBLISHING', `stream ${name} already has a live publisher`);
      }
      return existing;
    }
    const stream = new Stream(name, {
      reconnectGraceMs: this.options.reconnectGraceMs,
      log: this.options.log,
      onEnded: (s) => {
        if (this.streams.get(s.name) === s) this.streams.delete(s.name);
      },
      onRendition: (source, rendition) => {
        for (const observer of this.options.observers) {
          try {
            observer.renditionCreated?.(source, rendition);
          } catch (err) {
            this.options.log.error({ err, stream: name, rendition: rendition.info.name }, 'stream observer threw');
          }
        }
      },
    });
    this.streams.set(name, stream);
    for (const observer of this.options.observers) {
      try {
        observer.streamCreated(stream);
      } catch (err) {
        this.options.log.error({ err, stream: name }, 'stream observer threw');
      }
    }
    return stream;
  }

  /** Ends every stream. Idempotent. */
  close(): void {
    for (const stream of [...this.streams.values()]) stream.close('server shutting down');
  }
}
