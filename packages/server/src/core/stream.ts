/**
 * A live stream: named, fed by one publisher session at a time, read by any number of subscribers
 * (DESIGN.md "Core model"). A publisher that drops may return within the grace period and the same outputs
 * continue with a discontinuity; after that the stream ends.
 *
 * Ownership (STYLE rule 6, after mediasoup): a publisher *claims* the stream and gets a {@link PublisherSession}
 * handle; only that handle starts, feeds and ends media sessions. A claimed stream refuses a second claim, for
 * every protocol alike. `close()` on the stream is idempotent and cascades: its renditions close, its
 * publisher's handle is told (`streamClosed`), and every reader gets `onEnd`.
 *
 * A stream also holds its *rendition group*: derived streams (ladder rungs, a B-frame-free copy for WebRTC,
 * the audio in the other codec) made once per stream by supervised jobs (transcode/) that claim them like any
 * publisher. Egresses ask the group for what they can play ({@link Stream.videoWithoutBFrames}, {@link Stream.audioFor})
 * and never own a transcoder.
 */
import { randomBytes } from 'node:crypto';
import type { AudioCodec, VideoCodec } from '../media/codecs/codec-table.js';
import type { AccessUnit } from './access-unit.js';
import { accessUnitSize } from './access-unit.js';
import { GlasscastError, InvalidStateError } from './errors.js';
import type { Logger } from './logger.js';
import type { EntityStats } from './stats.js';
import { entityStats } from './stats.js';
import type { SessionStart, StreamSink, SubscriberOptions } from './subscriber.js';
import { Subscriber } from './subscriber.js';
import type { Track } from './track.js';
import { sameTracks } from './track.js';

/** Lifecycle of a stream. */
export type StreamState = 'idle' | 'live' | 'reconnecting' | 'ended';

/** Limits of the GOP cache, so a source without keyframes cannot grow memory without bound. */
export const GOP_CACHE_MAX_FRAMES = 2_000;
export const GOP_CACHE_MAX_BYTES = 48 * 1024 * 1024;

/**
 * What a rendition is for:
 * - `ladder`: a rung of the ABR ladder (video, lower than the source; listed in LL-HLS and WHEP);
 * - `bframe-free`: the source's picture at its own size re-encoded without B-frames, for readers that have no
 *   decode timestamps (WebRTC); made only when the source has B-frames;
 * - `audio`: the source's audio in another codec (AAC ↔ Opus).
 */
export type RenditionRole = 'ladder' | 'bframe-free' | 'audio';

/** What a rendition carries (DESIGN.md "rendition group"). */
export interface RenditionInfo {
  /** `<height>p` for rungs, `webrtc` for the B-frame-free copy, the codec (`opus`, `aac`) for audio; its URL segment. */
  name: string;
  role: RenditionRole;
  kind: 'video' | 'audio';
  codec: VideoCodec | AudioCodec;
  /** Pixels; 0 for audio. */
  width: number;
  height: number;
  /** Target bitrate, bits/s. */
  bitrate: number;
  /** Frames/s cap, or undefined when the source's rate is kept. */
  maxFrameRate: number | undefined;
}

/**
 * A derived stream of a source stream. Its stream is not in the registry (only its job claims it); it shares
 * the source's timeline (identical timestamps for the same picture or sample) and video renditions have their
 * keyframes at the source's keyframes' presentation times.
 */
export interface Rendition {
  info: RenditionInfo;
  stream: Stream;
}

/** Who publishes, for logs and stats. */
export interface PublisherInfo {
  protocol: 'rtmp' | 'whip' | 'srt' | 'transcoder';
  /** Peer address, for network publishers. */
  remoteAddress?: string;
}

/** What a publisher's owner gives the stream at claim time (all optional). */
export interface PublisherHooks {
  /**
   * The stream was closed by someone other than this publisher (server shutdown, an operator): the owner ends
   * its connection. Not called after the handle's own `close()`. Must not throw.
   */
  streamClosed?(reason: string): void;
  /** Asks the publisher for a keyframe (WHIP: a PLI). Sources that cannot make one on demand (RTMP) leave it out. */
  requestKeyframe?(): void;
  /** Protocol counters and descriptions for {@link PublisherSession.getStats}. */
  stats?(): Pick<EntityStats, 'counters' | 'info'>;
}

