/**
 * A reader of a stream with a bounded queue (STYLE rule 4, after MediaMTX): the publisher never waits for it.
 * When the queue overflows, queued frames are dropped and counted, and delivery resumes at the next video
 * keyframe; the total is logged periodically as one line.
 */
import type { AccessUnit } from './access-unit.js';
import type { Logger } from './logger.js';
import type { EntityStats } from './stats.js';
import { entityStats } from './stats.js';
import type { Track } from './track.js';

/** Why a publisher session started: the first one, or a return within the reconnect grace period. */
export interface SessionStart {
  tracks: readonly Track[];
  /** Counts publisher sessions of this stream, from 1. */
  session: number;
  /** True for every session after the first: outputs mark a discontinuity. */
  discontinuity: boolean;
}

/** What a subscriber receives, in order. Implementations must not throw (errors are caught and logged). */
export interface StreamSink {
  onSessionStart(start: SessionStart): void;
  onAccessUnit(au: AccessUnit): void;
  /** The publisher went away; it may come back within the grace period. */
  onPublisherLost(): void;
  /** The stream is over (grace period expired or closed); nothing follows. */
  onEnd(reason: string): void;
}

type Event =
  | { type: 'start'; start: SessionStart }
  | { type: 'au'; au: AccessUnit; /** performance.now() when queued, ms. */ queuedAt?: number }
  | { type: 'lost' }
  | { type: 'end'; reason: string };

/** Options of a subscriber. */
export interface SubscriberOptions {
  /** Maximum queued access units before dropping to the next keyframe. Default 1024. */
  maxQueue?: number;
  /** Interval between "reader too slow" log lines, ms. Default 10 000. */
  dropLogIntervalMs?: number;
  /**
   * For real-time readers (WebRTC): when the oldest queued access unit waited longer than this, ms, the queue is
   * dropped as on overflow and delivery resumes at the next keyframe. Default: no limit.
   */
  maxLagMs?: number;
  /** Who reads, for logs and stats (`llhls`, `whep`, `video-job`…). */
  label?: string;
}

/** Longest a drain runs before yielding to I/O (socket reads, timers), ms. */
const DRAIN_SLICE_MS = 8;

let nextSubscriberId = 1;

/** One reader of a stream. Created by `Stream.subscribe`; `close()` is idempotent. */
export class Subscriber {
  readonly id: string;
  readonly createdAt = Date.now();
  private queue: Event[] = [];
  /** Index of the next event to deliver in `queue` (a drain may stop part-way to let I/O run). */
  private head = 0;
  private queuedFrames = 0;
  private scheduled = false;
  private waitForKeyframe = false;
  private droppedSinceLog = 0;
  private lastDropLog = 0;
  private dropTimer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Access units dropped because this reader fell behind, in total. */
  droppedFrames = 0;
  /** Access units delivered, in total. */
  deliveredFrames = 0;

  private readonly log: Logger;
  private readonly maxQueue: number;
  private readonly dropLogIntervalMs: number;
  private readonly maxLagMs: number | undefined;

  constructor(
    private readonly sink: StreamSink,
    log: Logger,
    private readonly onClose: (s: Subscriber) => void,
    options: SubscriberOptions = {},
  ) {
    this.maxQueue = options.maxQueue ?? 1024;
    this.dropLogIntervalMs = options.dropLogIntervalMs ?? 10_000;
    this.maxLagMs = options.maxLagMs;
    this.id = `${options.label ?? 'reader'}#${nextSubscriberId++}`;
    this.log = log.child({ reader: this.id });
  }

  /** Queues an event; never blocks and never throws. */
  push(event: Event): void {
    if (this.closed) return;
    if (event.type === 'au') {
      if (this.waitForKeyframe) {
        if (!event.au.keyframe || !this.isVideoKeyframe(event.au)) {
          this.countDrop(1);
          return;
        }
        this.waitForKeyframe = false;
      }
      if (this.queuedFrames >= this.maxQueue || this.lagging()) {
        this.queue = this.queue.slice(this.head).filter((e) => e.type !== 'au');
        this.head = 0;
        this.countDrop(this.queuedFrames + 1);
        this.queuedFrames = 0;
        this.waitForKeyframe = true;
        return;
      }
      this.queuedFrames++;
      if (this.maxLagMs !== undefined) event.queuedAt = performance.now();
    }
    this.queue.push(event);
    this.schedule();
  }

