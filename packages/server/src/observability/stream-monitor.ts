/**
 * Watches every live stream once a second: ingest bitrate, frame rate and keyframe interval, viewers per
 * protocol (and their peak), bytes out; writes each broadcast's start, figures and end to the history
 * (store/broadcast-store.ts, with `stream.started` / `stream.ended` events) and raises `stream.health` events when
 * a condition starts and when it clears: `no_keyframe` (none for `noKeyframeMs`), `bitrate_drop` (the last 5 s
 * below half of the 30 s before), `transcode_degraded` (the video job shed work).
 */
import type { Logger } from '../core/logger.js';
import type { EntityStats } from '../core/stats.js';
import type { BroadcastStore } from '../store/broadcast-store.js';

/** What the monitor reads of a stream. */
export interface MonitoredStream {
  name: string;
  state: string;
  getStats(): EntityStats;
}

/** Where the monitor reads. */
export interface StreamMonitorSources {
  streams(): MonitoredStream[];
  /** Viewers of `name` now, per protocol, and per protocol and rendition. */
  viewers(name: string): { byProtocol: Record<string, number>; byRendition: { protocol: string; rendition: string; viewers: number }[] };
  /** Bytes sent to viewers of `name` since the server started, per protocol. */
  bytesOut(name: string): Record<string, number>;
  /** Whether the stream's video job is degraded, and why. */
  degraded(name: string): { degraded: boolean; reason: string | undefined };
  /** Writes a `stream.health` event to the outbox. */
  health(name: string, data: Record<string, unknown>): Promise<void>;
}

/** Options of the monitor. */
export interface StreamMonitorOptions {
  /** A live video stream with no keyframe for this long is unhealthy, ms. Default 12 000. */
  noKeyframeMs: number;
  /** Tick, ms. Default 1000. */
  intervalMs: number;
}

/** The figures of one live stream now. */
export interface StreamFigures {
  /** Ingest bits/s over the last second. */
  bitrateIn: number;
  /** Video frames/s over the last second. */
  fps: number;
  /** Gap between the last two keyframes, ms. */
  keyframeIntervalMs: number | undefined;
  /** Since the last keyframe, ms. */
  sinceKeyframeMs: number | undefined;
  viewers: Record<string, number>;
  viewersByRendition: { protocol: string; rendition: string; viewers: number }[];
  peakViewers: number;
  /** This broadcast's bytes in and out. */
  bytesIn: number;
  bytesOut: number;
  broadcastId: string | undefined;
  startedAt: string;
  /** Conditions present now (`no_keyframe`, `bitrate_drop`, `transcode_degraded`). */
  health: string[];
}

interface Watch {
  stream: MonitoredStream;
  startedAt: number;
  broadcastId: Promise<string | undefined>;
  /** The id once written. */
  broadcastIdValue: string | undefined;
  session: number;
  /** This session's byte count at the last tick; bytes of earlier sessions of this broadcast. */
  lastBytes: number;
  priorBytes: number;
  lastVideoFrames: number;
  /** Bits/s, one a second, newest last (≤ 35). */
  bitrates: number[];
  fps: number;
  peakViewers: number;
  bytesOutAtStart: number;
  bytesOut: number;
  conditions: Set<string>;
  ticks: number;
}

const sum = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);
const mean = (xs: readonly number[]): number => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);

/** The monitor. `close()` ends every open broadcast's history row. */
export class StreamMonitor {
  private readonly watches = new Map<string, Watch>();
  private readonly timer: NodeJS.Timeout;