/** Options of a stream. */
export interface StreamOptions {
  /** How long a dropped publisher may take to return before the stream ends, ms. */
  reconnectGraceMs: number;
  log: Logger;
  /** Called once when the stream ends, so the registry can forget it. */
  onEnded: (stream: Stream) => void;
  /** Told when a rendition is added to this stream's group (outputs subscribe to it before its first frame). */
  onRendition?: (source: Stream, rendition: Rendition) => void;
  /**
   * Told synchronously when a publisher session starts, before any reader hears of it (a job can put a derived
   * rendition in place that readers of this session will look up). Must not throw.
   */
  onSessionStart?: (stream: Stream, start: SessionStart) => void;
  /** The source of a rendition's group; undefined for a source stream. */
  source?: Stream;
}

/** How long a rendition may stay without its job (restarting with backoff) before it ends, ms. */
const RENDITION_GRACE_MS = 24 * 3600 * 1000;

/**
 * A publisher's hold on a stream, returned by {@link Stream.claim}. Only this handle starts, feeds and ends the
 * stream's publisher sessions; `close()` is idempotent and releases the claim.
 */
export class PublisherSession {
  readonly id = randomBytes(6).toString('hex');
  readonly createdAt = Date.now();
  private _closed = false;
  /** True once a media session was started by this handle. */
  private started = false;

  /** @internal Created by {@link Stream.claim}. */
  constructor(
    readonly stream: Stream,
    readonly info: PublisherInfo,
    readonly hooks: PublisherHooks,
    private readonly core: StreamCore,
  ) {}

  /** True once closed (by the owner or because the stream closed). */
  get closed(): boolean {
    return this._closed;
  }

  /**
   * Starts a media session with `tracks`: the first one, or a new one when the codec configuration changed or
   * after {@link interrupt} (readers see a discontinuity).
   * @throws InvalidStateError when this handle or the stream is closed.
   */
  start(tracks: readonly Track[]): void {
    if (this._closed) throw new InvalidStateError(`publisher of ${this.stream.name} has ended`);
    if (this.stream.state === 'live') this.core.endSession('codec configuration changed');
    this.core.startSession(tracks);
    this.started = true;
  }

  /** Publishes one access unit to every reader. Ignored unless this handle's session is live. Never blocks. */
  publish(au: AccessUnit): void {
    if (!this._closed) this.core.publish(au);
  }

  /**
   * The media stopped but this publisher keeps its claim (a job restarting its process): the stream enters its
   * reconnect grace; {@link start} resumes it.
   */
  interrupt(reason: string): void {
    if (!this._closed) this.core.endSession(reason);
  }

  /**
   * Releases the claim. A stream that had media waits for a publisher to return within the grace period, or
   * ends at once with `endStream` (WHIP DELETE); one that never started ends now. Idempotent.
   */
  close(reason: string, options: { endStream?: boolean } = {}): void {
    if (this._closed) return;
    this._closed = true;
    this.core.release(this);
    if (!this.started || options.endStream) this.stream.close(reason);
    else this.core.endSession(reason);
  }

  /** @internal The stream closed under this handle: mark it closed and tell the owner. */
  streamClosed(reason: string): void {
    if (this._closed) return;
    this._closed = true;
    try {
      this.hooks.streamClosed?.(reason);
    } catch {
      // the owner's hook must not break the stream's close
    }
  }

  /** Statistics of this publisher session. */
  getStats(): EntityStats {
    const own = this.hooks.stats?.();
    return entityStats('publisher', this.id, this._closed ? 'closed' : this.stream.state, this.createdAt, {
      counters: own?.counters ?? {},
      info: { protocol: this.info.protocol, remoteAddress: this.info.remoteAddress, stream: this.stream.name, ...own?.info },
    });
  }
}

/** The stream operations a publisher handle may call (kept off the stream's public surface). */
interface StreamCore {
  startSession(tracks: readonly Track[]): void;
  publish(au: AccessUnit): void;
  endSession(reason: string): void;
  release(handle: PublisherSession): void;
}

