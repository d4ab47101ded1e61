/**
 * LL-HLS over HTTP: one {@link LlHlsMuxer} per live stream, and the routes that serve its playlists, init
 * segments, segments and parts with blocking reload (RFC 8216bis-17 §6.2.5.2) and CDN-friendly caching.
 *
 *   GET /hls/<name>/index.m3u8                      multivariant playlist: the source and every rendition
 *   GET /hls/<name>/<r>/media.m3u8[?_HLS_msn&_HLS_part&_HLS_skip]   media playlist (blocking, delta), with
 *                                                   EXT-X-RENDITION-REPORT for the other renditions
 *   GET /hls/<name>/<r>/<epoch>/init<n>.mp4 | seg<msn>.m4s | part<n>.m4s
 *
 * `<r>` is `src` for the source as published, or a rendition's name (`720p`, …) from the ladder.
 */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { Logger } from '../../core/logger.js';
import type { Rendition, RenditionInfo, Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { StreamSink, Subscriber } from '../../core/subscriber.js';
import { LlHlsMuxer, type LlHlsMuxerOptions } from './llhls-muxer.js';
import { renderMultivariantPlaylist, renderRenditionReports, type PlaylistVariant } from './llhls-playlist.js';

/** Options of the LL-HLS server. */
export interface LlHlsServerOptions extends LlHlsMuxerOptions {
  /** How long an ended stream's playlist stays available (with EXT-X-ENDLIST), ms. Default 60 000. */
  retainEndedMs: number;
  /**
   * Puts an audio transcoder in front of a muxer (LL-HLS carries AAC; WHIP sends Opus), or undefined to feed the
   * muxer directly. What it returns is closed with the muxer.
   */
  audioAdapter: ((muxer: StreamSink, log: Logger) => StreamSink & { close(): void }) | undefined;
  /**
   * How many renditions of a stream are being made (the transcoder's plan), so the multivariant playlist can wait
   * briefly for all of them at the start of a stream: a player reads it once and would never see a late one.
   */
  expectedRenditions?: (name: string) => number;
}

/** Longest the multivariant playlist waits for renditions still starting, ms. */
const RENDITION_WAIT_MS = 4_000;

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

/** Path segment of the source rendition. */
export const SOURCE_RENDITION = 'src';
const RENDITION_PATTERN = /^(src|\d{3,4}p)$/;

interface Entry {
  /** Undefined for the source. */
  rendition: RenditionInfo | undefined;
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
    this.add(stream.name, stream, undefined, undefined);
  }

  /** Subscribes a muxer to a new rendition; its timeline follows the source's muxer. */
  renditionCreated(source: Stream, rendition: Rendition): void {
    const key = `${source.name}/${rendition.info.name}`;
    this.removeEntry(key);
    this.add(key, rendition.stream, rendition.info, this.entries.get(source.name)?.muxer);
  }

  private add(key: string, stream: Stream, rendition: RenditionInfo | undefined, leader: LlHlsMuxer | undefined): void {
    const log = this.log.child({ stream: stream.name, egress: 'llhls' });
    const muxer = new LlHlsMuxer(stream.name, this.options, log, leader);
    const entry: Entry = { rendition, muxer, subscriber: undefined as unknown as Subscriber, adapter: undefined, removeTimer: undefined };
    const sink: StreamSink = {
      onSessionStart: (s) => muxer.onSessionStart(s),
      onAccessUnit: (au) => muxer.onAccessUnit(au),
      onPublisherLost: () => muxer.onPublisherLost(),
      onEnd: (reason) => {
        muxer.onEnd(reason);
        entry.removeTimer = setTimeout(() => {
          if (this.entries.get(key) === entry) this.removeEntry(key);
        }, this.options.retainEndedMs);
        entry.removeTimer.unref();
      },
    };
    // LL-HLS carries AAC: an Opus source (WHIP) is transcoded once, in front of the muxer.
    const adapter = this.options.audioAdapter?.(sink, log);
    entry.adapter = adapter;
    entry.subscriber = stream.subscribe(adapter ?? sink);
    this.entries.set(key, entry);
  }

  /** The muxer serving `name` (its source, or one rendition of it), if any. */
  muxer(name: string, rendition = SOURCE_RENDITION): LlHlsMuxer | undefined {
    return this.entries.get(rendition === SOURCE_RENDITION ? name : `${name}/${rendition}`)?.muxer;
  }

  /** The renditions of `name` that can be played now (not the source), highest bitrate first. */
  renditions(name: string): { info: RenditionInfo; muxer: LlHlsMuxer }[] {
    const out: { info: RenditionInfo; muxer: LlHlsMuxer }[] = [];
    for (const [key, e] of this.entries) {
      if (e.rendition && key === `${name}/${e.rendition.name}` && e.muxer.ready && !e.muxer.ended) out.push({ info: e.rendition, muxer: e.muxer });
    }
    return out.sort((a, b) => b.info.bitrate - a.info.bitrate);
  }

  /** Removes a source and its renditions. */
  private remove(name: string): void {
    for (const key of [...this.entries.keys()]) if (key === name || key.startsWith(`${name}/`)) this.removeEntry(key);
  }

  private removeEntry(key: string): void {
    const entry = this.entries.get(key);
    if (!entry) return;
    this.entries.delete(key);
    clearTimeout(entry.removeTimer);
    entry.subscriber.close();
    entry.adapter?.close();
    entry.muxer.close();
  }

  /** Variants of the multivariant playlist: the source, then every playable rendition. */
  private variants(name: string): PlaylistVariant[] {
    const source = this.muxer(name);
    if (!source || !source.ready || source.trackList.length === 0) return [];
    const variant = (uri: string, muxer: LlHlsMuxer, rendition: RenditionInfo | undefined): PlaylistVariant => {
      const video = muxer.trackList.find((t) => t.kind === 'video');
      const audio = muxer.trackList.find((t) => t.kind === 'audio');
      const bw = muxer.bandwidth();
      // Before a rendition has a complete segment, announce its target (plus audio) rather than nothing.
      const nominal = rendition ? Math.round(rendition.bitrate * 1.1) + (audio ? 128_000 : 0) : 2_000_000;
      return {
        uri,
        bandwidth: bw ? Math.max(bw.peak, rendition ? nominal : 0) : nominal,
        averageBandwidth: bw?.average,
        codecs: muxer.trackList.map((t) => t.info.codecString),
        resolution: video?.kind === 'video' ? { width: video.info.width, height: video.info.height } : undefined,
        frameRate: muxer.frameRate(),
      };
    };
    return [
      variant(`${SOURCE_RENDITION}/media.m3u8`, source, undefined),
      ...this.renditions(name).map((r) => variant(`${r.info.name}/media.m3u8`, r.muxer, r.info)),
    ];
  }

  /** EXT-X-RENDITION-REPORT lines for every rendition of `name` other than `self`. */
  private renditionReports(name: string, self: string): string {
    const all = [{ name: SOURCE_RENDITION, muxer: this.muxer(name) }, ...this.renditions(name).map((r) => ({ name: r.info.name, muxer: r.muxer }))];
    if (all.length < 2) return '';
    const reports: { uri: string; lastMsn: number; lastPart: number }[] = [];
    for (const r of all) {
      const last = r.muxer?.lastPart();
      if (r.name === self || !last || r.muxer?.ended) continue;
      reports.push({ uri: `../${r.name}/media.m3u8`, lastMsn: last.msn, lastPart: last.index });
    }
    return renderRenditionReports(reports);
  }

  /** Closes every muxer. Idempotent. */
  close(): void {
    for (const key of [...this.entries.keys()]) this.removeEntry(key);
  }

  /** Registers the HLS routes on `app`. */
  registerRoutes(app: FastifyInstance): void {
    const notFound = (reply: FastifyReply, what: string): FastifyReply =>
      reply.code(404).header('cache-control', CACHE_NONE).send({ code: 'STREAM_NOT_FOUND', message: what });

    app.addHook('onSend', async (request, reply) => {
      if (request.url.startsWith('/hls/')) reply.header('access-control-allow-origin', '*');
    });

    app.get<{ Params: { name: string } }>('/hls/:name/index.m3u8', async (request, reply) => {
      const name = request.params.name;
      let variants = this.variants(name);
      if (variants.length === 0) return notFound(reply, `stream ${name} is not live`);
      const expected = this.options.expectedRenditions?.(name) ?? 0;
      if (variants.length - 1 < expected) {
        const signal = hangUp(reply);
        const deadline = Date.now() + RENDITION_WAIT_MS;
        while (this.renditions(name).length < expected && Date.now() < deadline && !signal.aborted) await new Promise((r) => setTimeout(r, 100));
        variants = this.variants(name);
      }
      const text = renderMultivariantPlaylist(variants);
      // Short-lived: renditions appear a moment after the source (the transcoder starts on its first keyframe).
      return reply.type(PLAYLIST_TYPE).header('cache-control', 'public, max-age=2').send(text);
    });

    app.get<{ Params: { name: string; rendition: string }; Querystring: Record<string, string | undefined> }>(
      '/hls/:name/:rendition/media.m3u8',
      async (request, reply) => {
        const { name, rendition } = request.params;
        const muxer = RENDITION_PATTERN.test(rendition) ? this.muxer(name, rendition) : undefined;
        if (!muxer || !muxer.ready) return notFound(reply, `stream ${name} is not live${rendition === SOURCE_RENDITION ? '' : ` in ${rendition.slice(0, 12)}`}`);
        const q = request.query;
        const skip = q['_HLS_skip'] === 'YES' || q['_HLS_skip'] === 'v2';
        if (q['_HLS_msn'] === undefined) {
          if (q['_HLS_part'] !== undefined) {
            return reply.code(400).header('cache-control', CACHE_NONE).send({ code: 'BAD_REQUEST', message: '_HLS_part requires _HLS_msn' });
          }
          return reply
            .type(PLAYLIST_TYPE)
            .header('cache-control', CACHE_LIVE_PLAYLIST)
            .send(muxer.playlist(skip) + this.renditionReports(name, rendition));
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
          .send(muxer.playlist(skip) + this.renditionReports(name, rendition));
      },
    );

    app.get<{ Params: { name: string; rendition: string; epoch: string; file: string } }>('/hls/:name/:rendition/:epoch/:file', async (request, reply) => {
      const { name, rendition, epoch, file } = request.params;
      const muxer = RENDITION_PATTERN.test(rendition) ? this.muxer(name, rendition) : undefined;
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
