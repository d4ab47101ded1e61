/**
 * LL-HLS over HTTP: one {@link LlHlsMuxer} per live stream, and the routes that serve its playlists, init
 * segments, segments and parts with blocking reload (RFC 8216bis-17 §6.2.5.2) and CDN-friendly caching.
 *
 *   GET /hls/<name>/index.m3u8                      multivariant playlist
 *   GET /hls/<name>/src/media.m3u8[?_HLS_msn&_HLS_part&_HLS_skip]   media playlist (blocking, delta)
 *   GET /hls/<name>/src/<epoch>/init<n>.mp4 | seg<msn>.m4s | part<n>.m4s
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from '../../core/logger.js';
import type { Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { StreamSink, Subscriber } from '../../core/subscriber.js';
import { LlHlsMuxer, type LlHlsMuxerOptions } from './llhls-muxer.js';
import { renderMultivariantPlaylist } from './llhls-playlist.js';

/** Options of the LL-HLS server. */
export interface LlHlsServerOptions extends LlHlsMuxerOptions {
  /** How long an ended stream's playlist stays available (with EXT-X-ENDLIST), ms. Default 60 000. */
  retainEndedMs: number;
  /**
   * Puts an audio transcoder in front of a muxer (LL-HLS carries AAC; WHIP sends Opus), or undefined to feed the
   * muxer directly. What it returns is closed with the muxer.
   */
  audioAdapter: ((muxer: StreamSink, log: Logger) => StreamSink & { close(): void }) | undefined;
}