/** One live stream. Sources are created by the {@link StreamRegistry}; renditions by {@link Stream.addRendition}. */
export class Stream {
  readonly createdAt = Date.now();
  private _state: StreamState = 'idle';
  private _tracks: readonly Track[] = [];
  private session = 0;
  private readonly subscribers = new Set<Subscriber>();
  private gopCache: AccessUnit[] = [];
  private gopCacheBytes = 0;
  private graceTimer: NodeJS.Timeout | undefined;
  private frames = 0;
  private bytes = 0;
  /** Video access units and keyframes this session; the last keyframe's arrival and the gap before it (ms). */
  private videoFrames = 0;
  private keyframes = 0;
  private lastKeyframeAt: number | undefined;
  private keyframeIntervalMs: number | undefined;
  private sessionStartedAt: number | undefined;
  private readonly log: Logger;
  private readonly _renditions = new Map<string, Rendition>();
  private publisher: PublisherSession | undefined;
  private _hasBFrames = false;
  private videoTrackId: number | undefined;
  private readonly core: StreamCore = {
    startSession: (tracks) => this.startSession(tracks),
    publish: (au) => this.publishUnit(au),
    endSession: (reason) => this.endSession(reason),
    release: (handle) => {
      if (this.publisher === handle) this.publisher = undefined;
    },
  };

  constructor(
    readonly name: string,
    private readonly options: StreamOptions,
  ) {
    this.log = options.log.child({ stream: name });
  }

  /** Current state. */
  get state(): StreamState {
    return this._state;
  }

  /** Tracks of the current (or last) publisher session. */
  get tracks(): readonly Track[] {
    return this._tracks;
  }

  /** The source stream of this rendition's group; undefined for a source. */
  get source(): Stream | undefined {
    return this.options.source;
  }

  /** True when a publisher holds a claim on this stream. */
  get claimed(): boolean {
    return this.publisher !== undefined;
  }

  /** True once the current session's video showed reordered pictures (pts ≠ dts): B-frames. */
  get hasBFrames(): boolean {
    return this._hasBFrames;
  }

  /**
   * Claims this stream for a publisher.
   * @throws GlasscastError `STREAM_ALREADY_PUBLISHING` when another publisher holds it; `STREAM_ENDED` when it ended.
   */
  claim(info: PublisherInfo, hooks: PublisherHooks = {}): PublisherSession {
    if (this._state === 'ended') throw new GlasscastError('STREAM_ENDED', `stream ${this.name} has ended`);
    if (this.publisher) throw new GlasscastError('STREAM_ALREADY_PUBLISHING', `stream ${this.name} already has a live publisher`);
    const handle = new PublisherSession(this, info, hooks, this.core);
    this.publisher = handle;
    return handle;
  }

  private startSession(tracks: readonly Track[]): void {
    if (this._state === 'live' || this._state === 'ended') {
      throw new InvalidStateError(`stream ${this.name} is ${this._state}; cannot start a publisher session`);
    }
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    const discontinuity = this._state === 'reconnecting';
    this._state = 'live';
    this._tracks = tracks;
    this.session++;
    this.frames = 0;
    this.bytes = 0;
    this.videoFrames = 0;
    this.keyframes = 0;
    this.lastKeyframeAt = undefined;
    this.keyframeIntervalMs = undefined;
    this._hasBFrames = false;
    this.videoTrackId = tracks.find((t) => t.kind === 'video')?.id;
    this.sessionStartedAt = Date.now();
    this.clearGopCache();
    const start: SessionStart = { tracks, session: this.session, discontinuity };
    try {
      this.options.onSessionStart?.(this, start);
    } catch (err) {
      this.log.error({ err }, 'session observer threw');
    }
    for (const sub of this.subscribers) {
      sub.setTracks(tracks);
      sub.push({ type: 'start', start });
    }
    this.log.info({ session: this.session, tracks: tracks.map((t) => `${t.kind}:${t.info.codecString}`) }, 'publisher session started');
  }

  /** Asks the live publisher for a keyframe (a viewer joined or lost a picture). Returns false if it cannot. */
  requestKeyframe(): boolean {
    const request = this.publisher?.hooks.requestKeyframe;
    if (this._state !== 'live' || !request) return false;
    request();
    return true;
  }