  /** True when the oldest queued access unit waited longer than `maxLagMs`. */
  private lagging(): boolean {
    if (this.maxLagMs === undefined) return false;
    for (let i = this.head; i < this.queue.length; i++) {
      const e = this.queue[i]!;
      if (e.type === 'au') return e.queuedAt !== undefined && performance.now() - e.queuedAt > this.maxLagMs;
    }
    return false;
  }

  private videoTrackIds = new Set<number>();

  /** Sets which track ids are video, so overflow recovery waits for a video keyframe. */
  setTracks(tracks: readonly Track[]): void {
    this.videoTrackIds = new Set(tracks.filter((t) => t.kind === 'video').map((t) => t.id));
  }

  private isVideoKeyframe(au: AccessUnit): boolean {
    return this.videoTrackIds.size === 0 || this.videoTrackIds.has(au.trackId);
  }

  /** Counts dropped frames; logs the total at most once per interval (a timer reports drops after the last line). */
  private countDrop(n: number): void {
    this.droppedFrames += n;
    this.droppedSinceLog += n;
    const wait = this.lastDropLog + this.dropLogIntervalMs - Date.now();
    if (wait <= 0) this.reportDrops();
    else if (!this.dropTimer) {
      this.dropTimer = setTimeout(() => this.reportDrops(), wait);
      this.dropTimer.unref();
    }
  }

  private reportDrops(): void {
    clearTimeout(this.dropTimer);
    this.dropTimer = undefined;
    if (this.droppedSinceLog === 0) return;
    this.log.warn({ discarded: this.droppedSinceLog, total: this.droppedFrames }, `reader too slow, discarded ${this.droppedSinceLog} frames`);
    this.droppedSinceLog = 0;
    this.lastDropLog = Date.now();
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.drain());
  }

  /** Delivers queued events for at most DRAIN_SLICE_MS, then yields and continues on the next turn. */
  private drain(): void {
    this.scheduled = false;
    const until = performance.now() + DRAIN_SLICE_MS;
    while (this.head < this.queue.length) {
      if (this.closed) return;
      const event = this.queue[this.head++]!;
      if (event.type === 'au') this.queuedFrames--;
      this.deliver(event);
      if (performance.now() >= until && this.head < this.queue.length) break;
    }
    if (this.head >= this.queue.length) {
      this.queue = [];
      this.head = 0;
    } else {
      if (this.head > 1024) {
        this.queue = this.queue.slice(this.head);
        this.head = 0;
      }
      this.schedule();
    }
  }

  private deliver(event: Event): void {
    try {
      switch (event.type) {
        case 'start':
          this.sink.onSessionStart(event.start);
          break;
        case 'au':
          this.deliveredFrames++;
          this.sink.onAccessUnit(event.au);
          break;
        case 'lost':
          this.sink.onPublisherLost();
          break;
        case 'end':
          this.sink.onEnd(event.reason);
          break;
      }
    } catch (err) {
      // A failing reader must not break the stream or other readers (mediasoup's safeEmit).
      this.log.error({ err }, 'stream reader threw; event skipped');
    }
  }

  /** Stops delivery and detaches from the stream. Idempotent. The last drop total is logged, never lost. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.reportDrops();
    this.queue = [];
    this.head = 0;
    this.queuedFrames = 0;
    this.onClose(this);
  }

  /** Statistics of this reader: queued, delivered and dropped access units. */
  getStats(): EntityStats {
    return entityStats('subscriber', this.id, this.closed ? 'closed' : this.waitForKeyframe ? 'resyncing' : 'reading', this.createdAt, {
      counters: { queued: this.queue.length - this.head, droppedFrames: this.droppedFrames, deliveredFrames: this.deliveredFrames },
    });
  }
}
