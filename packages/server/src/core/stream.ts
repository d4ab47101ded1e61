/**
 * A live stream: named, fed by one publisher session at a time, read by any number of subscribers
 * (DESIGN.md "Core model"). A publisher that drops may return within the grace period and the same outputs
 * continue with a discontinuity; after that the stream ends.
 */
import type { AccessUnit } from './access-unit.js';
import { accessUnitSize } from './access-unit.js';
import { InvalidStateError } from './errors.js';
import type { Logger } from './logger.js';
import type { StreamSink, SubscriberOptions } from './subscriber.js';
import { Subscriber } from './subscriber.js';
import type { Track } from './track.js';

/** Lifecycle of a stream. */
export type StreamState = 'idle' | 'live' | 'reconnecting' | 'ended';

/** Limits of the GOP cache, so a source without keyframes cannot grow memory without bound. */
export const GOP_CACHE_MAX_FRAMES = 2_000;
export const GOP_CACHE_MAX_BYTES = 48 * 1024 * 1024;

/** Stream statistics. */
export interface StreamStats {
  name: string;
  state: StreamState;
  session: number;
  subscribers: number;
  /** Access units published in the current session. */
  frames: number;
  /** Payload bytes published in the current session. */
  bytes: number;
  /** Epoch ms when the current session started, or undefined. */
  sessionStartedAt: number | undefined;
}

/** What a transcoded rendition carries (DESIGN.md "rendition group"). */
export interface RenditionInfo {
  /** Rung name, `<height>p` (also its path segment in URLs). */
  name: string;
  /** Pixels. */
  width: number;
  height: number;
  /** Target video bitrate, bits/s. */
  bitrate: number;
  /** Frames/s cap, or undefined when the source's rate is kept. */
  maxFrameRate: number | undefined;
}

/**
 * A transcoded rendition of a source stream. Its stream is not in the registry (no publisher can claim it);
 * it is fed by the transcoder, shares the source's timeline (identical timestamps for the same picture) and its
 * keyframes sit at the same presentation times in every rendition.
 */
export interface Rendition {
  info: RenditionInfo;
  stream: Stream;
}

/** Options of a stream. */
export interface StreamOptions {
  /** How long a dropped publisher may take to return before the stream ends, ms. */
  reconnectGraceMs: number;
  log: Logger;
  /** Called once when the stream ends, so the registry can forget it. */
  onEnded: (stream: Stream) => void;
  /** Told when a rendition is added to this stream's rendition group (outputs subscribe to it). */
  onRendition?: (source: Stream, rendition: Rendition) => void;
}

/** How long a rendition may stay without its transcoder (restarting with backoff) before it ends, ms. */
const RENDITION_GRACE_MS = 24 * 3600 * 1000;

/** One live stream. Created by the {@link StreamRegistry}. */
export class Stream {
  private _state: StreamState = 'idle';
  private _tracks: readonly Track[] = [];
  private session = 0;
  private readonly subscribers = new Set<Subscriber>();
  private gopCache: AccessUnit[] = [];
  private gopCacheBytes = 0;
  private graceTimer: NodeJS.Timeout | undefined;
  private frames = 0;
  private bytes = 0;
  private sessionStartedAt: number | undefined;
  private readonly log: Logger;
  private readonly _renditions = new Map<string, Rendition>();

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

  /**
   * Starts a publisher session with `tracks`. From `idle` this is the first session; from `reconnecting` it
   * continues the stream with a discontinuity.
   * @throws InvalidStateError when the stream is already live or has ended.
   */
  startSession(tracks: readonly Track[]): void {
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
    this.sessionStartedAt = Date.now();
    this.clearGopCache();
    for (const sub of this.subscribers) {
      sub.setTracks(tracks);
      sub.push({ type: 'start', start: { tracks, session: this.session, discontinuity } });
    }
    this.log.info({ session: this.session, tracks: tracks.map((t) => `${t.kind}:${t.info.codecString}`) }, 'publisher session started');
  }

  private keyframeRequester: (() => void) | undefined;

  /**
   * Lets the publisher session be asked for a keyframe (WHIP: a PLI to the browser). Sources that cannot make
   * one on demand (RTMP) leave it unset; it is cleared when the session ends.
   */
  setKeyframeRequester(request: (() => void) | undefined): void {
    this.keyframeRequester = request;
  }

