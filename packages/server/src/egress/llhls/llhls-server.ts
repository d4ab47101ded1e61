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
import { JoinedReader } from '../../core/joined-reader.js';
import type { Logger } from '../../core/logger.js';
import type { Rendition, RenditionInfo, Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { StreamSink } from '../../core/subscriber.js';
import { sendProblem } from '../../http/problem.js';
import { LlHlsMuxer, type LlHlsMuxerOptions } from './llhls-muxer.js';
import { renderMultivariantPlaylist, renderRenditionReports, type PlaylistVariant } from './llhls-playlist.js';

/** Options of the LL-HLS server. */
export interface LlHlsServerOptions extends LlHlsMuxerOptions {
  /** How long an ended stream's playlist stays available (with EXT-X-ENDLIST), ms. Default 60 000. */
  retainEndedMs: number;
  /**
   * How many ladder renditions of a stream are being made (the video job's plan), so the multivariant playlist
   * can wait briefly for all of them at the start of a stream: a player reads it once and would never see a late one.
   */
  expectedRenditions?: (name: string) => number;
}

/** Longest the multivariant playlist waits for renditions still starting, ms. */
const RENDITION_WAIT_MS = 4_000;

const CACHE_IMMUTABLE = 'public, max-age=86400, immutable';
const CACHE_BLOCKING_PLAYLIST = 'public, max-age=30';
const CACHE_LIVE_PLAYLIST = 'public, max-age=1';
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

/**
 * One variant of a stream: the source or a ladder rung, muxed with the group's AAC. Its reader joins the
 * variant's video with the audio every variant shares (core/joined-reader.ts), so no egress transcodes audio.
 */
interface Variant {
  /** Undefined for the source. */
  rendition: RenditionInfo | undefined;
  muxer: LlHlsMuxer;
  reader: JoinedReader;
}

/** The variants of one source stream, owned together. */
interface Group {
  stream: Stream;
  source: Variant;
  renditions: Map<string, Variant>;
  removeTimer: NodeJS.Timeout | undefined;
}

/** Owns the muxers of all streams. `close()` is idempotent. */
export class LlHlsServer implements StreamObserver {
  private readonly groups = new Map<string, Group>();

  constructor(
    private readonly options: LlHlsServerOptions,
    private readonly log: Logger,
  ) {}

  /** Subscribes a new muxer to a new stream, replacing an ended one of the same name. */
  streamCreated(stream: Stream): void {
    this.removeGroup(stream.name);
    const group: Group = { stream, source: undefined as unknown as Variant, renditions: new Map(), removeTimer: undefined };
    group.source = this.variant(stream, stream, undefined, undefined, (reason) => {
      // The stream is over: its playlists stay (with EXT-X-ENDLIST) a while for players finishing it.
      for (const r of group.renditions.values()) r.muxer.onEnd(reason);
      group.removeTimer = setTimeout(() => {
        if (this.groups.get(stream.name) === group) this.removeGroup(stream.name);
      }, this.options.retainEndedMs);
      group.removeTimer.unref();
    });
    this.groups.set(stream.name, group);
  }

  /** Subscribes a muxer to a new ladder rendition; its timeline follows the source's muxer. */
  renditionCreated(source: Stream, rendition: Rendition): void {
    const group = this.groups.get(source.name);
    if (!group || group.stream !== source || rendition.info.role !== 'ladder') return;
    this.removeVariant(group.renditions.get(rendition.info.name));
    const name = rendition.info.name;
    const variant = this.variant(rendition.stream, source, rendition.info, group.source.muxer, () => {
      // A rung shed or no longer made leaves the group at once (players on it move to another level); when the
      // whole stream ended, its variants stay with the group for the retention time.
      if (group.stream.state !== 'ended' && group.renditions.get(name) === variant) {
        group.renditions.delete(name);
        this.removeVariant(variant);
      }
    });
    group.renditions.set(name, variant);
  }

  /** A muxer reading `video`'s picture joined with the group's AAC (LL-HLS carries AAC: WHIP's Opus is bridged once per stream). */
  private variant(video: Stream, source: Stream, rendition: RenditionInfo | undefined, leader: LlHlsMuxer | undefined, ended: (reason: string) => void): Variant {
    const log = this.log.child({ stream: video.name, egress: 'llhls' });
    const muxer = new LlHlsMuxer(video.name, this.options, log, leader);
    const sink: StreamSink = {
      onSessionStart: (s) => muxer.onSessionStart(s),
      onAccessUnit: (au) => muxer.onAccessUnit(au),
      onPublisherLost: () => muxer.onPublisherLost(),
      onEnd: (reason) => {
        muxer.onEnd(reason);
        ended(reason);
      },
    };
    const reader = new JoinedReader(video, () => source.audioFor('aac'), sink, { label: 'llhls' });
    return { rendition, muxer, reader };
  }

  private removeVariant(variant: Variant | undefined): void {
    if (!variant) return;
    variant.reader.close();
    variant.muxer.close();
  }

  private removeGroup(name: string): void {
    const group = this.groups.get(name);
    if (!group) return;
    this.groups.delete(name);
    clearTimeout(group.removeTimer);
    for (const r of group.renditions.values()) this.removeVariant(r);
    this.removeVariant(group.source);
  }

  /** The muxer serving `name` (its source, or one rendition of it), if any. */
  muxer(name: string, rendition = SOURCE_RENDITION): LlHlsMuxer | undefined {
    const group = this.groups.get(name);
    return rendition === SOURCE_RENDITION ? group?.source.muxer : group?.renditions.get(rendition)?.muxer;
  }

  /** The renditions of `name` that can be played now (not the source), highest bitrate first. */
  renditions(name: string): { info: RenditionInfo; muxer: LlHlsMuxer }[] {
    const out: { info: RenditionInfo; muxer: LlHlsMuxer }[] = [];
    for (const v of this.groups.get(name)?.renditions.values() ?? []) {
      if (v.rendition && v.muxer.ready && !v.muxer.ended) out.push({ info: v.rendition, muxer: v.muxer });
    }
    return out.sort((a, b) => b.info.bitrate - a.info.bitrate);
  }

  /** Frames the LL-HLS readers of `name` dropped because they fell behind (all variants). */
  droppedFrames(name: string): number {
    const group = this.groups.get(name);
    if (!group) return 0;
    let n = group.source.reader.subscriber.droppedFrames;
    for (const v of group.renditions.values()) n += v.reader.subscriber.droppedFrames;
    return n;
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
    for (const name of [...this.groups.keys()]) this.removeGroup(name);
  }

  /** Registers the HLS routes on `app`. */
  registerRoutes(app: FastifyInstance): void {
    const notFound = (reply: FastifyReply, what: string): FastifyReply => sendProblem(reply, 'STREAM_NOT_FOUND', what);

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
            return sendProblem(reply, 'BAD_REQUEST', '_HLS_part requires _HLS_msn');
          }
          return reply
            .type(PLAYLIST_TYPE)
            .header('cache-control', CACHE_LIVE_PLAYLIST)
            .send(muxer.playlist(skip) + this.renditionReports(name, rendition));
        }
        const msn = Number(q['_HLS_msn']);
        const part = q['_HLS_part'] === undefined ? undefined : Number(q['_HLS_part']);
        if (!Number.isInteger(msn) || msn < 0 || (part !== undefined && (!Number.isInteger(part) || part < 0))) {
          return sendProblem(reply, 'BAD_REQUEST', '_HLS_msn/_HLS_part must be non-negative integers');
        }
        // §6.2.5.2: a request more than two segments ahead of the playlist is a client error.
        if (msn > muxer.lastMsn + 2) {
          return sendProblem(reply, 'BAD_REQUEST', `_HLS_msn ${msn} is too far ahead`);
        }
        const ready = await muxer.waitFor(() => muxer.has(msn, part), muxer.targetDuration * 3000, hangUp(reply));
        if (!ready) {
          return sendProblem(reply.header('retry-after', '1'), 'NOT_READY', 'requested part not available in time');
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
      if (!muxer || muxer.epoch !== epoch) return sendProblem(reply, 'NOT_FOUND', 'no such object (the stream restarted or ended)');
      const match = /^(init|seg|part)(\d{1,12})\.(mp4|m4s)$/.exec(file);
      if (!match) return sendProblem(reply, 'NOT_FOUND', 'no such object');
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
      if (!bytes) return sendProblem(reply, 'NOT_FOUND', 'no such object (not made yet, or out of the window)');
      return reply.type('video/mp4').header('cache-control', CACHE_IMMUTABLE).send(bytes);
    });
  }
}