const CACHE_IMMUTABLE = 'public, max-age=86400, immutable';
const CACHE_BLOCKING_PLAYLIST = 'public, max-age=30';
const CACHE_LIVE_PLAYLIST = 'public, max-age=1';
const CACHE_NONE = 'no-store';
const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
/** An AbortSignal that fires when the client closes the connection before we answer. */
function hangUp(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** How far ahead of the preload hint a part request may block. */
const PART_ADVANCE_LIMIT = 2;

interface Entry {
  muxer: LlHlsMuxer;
  subscriber: Subscriber;
  adapter: { close(): void } | undefined;
  removeTimer: NodeJS.Timeout | undefined;
}

/** Owns the muxers of all streams. `close()` is idempotent. */
export class LlHlsServer implements StreamObserver {
  private readonly entries = new Map<string, Entry>();

  constructor(
    private readonly options: LlHlsServerOptions,
    private readonly log: Logger,
  ) {}

  /** Subscribes a new muxer to a new stream, replacing an ended one of the same name. */
  streamCreated(stream: Stream): void {
    this.remove(stream.name);
    const log = this.log.child({ stream: stream.name, egress: 'llhls' });
    const muxer = new LlHlsMuxer(stream.name, this.options, log);
    const entry: Entry = { muxer, subscriber: undefined as unknown as Subscriber, adapter: undefined, removeTimer: undefined };
    const sink: StreamSink = {
      onSessionStart: (s) => muxer.onSessionStart(s),
      onAccessUnit: (au) => muxer.onAccessUnit(au),
      onPublisherLost: () => muxer.onPublisherLost(),
      onEnd: (reason) => {
        muxer.onEnd(reason);
        entry.removeTimer = setTimeout(() => {
          if (this.entries.get(stream.name) === entry) this.remove(stream.name);
        }, this.options.retainEndedMs);
        entry.removeTimer.unref();
      },
    };
    // LL-HLS carries AAC: an Opus source (WHIP) is transcoded once, in front of the muxer.
    const adapter = this.options.audioAdapter?.(sink, log);
    entry.adapter = adapter;
    entry.subscriber = stream.subscribe(adapter ?? sink);
    this.entries.set(stream.name, entry);
  }

  /** The muxer serving `name`, if any. */
  muxer(name: string): LlHlsMuxer | undefined {
    return this.entries.get(name)?.muxer;
  }

  private remove(name: string): void {
    const entry = this.entries.get(name);
    if (!entry) return;
    this.entries.delete(name);
    clearTimeout(entry.removeTimer);
    entry.subscriber.close();
    entry.adapter?.close();
    entry.muxer.close();
  }

  /** Closes every muxer. Idempotent. */
  close(): void {
    for (const name of [...this.entries.keys()]) this.remove(name);
  }

  /** Registers the HLS routes on `app`. */
  registerRoutes(app: FastifyInstance): void {
    const notFound = (reply: FastifyReply, what: string): FastifyReply =>
      reply.code(404).header('cache-control', CACHE_NONE).send({ code: 'STREAM_NOT_FOUND', message: what });

    app.addHook('onSend', async (request, reply) => {
      if (request.url.startsWith('/hls/')) reply.header('access-control-allow-origin', '*');
    });

    app.get<{ Params: { name: string } }>('/hls/:name/index.m3u8', async (request, reply) => {
      const muxer = this.muxer(request.params.name);
      if (!muxer || !muxer.ready || muxer.trackList.length === 0) return notFound(reply, `stream ${request.params.name} is not live`);
      const video = muxer.trackList.find((t) => t.kind === 'video');
      const bw = muxer.bandwidth();
      const text = renderMultivariantPlaylist([
        {
          uri: 'src/media.m3u8',
          bandwidth: bw?.peak ?? 2_000_000,
          averageBandwidth: bw?.average,
          codecs: muxer.trackList.map((t) => t.info.codecString),
          resolution: video?.kind === 'video' ? { width: video.info.width, height: video.info.height } : undefined,
          frameRate: muxer.frameRate(),
        },
      ]);
      return reply.type(PLAYLIST_TYPE).header('cache-control', 'public, max-age=2').send(text);
    });

    app.get<{ Params: { name: string }; Querystring: Record<string, string | undefined> }>(
      '/hls/:name/src/media.m3u8',
      async (request, reply) => {
        const muxer = this.muxer(request.params.name);
        if (!muxer || !muxer.ready) return notFound(reply, `stream ${request.params.name} is not live`);
        const q = request.query;
        const skip = q['_HLS_skip'] === 'YES' || q['_HLS_skip'] === 'v2';
        if (q['_HLS_msn'] === undefined) {
          if (q['_HLS_part'] !== undefined) {
            return reply.code(400).header('cache-control', CACHE_NONE).send({ code: 'BAD_REQUEST', message: '_HLS_part requires _HLS_msn' });
          }
          return reply
            .type(PLAYLIST_TYPE)
            .header('cache-control', CACHE_LIVE_PLAYLIST)
            .send(muxer.playlist(skip));
        }
        const msn = Number(q['_HLS_msn']);
        const part = q['_HLS_part'] === undefined ? undefined : Number(q['_HLS_part']);
        if (!Number.isInteger(msn) || msn < 0 || (part !== undefined && (!Number.isInteger(part) || part < 0))) {
          return reply.code(400).header('cache-control', CACHE_NONE).send({ code: 'BAD_REQUEST', message: '_HLS_msn/_HLS_part must be non-negative integers' });
        }
        // §6.2.5.2: a request more than two segments ahead of the playlist is a client error.
        if (msn > muxer.lastMsn + 2) {
          return reply.code(400).header('cache-control', CACHE_NONE).send({ code: 'BAD_REQUEST', message: `_HLS_msn ${msn} is too far ahead` });
        }
        const ready = await muxer.waitFor(() => muxer.has(msn, part), muxer.targetDuration * 3000, hangUp(reply));
        if (!ready) {
          return reply.code(503).header('cache-control', CACHE_NONE).header('retry-after', '1').send({ code: 'NOT_READY', message: 'requested part not available in time' });
        }
        return reply
          .type(PLAYLIST_TYPE)
          .header('cache-control', CACHE_BLOCKING_PLAYLIST)
          .send(muxer.playlist(skip));
      },
    );

    app.get<{ Params: { name: string; epoch: string; file: string } }>('/hls/:name/src/:epoch/:file', async (request, reply) => {
      const { name, epoch, file } = request.params;
      const muxer = this.muxer(name);
      if (!muxer || muxer.epoch !== epoch) return notFound(reply, 'no such object');
      const match = /^(init|seg|part)(\d{1,12})\.(mp4|m4s)$/.exec(file);
      if (!match) return notFound(reply, 'no such object');
      const n = Number(match[2]);
      let bytes: Buffer | undefined;
      if (match[1] === 'init') bytes = muxer.init(n);
      else if (match[1] === 'seg') bytes = muxer.segment(n);
      else {
        bytes = muxer.part(n);
        // A preload-hinted part is requested before it exists: hold the request until it does (§6.2.6).
        if (!bytes && n >= muxer.nextPart && n <= muxer.nextPart + PART_ADVANCE_LIMIT && !muxer.ended) {
          await muxer.waitFor(() => muxer.part(n) !== undefined || muxer.ended, muxer.targetDuration * 3000, hangUp(reply));
          bytes = muxer.part(n);
        }
      }
      if (!bytes) return notFound(reply, 'no such object');
      return reply.type('video/mp4').header('cache-control', CACHE_IMMUTABLE).send(bytes);
    });
  }
}