  /** Asks the live publisher for a keyframe (a viewer joined or lost a picture). Returns false if it cannot. */
  requestKeyframe(): boolean {
    if (this._state !== 'live' || !this.keyframeRequester) return false;
    this.keyframeRequester();
    return true;
  }

  /** Publishes one access unit to every subscriber. Ignored unless live. Never blocks. */
  publish(au: AccessUnit): void {
    if (this._state !== 'live') return;
    this.frames++;
    const size = accessUnitSize(au);
    this.bytes += size;
    this.cache(au, size);
    for (const sub of this.subscribers) sub.push({ type: 'au', au });
  }

  private cache(au: AccessUnit, size: number): void {
    const track = this._tracks.find((t) => t.id === au.trackId);
    const hasVideo = this._tracks.some((t) => t.kind === 'video');
    if (!hasVideo) return; // audio-only: every frame is a random access point, nothing to cache
    if (track?.kind === 'video' && au.keyframe) this.clearGopCache();
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

  /**
   * The publisher session ended (disconnect or unpublish). The stream waits `reconnectGraceMs` for it to
   * return, then ends.
   */
  endSession(reason: string): void {
    if (this._state !== 'live') return;
    this._state = 'reconnecting';
    this.keyframeRequester = undefined;
    this.clearGopCache();
    this.log.info({ reason, graceMs: this.options.reconnectGraceMs }, 'publisher lost; waiting for it to return');
    for (const sub of this.subscribers) sub.push({ type: 'lost' });
    this.graceTimer = setTimeout(() => this.close('publisher did not return within the grace period'), this.options.reconnectGraceMs);
    this.graceTimer.unref();
  }

  /**
   * Adds a reader. A reader added while live gets the session start and the cached GOP first.
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
   * Adds a rendition to this stream's group (the transcoder publishes into the returned stream), or returns
   * the existing one of that name with its info updated.
   * @throws InvalidStateError when this stream has ended.
   */
  addRendition(info: RenditionInfo): Stream {
    if (this._state === 'ended') throw new InvalidStateError(`stream ${this.name} has ended`);
    const existing = this._renditions.get(info.name);
    if (existing) {
      existing.info = info;
      return existing.stream;
    }
    const stream = new Stream(`${this.name}/${info.name}`, {
      reconnectGraceMs: RENDITION_GRACE_MS,
      log: this.options.log,
      onEnded: (s) => {
        if (this._renditions.get(info.name)?.stream === s) this._renditions.delete(info.name);
      },
    });
    const rendition: Rendition = { info, stream };
    this._renditions.set(info.name, rendition);
    this.log.info({ rendition: info.name, width: info.width, height: info.height, bitrate: info.bitrate }, 'rendition added');
    this.options.onRendition?.(this, rendition);
    return stream;
  }

  /** Ends one rendition (the source changed size and the rung no longer applies). */
  removeRendition(name: string, reason: string): void {
    this._renditions.get(name)?.stream.close(reason);
  }

  /** The renditions of this stream's group, highest bitrate first (the source itself is not among them). */
  get renditions(): Rendition[] {
    return [...this._renditions.values()].sort((a, b) => b.info.bitrate - a.info.bitrate);
  }

  /** The rendition of that name, if any. */
  rendition(name: string): Rendition | undefined {
    return this._renditions.get(name);
  }

  /** Ends the stream for good: readers get `onEnd`. Idempotent. Its renditions end with it. */
  close(reason: string): void {
    if (this._state === 'ended') return;
    for (const r of [...this._renditions.values()]) r.stream.close(reason);
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this._state = 'ended';
    this.clearGopCache();
    this.log.info({ reason }, 'stream ended');
    for (const sub of [...this.subscribers]) sub.push({ type: 'end', reason });
    this.subscribers.clear();
    this.options.onEnded(this);
  }

  /** Counters for stats and the API. */
  getStats(): StreamStats {
    return {
      name: this.name,
      state: this._state,
      session: this.session,
      subscribers: this.subscribers.size,
      frames: this.frames,
      bytes: this.bytes,
      sessionStartedAt: this.sessionStartedAt,
    };
  }
}
