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
 *
 * A private stream is played with `?token=<playback token>` on the multivariant playlist; every URI in the
 * playlists served to that viewer carries the same query, so hls.js, Safari and any HLS player send it on every
 * playlist, part and segment request without being told. The token is verified once per viewer (a grant), not
 * once per part.
 */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { GlasscastError } from '../../core/errors.js';
import { JoinedReader } from '../../core/joined-reader.js';
import type { Logger } from '../../core/logger.js';
import type { Rendition, RenditionInfo, Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { StreamSink } from '../../core/subscriber.js';
import { sendProblem } from '../../http/problem.js';
import { LlHlsMuxer, type CompletedSegment, type LlHlsMuxerOptions } from './llhls-muxer.js';
import { renderMultivariantPlaylist, renderRenditionReports, withQuery, type PlaylistVariant } from './llhls-playlist.js';
import { LlHlsViewers, VIEWER_IDLE_MS, type LlHlsViewer } from './llhls-viewers.js';

/** Options of the LL-HLS server. */
export interface LlHlsServerOptions extends LlHlsMuxerOptions {
  /** How long an ended stream's playlist stays available (with EXT-X-ENDLIST), ms. Default 60 000. */
  retainEndedMs: number;
  /**
   * How many ladder renditions of a stream are being made (the video job's plan), so the multivariant playlist
   * can wait briefly for all of them at the start of a stream: a player reads it once and would never see a late one.
   */
  expectedRenditions?: (name: string) => number;
  /**
   * Decides whether a viewer may play (visibility, playback token, admission hook when `entry`: the viewer's
   * first request). Resolves with who the viewer is, or throws a GlasscastError. Absent: everyone may play.
   */
  authorizePlay?: (request: { stream: string; token: string | undefined; clientAddress: string; entry: boolean }) => Promise<{ viewerId: string | undefined; tokenId: string | undefined; expiresAt: number } | undefined>;
  /** Told when a viewer arrives and when it has left (no request for 10 s). Must not throw. */
  onViewer?: (event: 'joined' | 'left', viewer: LlHlsViewer) => void;
  /**
   * Told of every completed segment of every variant (`rendition`: `src` or a rung's name) and of each variant's
   * end (the recorder). Must not throw.
   */
  segments?: {
    completed(stream: Stream, rendition: string, segment: CompletedSegment): void;
    ended(stream: Stream, rendition: string, reason: string): void;
  };
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

/** A private viewer's responses (their URLs carry its token) are for its browser only, never a shared cache. */
function cacheFor(query: string, cache: string): string {
  return query ? cache.replace('public', 'private') : cache;
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
  /** Who is watching, per stream. */
  readonly viewers = new LlHlsViewers();
  /** Bytes served per stream since start (playlists, init segments, parts, segments). */
  private readonly served = new Map<string, number>();
  private readonly sweepTimer: NodeJS.Timeout;

  constructor(
    private readonly options: LlHlsServerOptions,
    private readonly log: Logger,
  ) {
    this.sweepTimer = setInterval(() => {
      for (const v of this.viewers.sweep()) this.notifyViewer('left', v);
    }, VIEWER_IDLE_MS / 2);
    this.sweepTimer.unref();
  }

  private notifyViewer(event: 'joined' | 'left', viewer: LlHlsViewer): void {
    try {
      this.options.onViewer?.(event, viewer);
    } catch (err) {
      this.log.error({ err }, 'viewer listener threw');
    }
  }

  /** Bytes served for stream `name` since the server started. */
  bytesSent(name: string): number {
    return this.served.get(name) ?? 0;
  }

  /** Ends one LL-HLS viewer (an operator's kick): its next request is refused. False when there is none. */
  kick(name: string, id: string): boolean {
    const v = this.viewers.kick(name, id);
    if (v) this.notifyViewer('left', v);
    return v !== undefined;
  }

  /**
   * Admits a request: finds (or authorizes and adds) its viewer and counts `rendition`. Returns the query to
   * carry on every URI served to it (`token=…`, or '' without a token); throws a GlasscastError when refused.
   */
  private async admit(request: FastifyRequest, name: string, rendition: string): Promise<{ query: string; viewer: LlHlsViewer | undefined }> {
    const raw = (request.query as Record<string, unknown>)['token'];
    const token = typeof raw === 'string' && raw.length > 0 ? raw : undefined;
    const key = LlHlsViewers.key(name, token, request.ip, request.headers['user-agent']);
    if (this.viewers.isKicked(key)) throw new GlasscastError('PLAYBACK_FORBIDDEN', 'this viewer was removed by the operator');
    const now = Date.now();
    let viewer = this.viewers.get(key, now);
    const grant = await this.options.authorizePlay?.({ stream: name, token, clientAddress: request.ip, entry: viewer === undefined });
    if (!viewer && this.groups.has(name)) {
      viewer = this.viewers.add(key, { stream: name, address: request.ip, startedAt: now, rendition, viewerId: grant?.viewerId, tokenId: grant?.tokenId, expiresAt: grant?.expiresAt });
      if (viewer) this.notifyViewer('joined', viewer);
    }
    if (viewer) {
      viewer.lastSeenAt = now;
      if (rendition) viewer.rendition = rendition;
    }
    return { query: token ? `token=${encodeURIComponent(token)}` : '', viewer };
  }

  /** Counts `bytes` served to `viewer` of `name`. */
  private count(name: string, viewer: LlHlsViewer | undefined, bytes: number): void {
    this.served.set(name, (this.served.get(name) ?? 0) + bytes);
    if (viewer) viewer.bytesSent += bytes;
  }

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
    const renditionName = rendition?.name ?? SOURCE_RENDITION;
    const listener = this.options.segments;
    if (listener) muxer.segmentCompleted = (segment) => listener.completed(source, renditionName, segment);
    const sink: StreamSink = {
      onSessionStart: (s) => muxer.onSessionStart(s),
      onAccessUnit: (au) => muxer.onAccessUnit(au),
      onPublisherLost: () => muxer.onPublisherLost(),
      onEnd: (reason) => {
        muxer.onEnd(reason);
        listener?.ended(source, renditionName, reason);
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
    clearInterval(this.sweepTimer);
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
      const { query, viewer } = await this.admit(request, name, '');
      let variants = this.variants(name);
      if (variants.length === 0) return notFound(reply, `stream ${name} is not live`);
      const expected = this.options.expectedRenditions?.(name) ?? 0;
      if (variants.length - 1 < expected) {
        const signal = hangUp(reply);
        const deadline = Date.now() + RENDITION_WAIT_MS;
        while (this.renditions(name).length < expected && Date.now() < deadline && !signal.aborted) await new Promise((r) => setTimeout(r, 100));
        variants = this.variants(name);
      }
      const text = withQuery(renderMultivariantPlaylist(variants), query);
      this.count(name, viewer, text.length);
      // Short-lived: renditions appear a moment after the source (the transcoder starts on its first keyframe).
      return reply.type(PLAYLIST_TYPE).header('cache-control', cacheFor(query, 'public, max-age=2')).send(text);
    });

    app.get<{ Params: { name: string; rendition: string }; Querystring: Record<string, string | undefined> }>(
      '/hls/:name/:rendition/media.m3u8',
      async (request, reply) => {
        const { name, rendition } = request.params;
        const { query, viewer } = await this.admit(request, name, rendition);
        const send = (cache: string): FastifyReply => {
          const text = withQuery(muxer!.playlist(skip) + this.renditionReports(name, rendition), query);
          this.count(name, viewer, text.length);
          return reply.type(PLAYLIST_TYPE).header('cache-control', cacheFor(query, cache)).send(text);
        };
        const muxer = RENDITION_PATTERN.test(rendition) ? this.muxer(name, rendition) : undefined;
        if (!muxer || !muxer.ready) return notFound(reply, `stream ${name} is not live${rendition === SOURCE_RENDITION ? '' : ` in ${rendition.slice(0, 12)}`}`);
        const q = request.query;
        const skip = q['_HLS_skip'] === 'YES' || q['_HLS_skip'] === 'v2';
        if (q['_HLS_msn'] === undefined) {
          if (q['_HLS_part'] !== undefined) {
            return sendProblem(reply, 'BAD_REQUEST', '_HLS_part requires _HLS_msn');
          }
          return send(CACHE_LIVE_PLAYLIST);
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
        return send(CACHE_BLOCKING_PLAYLIST);
      },
    );

    app.get<{ Params: { name: string; rendition: string; epoch: string; file: string } }>('/hls/:name/:rendition/:epoch/:file', async (request, reply) => {
      const { name, rendition, epoch, file } = request.params;
      const { query, viewer } = await this.admit(request, name, rendition);
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
      this.count(name, viewer, bytes.length);
      return reply.type('video/mp4').header('cache-control', cacheFor(query, CACHE_IMMUTABLE)).send(bytes);
    });
  }
}