  constructor(
    private readonly sources: StreamMonitorSources,
    private readonly broadcasts: BroadcastStore,
    private readonly options: StreamMonitorOptions,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => this.tick(), options.intervalMs);
    this.timer.unref();
  }

  /** Figures of `name` while it is live (or reconnecting), else undefined. */
  figures(name: string): StreamFigures | undefined {
    const w = this.watches.get(name);
    if (!w) return undefined;
    const stats = w.stream.getStats();
    const viewers = this.sources.viewers(name);
    const lastKeyframeAt = stats.info['lastKeyframeAt'];
    return {
      bitrateIn: w.bitrates[w.bitrates.length - 1] ?? 0,
      fps: w.fps,
      keyframeIntervalMs: stats.counters['keyframeIntervalMs'],
      sinceKeyframeMs: typeof lastKeyframeAt === 'number' ? Date.now() - lastKeyframeAt : undefined,
      viewers: viewers.byProtocol,
      viewersByRendition: viewers.byRendition,
      peakViewers: Math.max(w.peakViewers, sum(viewers.byProtocol)),
      bytesIn: w.priorBytes + (stats.counters['bytes'] ?? 0),
      bytesOut: w.bytesOut,
      broadcastId: w.broadcastIdValue,
      startedAt: new Date(w.startedAt).toISOString(),
      health: [...w.conditions],
    };
  }

  /** One second's work; public for tests. */
  tick(now = Date.now()): void {
    const seen = new Set<string>();
    for (const stream of this.sources.streams()) {
      if (stream.state !== 'live' && stream.state !== 'reconnecting') continue;
      let w = this.watches.get(stream.name);
      if (w && w.stream !== stream) {
        this.end(w, 'stream replaced');
        w = undefined;
      }
      if (!w) {
        if (stream.state !== 'live') continue;
        w = this.begin(stream, now);
      }
      seen.add(stream.name);
      this.measure(w, now);
    }
    for (const w of [...this.watches.values()]) if (!seen.has(w.stream.name)) this.end(w, w.stream.state === 'ended' ? 'stream ended' : 'publisher gone');
  }

  private begin(stream: MonitoredStream, now: number): Watch {
    const publisher = stream.getStats().children.find((c) => c.type === 'publisher');
    const protocol = String(publisher?.info['protocol'] ?? 'unknown');
    const w: Watch = {
      stream,
      startedAt: now,
      broadcastId: this.broadcasts.start(stream.name, protocol, { clientAddress: publisher?.info['remoteAddress'] ?? null }, now).catch((err: unknown) => {
        this.log.error({ err, stream: stream.name }, 'broadcast history could not be written');
        return undefined;
      }),
      broadcastIdValue: undefined,
      session: -1,
      lastBytes: 0,
      priorBytes: 0,
      lastVideoFrames: 0,
      bitrates: [],
      fps: 0,
      peakViewers: 0,
      bytesOutAtStart: sum(this.sources.bytesOut(stream.name)),
      bytesOut: 0,
      conditions: new Set(),
      ticks: 0,
    };
    void w.broadcastId.then((id) => (w.broadcastIdValue = id));
    this.watches.set(stream.name, w);
    return w;
  }

  private measure(w: Watch, now: number): void {
    const stats = w.stream.getStats();
    const session = stats.counters['session'] ?? 0;
    const bytes = stats.counters['bytes'] ?? 0;
    const videoFrames = stats.counters['videoFrames'] ?? 0;
    if (session !== w.session) {
      // A new publisher session (a reconnect within the grace) starts its counters at zero.
      if (w.session >= 0) w.priorBytes += w.lastBytes;
      w.session = session;
      w.lastBytes = 0;
      w.lastVideoFrames = 0;
    }
    const live = w.stream.state === 'live';
    w.bitrates.push(live ? Math.max(0, ((bytes - w.lastBytes) * 8 * 1000) / this.options.intervalMs) : 0);
    if (w.bitrates.length > 35) w.bitrates.shift();
    w.fps = live ? Math.max(0, ((videoFrames - w.lastVideoFrames) * 1000) / this.options.intervalMs) : 0;
    w.lastBytes = bytes;
    w.lastVideoFrames = videoFrames;
    const viewers = sum(this.sources.viewers(w.stream.name).byProtocol);
    w.peakViewers = Math.max(w.peakViewers, viewers);
    w.bytesOut = Math.max(0, sum(this.sources.bytesOut(w.stream.name)) - w.bytesOutAtStart);
    w.ticks++;
    if (live) this.checkHealth(w, stats, now);
    if (w.ticks % 10 === 0) {
      void w.broadcastId.then((id) => (id ? this.broadcasts.progress(id, this.totals(w)) : undefined)).catch(() => undefined);
    }
  }

  private totals(w: Watch): { peakViewers: number; bytesIn: number; bytesOut: number } {
    return { peakViewers: w.peakViewers, bytesIn: w.priorBytes + w.lastBytes, bytesOut: w.bytesOut };
  }

  private checkHealth(w: Watch, stats: EntityStats, now: number): void {
    const lastKeyframeAt = stats.info['lastKeyframeAt'];
    const hasVideo = stats.info['video'] !== undefined;
    const sessionStartedAt = typeof stats.info['sessionStartedAt'] === 'number' ? stats.info['sessionStartedAt'] : now;
    const since = typeof lastKeyframeAt === 'number' ? now - lastKeyframeAt : now - sessionStartedAt;
    this.condition(w, 'no_keyframe', hasVideo && since >= this.options.noKeyframeMs, { sinceKeyframeMs: since, thresholdMs: this.options.noKeyframeMs });
    // Compare the last 5 s with the 30 s before, once there are 35 s of samples.
    if (w.bitrates.length >= 35) {
      const recent = mean(w.bitrates.slice(-5));
      const before = mean(w.bitrates.slice(0, -5));
      const dropping = before >= 100_000 && recent < before / 2;
      const recovered = recent >= (before * 3) / 4;
      if (dropping || recovered) this.condition(w, 'bitrate_drop', dropping, { bitrateIn: Math.round(recent), bitrateBefore: Math.round(before) });
    }
    const degraded = this.sources.degraded(w.stream.name);
    this.condition(w, 'transcode_degraded', degraded.degraded, { reason: degraded.reason ?? null });
  }

  /** Raises or clears `condition` (an event on each change). */
  private condition(w: Watch, condition: string, present: boolean, detail: Record<string, unknown>): void {
    if (present === w.conditions.has(condition)) return;
    if (present) w.conditions.add(condition);
    else w.conditions.delete(condition);
    const name = w.stream.name;
    this.log.info({ stream: name, condition, status: present ? 'warning' : 'ok', ...detail }, 'stream health changed');
    this.sources.health(name, { name, condition, status: present ? 'warning' : 'ok', ...detail }).catch((err: unknown) => this.log.error({ err, stream: name }, 'health event could not be written'));
  }

  private end(w: Watch, reason: string): void {
    this.watches.delete(w.stream.name);
    const totals = this.totals(w);
    void w.broadcastId
      .then((id) => (id ? this.broadcasts.end(id, { ...totals, reason }) : undefined))
      .catch((err: unknown) => this.log.error({ err, stream: w.stream.name }, 'broadcast end could not be written'));
  }

  /** Stops the ticker and ends every open broadcast; resolves when their rows are written. */
  async close(): Promise<void> {
    clearInterval(this.timer);
    const pending = [...this.watches.values()].map(async (w) => {
      this.watches.delete(w.stream.name);
      const id = await w.broadcastId;
      if (id) await this.broadcasts.end(id, { ...this.totals(w), reason: 'server shutting down' }).catch(() => undefined);
    });
    await Promise.all(pending);
  }
}