  private publishUnit(au: AccessUnit): void {
    if (this._state !== 'live') return;
    this.frames++;
    const size = accessUnitSize(au);
    this.bytes += size;
    if (au.trackId === this.videoTrackId) {
      if (au.pts !== au.dts) this._hasBFrames = true;
      this.videoFrames++;
      if (au.keyframe) {
        const now = Date.now();
        if (this.lastKeyframeAt !== undefined) this.keyframeIntervalMs = now - this.lastKeyframeAt;
        this.lastKeyframeAt = now;
        this.keyframes++;
      }
    }
    this.cache(au, size);
    for (const sub of this.subscribers) sub.push({ type: 'au', au });
  }

  private cache(au: AccessUnit, size: number): void {
    if (this.videoTrackId === undefined) return; // audio-only: every frame is a random access point
    if (au.trackId === this.videoTrackId && au.keyframe) this.clearGopCache();
    else if (this.gopCache.length === 0) return; // no keyframe yet: a GOP cache must start on one
    if (this.gopCache.length >= GOP_CACHE_MAX_FRAMES || this.gopCacheBytes + size > GOP_CACHE_MAX_BYTES) {
      this.clearGopCache();
      return;
    }
    this.gopCache.push(au);
    this.gopCacheBytes += size;
  }

  private clearGopCache(): void {
    this.gopCache = [];
    this.gopCacheBytes = 0;
  }

  private endSession(reason: string): void {
    if (this._state !== 'live') return;
    this._state = 'reconnecting';
    this.clearGopCache();
    const graceMs = this.options.source ? RENDITION_GRACE_MS : this.options.reconnectGraceMs;
    if (!this.options.source) this.log.info({ reason, graceMs }, 'publisher lost; waiting for it to return');
    for (const sub of this.subscribers) sub.push({ type: 'lost' });
    this.graceTimer = setTimeout(() => this.close('publisher did not return within the grace period'), graceMs);
    this.graceTimer.unref();
  }

  /**
   * Adds a reader. A reader added while live gets the session start and the cached GOP first. The reader is
   * told `onEnd` when the stream closes.
   * @throws InvalidStateError when the stream has ended.
   */
  subscribe(sink: StreamSink, options?: SubscriberOptions): Subscriber {
    if (this._state === 'ended') throw new InvalidStateError(`stream ${this.name} has ended`);
    const sub = new Subscriber(sink, this.log, (s) => this.subscribers.delete(s), options);
    this.subscribers.add(sub);
    if (this._state === 'live' || this._state === 'reconnecting') {
      sub.setTracks(this._tracks);
      sub.push({ type: 'start', start: { tracks: this._tracks, session: this.session, discontinuity: false } });
      for (const au of this.gopCache) sub.push({ type: 'au', au });
      if (this._state === 'reconnecting') sub.push({ type: 'lost' });
    }
    return sub;
  }

  /**
   * Adds a rendition to this stream's group (its job claims and publishes into the returned stream), or returns
   * the existing one of that name with its info updated.
   * @throws InvalidStateError when this stream has ended or is itself a rendition.
   */
  addRendition(info: RenditionInfo): Stream {
    if (this._state === 'ended') throw new InvalidStateError(`stream ${this.name} has ended`);
    if (this.options.source) throw new InvalidStateError(`rendition ${this.name} cannot have renditions`);
    const existing = this._renditions.get(info.name);
    if (existing) {
      existing.info = info;
      return existing.stream;
    }
    const stream = new Stream(`${this.name}/${info.name}`, {
      reconnectGraceMs: RENDITION_GRACE_MS,
      log: this.options.log,
      source: this,
      onEnded: (s) => {
        if (this._renditions.get(info.name)?.stream === s) this._renditions.delete(info.name);
      },
    });
    const rendition: Rendition = { info, stream };
    this._renditions.set(info.name, rendition);
    this.log.info({ rendition: info.name, role: info.role, width: info.width, height: info.height, bitrate: info.bitrate }, 'rendition added');
    this.options.onRendition?.(this, rendition);
    return stream;
  }

