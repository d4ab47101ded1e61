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
 *
 * These requests are answered on Node's HTTP server ahead of the framework ({@link LlHlsServer.handle}): a
 * venue's viewers make ten a second each. The preload-hinted part is streamed chunk by chunk (one CMAF chunk per
 * picture) while it is being made; everything else is sent from bytes already in memory. Headers say how long
 * each answer may be cached, so a cache in front (deploy/nginx/glasscast-llhls.conf, or a CDN) collapses the
 * viewers' identical requests into about one per object.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GlasscastError, type ErrorCode } from '../../core/errors.js';
import { JoinedReader } from '../../core/joined-reader.js';
import type { Logger } from '../../core/logger.js';
import type { Rendition, RenditionInfo, Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { StreamSink } from '../../core/subscriber.js';
import { writeProblem } from '../../http/problem.js';
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
  /** Headers added to every LL-HLS answer (e.g. HSTS). */
  headers?: Record<string, string>;
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
/** Query parameter of venue mode's playlists: `venue=1` asks for plain playlists of complete segments. */
export const VENUE_PARAM = 'venue';
/** File beside a media playlist listing its complete segments' SHA-256 (venue mode; see serveHashes). */
export const SEGMENT_HASHES = 'segment-hashes.json';
/** An AbortSignal that fires when the client closes the connection before we answer. */
function hangUp(res: ServerResponse): AbortSignal {
  const controller = new AbortController();
  res.once('close', () => {
    if (!res.writableFinished) controller.abort();
  });
  return controller.signal;
}

/** A query string's parameters (the last of a repeated name wins); a malformed escape is kept as sent. */
type Query = Record<string, string | undefined>;
function parseQuery(query: string): Query {
  const out: Query = {};
  if (!query) return out;
  for (const pair of query.split('&')) {
    const eq = pair.indexOf('=');
    const key = eq < 0 ? pair : pair.slice(0, eq);
    const raw = eq < 0 ? '' : pair.slice(eq + 1).replace(/\+/g, ' ');
    let value = raw;
    try {
      value = decodeURIComponent(raw);
    } catch {
      // kept as sent
    }
    out[key] = value;
  }
  return out;
}

/** How long a known viewer plays on before its right to play is checked again (a stream made private, a token revoked), ms. */
const REAUTHORIZE_MS = 5_000;

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
  /** Its media playlist as sent (no token query), full and delta, with the group's versions it was made from. */
  rendered: { full?: { version: string; body: Buffer }; delta?: { version: string; body: Buffer }; segments?: { version: string; body: Buffer } };
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
    this.commonHeaders = { 'access-control-allow-origin': '*', ...(options.headers ?? {}) };
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
  private async admit(req: IncomingMessage, params: Query, name: string, rendition: string): Promise<{ query: string; viewer: LlHlsViewer | undefined }> {
    const raw = params['token'];
    const token = raw !== undefined && raw.length > 0 ? raw : undefined;
    const address = req.socket.remoteAddress ?? '';
    const key = this.viewers.keyOf(name, token, address, req.headers['user-agent']);
    if (this.viewers.isKicked(key)) throw new GlasscastError('PLAYBACK_FORBIDDEN', 'this viewer was removed by the operator');
    const now = Date.now();
    let viewer = this.viewers.get(key, now);
    // A known viewer is checked again now and then, and at once when its token expires; a new one every time.
    if (!viewer || now - viewer.checkedAt >= REAUTHORIZE_MS || (viewer.expiresAt !== undefined && viewer.expiresAt <= now)) {
      const grant = await this.options.authorizePlay?.({ stream: name, token, clientAddress: address, entry: viewer === undefined });
      if (!viewer && this.groups.has(name)) {
        viewer = this.viewers.add(key, { stream: name, address, startedAt: now, rendition, viewerId: grant?.viewerId, tokenId: grant?.tokenId, expiresAt: grant?.expiresAt });
        if (viewer) this.notifyViewer('joined', viewer);
      }
      if (viewer) viewer.checkedAt = now;
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
    return { rendition, muxer, reader, rendered: {} };
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

  private variantOf(name: string, rendition: string): Variant | undefined {
    const group = this.groups.get(name);
    return rendition === SOURCE_RENDITION ? group?.source : group?.renditions.get(rendition);
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

  /**
   * Serves an LL-HLS request on Node's HTTP server itself, ahead of the web framework: a venue's thousand viewers
   * each ask for a playlist and a part five times a second, so this path does no routing, hooks or per-request
   * schema work, answers from bytes rendered once per playlist update, and checks a known viewer's right to play at
   * most every {@link REAUTHORIZE_MS}. Returns false when `req` is not an LL-HLS request (the framework takes it).
   */
  handle(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '';
    if (!url.startsWith('/hls/') || (req.method !== 'GET' && req.method !== 'HEAD')) return false;
    this.serve(req, res, url).catch((err: unknown) => {
      if (!(err instanceof GlasscastError)) this.log.error({ err, url: url.slice(0, 200) }, 'LL-HLS request failed');
      if (res.headersSent) res.destroy();
      else this.problem(res, url, err instanceof GlasscastError ? err.code : 'INTERNAL', err instanceof GlasscastError ? err.message : 'internal error');
    });
    return true;
  }

  private async serve(req: IncomingMessage, res: ServerResponse, url: string): Promise<void> {
    const q = url.indexOf('?');
    const segments = (q < 0 ? url : url.slice(0, q)).split('/'); // '', 'hls', name, …
    const params = parseQuery(q < 0 ? '' : url.slice(q + 1));
    let name: string;
    try {
      name = decodeURIComponent(segments[2] ?? '');
    } catch {
      throw new GlasscastError('BAD_REQUEST', 'malformed stream name');
    }
    if (segments.length === 4 && segments[3] === 'index.m3u8') return this.serveMultivariant(req, res, url, name, params);
    const rendition = segments[3] ?? '';
    if (segments.length === 5 && segments[4] === 'media.m3u8') return this.serveMedia(req, res, url, name, rendition, params);
    if (segments.length === 5 && segments[4] === SEGMENT_HASHES) return this.serveHashes(req, res, url, name, rendition, params);
    if (segments.length === 6) return this.serveObject(req, res, url, name, rendition, segments[4]!, segments[5]!, params);
    throw new GlasscastError('NOT_FOUND', `no route for GET ${url.split('?')[0]!.slice(0, 200)}`);
  }

  private async serveMultivariant(req: IncomingMessage, res: ServerResponse, url: string, name: string, params: Query): Promise<void> {
    const { query, viewer } = await this.admit(req, params, name, '');
    let variants = this.variants(name);
    if (variants.length === 0) return this.problem(res, url, 'STREAM_NOT_FOUND', `stream ${name} is not live`);
    const expected = this.options.expectedRenditions?.(name) ?? 0;
    if (variants.length - 1 < expected) {
      const signal = hangUp(res);
      const deadline = Date.now() + RENDITION_WAIT_MS;
      while (this.renditions(name).length < expected && Date.now() < deadline && !signal.aborted) await new Promise((r) => setTimeout(r, 100));
      variants = this.variants(name);
    }
    // `?venue=1` (venue mode): the variants' media playlists are the plain ones of complete segments.
    const venue = params[VENUE_PARAM] === '1';
    const body = Buffer.from(withQuery(renderMultivariantPlaylist(variants), venue ? [query, `${VENUE_PARAM}=1`].filter(Boolean).join('&') : query));
    this.count(name, viewer, body.length);
    // Short-lived: renditions appear a moment after the source (the transcoder starts on its first keyframe).
    this.send(req, res, PLAYLIST_TYPE, cacheFor(query, 'public, max-age=2'), body);
  }

  private async serveMedia(req: IncomingMessage, res: ServerResponse, url: string, name: string, rendition: string, params: Query): Promise<void> {
    const { query, viewer } = await this.admit(req, params, name, rendition);
    const variant = RENDITION_PATTERN.test(rendition) ? this.variantOf(name, rendition) : undefined;
    const muxer = variant?.muxer;
    if (!variant || !muxer || !muxer.ready) return this.problem(res, url, 'STREAM_NOT_FOUND', `stream ${name} is not live${rendition === SOURCE_RENDITION ? '' : ` in ${rendition.slice(0, 12)}`}`);
    const skip = params['_HLS_skip'] === 'YES' || params['_HLS_skip'] === 'v2';
    const segmentsOnly = params[VENUE_PARAM] === '1';
    const answer = (cache: string): void => {
      const body = this.renderedPlaylist(name, rendition, variant, skip, query, segmentsOnly);
      this.count(name, viewer, body.length);
      this.send(req, res, PLAYLIST_TYPE, cacheFor(query, cache), body);
    };
    if (params['_HLS_msn'] === undefined || segmentsOnly) {
      if (params['_HLS_part'] !== undefined) return this.problem(res, url, 'BAD_REQUEST', '_HLS_part requires _HLS_msn');
      return answer(CACHE_LIVE_PLAYLIST);
    }
    const msn = Number(params['_HLS_msn']);
    const part = params['_HLS_part'] === undefined ? undefined : Number(params['_HLS_part']);
    if (!Number.isInteger(msn) || msn < 0 || (part !== undefined && (!Number.isInteger(part) || part < 0))) {
      return this.problem(res, url, 'BAD_REQUEST', '_HLS_msn/_HLS_part must be non-negative integers');
    }
    // §6.2.5.2: a request more than two segments ahead of the playlist is a client error.
    if (msn > muxer.lastMsn + 2) return this.problem(res, url, 'BAD_REQUEST', `_HLS_msn ${msn} is too far ahead`);
    const ready = await muxer.waitFor(() => muxer.has(msn, part), muxer.targetDuration * 3000, hangUp(res));
    if (!ready) return this.problem(res, url, 'NOT_READY', 'requested part not available in time', { 'retry-after': '1' });
    answer(CACHE_BLOCKING_PLAYLIST);
  }

  /**
   * `GET /hls/<name>/<rendition>/segment-hashes.json`: `{ "segments": { "<epoch>/seg<msn>.m4s": "<SHA-256, base64>" } }`
   * for the complete segments in the window. Venue-mode players check each segment another viewer sent them against
   * it before playing it (attendees are untrusted). Cached for a second (a segment completes every second or two).
   */
  private async serveHashes(req: IncomingMessage, res: ServerResponse, url: string, name: string, rendition: string, params: Query): Promise<void> {
    const { query } = await this.admit(req, params, name, rendition);
    const muxer = RENDITION_PATTERN.test(rendition) ? this.muxer(name, rendition) : undefined;
    if (!muxer || !muxer.ready) return this.problem(res, url, 'STREAM_NOT_FOUND', `stream ${name} is not live`);
    this.send(req, res, 'application/json', cacheFor(query, 'public, max-age=1'), Buffer.from(JSON.stringify({ segments: muxer.segmentHashes() })));
  }

  private async serveObject(req: IncomingMessage, res: ServerResponse, url: string, name: string, rendition: string, epoch: string, file: string, params: Query): Promise<void> {
    const { query, viewer } = await this.admit(req, params, name, rendition);
    const muxer = RENDITION_PATTERN.test(rendition) ? this.muxer(name, rendition) : undefined;
    if (!muxer || muxer.epoch !== epoch) return this.problem(res, url, 'NOT_FOUND', 'no such object (the stream restarted or ended)');
    const match = /^(init|seg|part)(\d{1,12})\.(mp4|m4s)$/.exec(file);
    if (!match) return this.problem(res, url, 'NOT_FOUND', 'no such object');
    const n = Number(match[2]);
    let bytes: Buffer | undefined;
    if (match[1] === 'init') bytes = muxer.init(n);
    else if (match[1] === 'seg') bytes = muxer.segment(n);
    else {
      bytes = muxer.part(n);
      // A preload-hinted part is requested before it exists (§6.2.6): once it is the part being built, its chunks
      // are sent as they are written (chunked transfer); a part further ahead waits its turn first.
      if (!bytes && n >= muxer.nextPart && n <= muxer.nextPart + PART_ADVANCE_LIMIT && !muxer.ended) {
        const signal = hangUp(res);
        const timeoutMs = muxer.targetDuration * 3000;
        if (n > muxer.nextPart) await muxer.waitFor(() => muxer.nextPart >= n || muxer.ended, timeoutMs, signal);
        bytes = muxer.part(n);
        if (!bytes && !signal.aborted && (await this.streamPart(req, res, muxer, n, timeoutMs, signal, cacheFor(query, CACHE_IMMUTABLE), (length) => this.count(name, viewer, length)))) return;
        bytes = muxer.part(n);
      }
    }
    if (!bytes) return this.problem(res, url, 'NOT_FOUND', 'no such object (not made yet, or out of the window)');
    this.count(name, viewer, bytes.length);
    this.send(req, res, 'video/mp4', cacheFor(query, CACHE_IMMUTABLE), bytes);
  }

  /**
   * Streams part `number` while it is being built: the chunks written so far, then each one as it is written,
   * with chunked transfer, ending with the part. Resolves true once it has started (the part had its first chunk),
   * false when there was nothing to stream: the part completed, never started within `timeoutMs`, the muxer closed
   * or the client hung up first (the caller then serves it whole, or 404).
   */
  private streamPart(req: IncomingMessage, res: ServerResponse, muxer: LlHlsMuxer, number: number, timeoutMs: number, signal: AbortSignal, cache: string, counted: (bytes: number) => void): Promise<boolean> {
    return new Promise((resolve) => {
      let started = false;
      const write = (chunk: Buffer): void => {
        counted(chunk.length);
        if (req.method !== 'HEAD') res.write(chunk);
      };
      const start = (): void => {
        started = true;
        clearTimeout(timer);
        res.writeHead(200, { 'content-type': 'video/mp4', 'cache-control': cache, ...this.commonHeaders });
        resolve(true);
      };
      const following = muxer.follow(number, (chunk) => {
        if (chunk) {
          if (!started) start();
          write(chunk);
        } else {
          following?.stop();
          signal.removeEventListener('abort', abort);
          if (started) res.end();
          else finish();
        }
      });
      if (!following) return resolve(false);
      const finish = (): void => {
        clearTimeout(timer);
        signal.removeEventListener('abort', abort);
        resolve(false);
      };
      const abort = (): void => {
        following.stop();
        if (started) res.destroy();
        else finish();
      };
      const timer = setTimeout(() => {
        if (!started) abort();
      }, timeoutMs);
      signal.addEventListener('abort', abort, { once: true });
      if (following.chunks.length > 0) {
        start();
        for (const chunk of following.chunks) write(chunk);
      }
    });
  }

  /**
   * The media playlist of one variant as bytes, with its rendition reports and the viewer's query: rendered once
   * per playlist update (of this variant or, for the reports, of any other) and shared by every viewer asking.
   */
  private renderedPlaylist(name: string, rendition: string, variant: Variant, skip: boolean, query: string, segmentsOnly = false): Buffer {
    const group = this.groups.get(name);
    let version = `${variant.muxer.version}`;
    if (group && group.renditions.size > 0) {
      version += `/${group.source.muxer.version}`;
      for (const r of group.renditions.values()) version += `/${r.muxer.version}`;
    }
    const slot = segmentsOnly ? 'segments' : skip ? 'delta' : 'full';
    const cached = variant.rendered[slot];
    if (!query && cached?.version === version) return cached.body;
    const text = withQuery(segmentsOnly ? variant.muxer.playlist(false, true) : variant.muxer.playlist(skip) + this.renditionReports(name, rendition), query);
    const body = Buffer.from(text);
    if (!query) variant.rendered[slot] = { version, body };
    return body;
  }

  /** Headers of every LL-HLS answer (CORS: players on other origins; HSTS when configured). */
  private readonly commonHeaders: Record<string, string>;

  private send(req: IncomingMessage, res: ServerResponse, type: string, cache: string, body: Buffer): void {
    res.writeHead(200, { 'content-type': type, 'cache-control': cache, 'content-length': String(body.length), ...this.commonHeaders });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  private problem(res: ServerResponse, url: string, code: ErrorCode, detail: string, headers: Record<string, string> = {}): void {
    if (code === 'RATE_LIMITED') headers['retry-after'] ??= '60';
    if (code.startsWith('PLAYBACK_TOKEN_')) headers['www-authenticate'] = 'Bearer';
    writeProblem(res, code, detail, url.split('?')[0]!, { ...this.commonHeaders, ...headers });
  }
}