  /** Ends one rendition (its rung no longer applies, or its job shed it). */
  removeRendition(name: string, reason: string): void {
    this._renditions.get(name)?.stream.close(reason);
  }

  /** The renditions of this stream's group, highest bitrate first (the source itself is not among them). */
  get renditions(): Rendition[] {
    return [...this._renditions.values()].sort((a, b) => b.info.bitrate - a.info.bitrate);
  }

  /** The renditions with `role`, highest bitrate first. */
  renditionsOf(role: RenditionRole): Rendition[] {
    return this.renditions.filter((r) => r.info.role === role);
  }

  /** The rendition of that name, if any. */
  rendition(name: string): Rendition | undefined {
    return this._renditions.get(name);
  }

  /**
   * Where a reader that cannot take B-frames or HEVC (WebRTC) finds this stream's picture now: the stream itself
   * when its video is H.264 without B-frames, else its live `bframe-free` rendition (H.264); undefined while
   * neither can be played.
   */
  videoWithoutBFrames(): Stream | undefined {
    const video = this._tracks.find((t) => t.kind === 'video');
    if (!video) return undefined;
    if (!this._hasBFrames && video.codec === 'h264') return this;
    const copy = this.renditionsOf('bframe-free')[0]?.stream;
    return copy?.state === 'live' ? copy : undefined;
  }

  /**
   * Where a reader finds this group's audio in `codec`: the source itself when its audio track has that codec,
   * else the group's audio rendition in that codec (live or restarting); undefined when there is none. Asked of a
   * rendition, it answers for its group.
   */
  audioFor(codec: AudioCodec): Stream | undefined {
    const source = this.options.source ?? this;
    const audio = source._tracks.find((t) => t.kind === 'audio');
    if (!audio) return undefined;
    if (audio.codec === codec) return source;
    const derived = source._renditions.get(codec);
    return derived && derived.info.role === 'audio' && derived.stream.state !== 'ended' ? derived.stream : undefined;
  }

  /** Ends the stream for good: readers get `onEnd`, its publisher is told, its renditions end. Idempotent. */
  close(reason: string): void {
    if (this._state === 'ended') return;
    for (const r of [...this._renditions.values()]) r.stream.close(reason);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this._state = 'ended';
    this.clearGopCache();
    const publisher = this.publisher;
    this.publisher = undefined;
    publisher?.streamClosed(reason);
    this.log.info({ reason }, this.options.source ? 'rendition ended' : 'stream ended');
    for (const sub of [...this.subscribers]) sub.push({ type: 'end', reason });
    this.subscribers.clear();
    this.options.onEnded(this);
  }

  /** Statistics of this stream: its publisher, readers and renditions as children. */
  getStats(): EntityStats {
    const video = this._tracks.find((t) => t.kind === 'video');
    const audio = this._tracks.find((t) => t.kind === 'audio');
    return entityStats('stream', this.name, this._state, this.createdAt, {
      counters: {
        session: this.session,
        subscribers: this.subscribers.size,
        frames: this.frames,
        bytes: this.bytes,
        videoFrames: this.videoFrames,
        keyframes: this.keyframes,
        ...(this.keyframeIntervalMs !== undefined ? { keyframeIntervalMs: this.keyframeIntervalMs } : {}),
      },
      info: {
        sessionStartedAt: this.sessionStartedAt,
        lastKeyframeAt: this.lastKeyframeAt,
        video: video?.info.codecString,
        width: video?.kind === 'video' ? video.info.width : undefined,
        height: video?.kind === 'video' ? video.info.height : undefined,
        bFrames: video ? this._hasBFrames : undefined,
        audio: audio?.info.codecString,
      },
      children: [
        ...(this.publisher ? [this.publisher.getStats()] : []),
        ...[...this.subscribers].map((s) => s.getStats()),
        ...this.renditions.map((r) => {
          const stats = r.stream.getStats();
          stats.info = { ...stats.info, role: r.info.role, bitrateTarget: r.info.bitrate };
          return stats;
        }),
      ],
    });
  }

  /** True when `tracks` equal this stream's current tracks (same codecs and configurations). */
  hasTracks(tracks: readonly Track[]): boolean {
    return sameTracks(tracks, this._tracks);
  }
}
