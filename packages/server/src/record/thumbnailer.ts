/**
 * Thumbnails (issue 13): a JPEG of a live stream every few seconds, for the directory and admin pages
 * (`/thumbnails/<name>.jpg`) and one per recording — made only while someone asks for them (a page, the recorder
 * of a recording in progress), so a box nobody browses spends nothing on them.
 *
 * The newest keyframe of each stream and of each of its ladder rungs is kept (readers of the core that hold one
 * access unit each); every `intervalMs` a stream with a keyframe newer than its thumbnail gets one short ffmpeg
 * run on the keyframe of its lowest rendition (a 360p rung decodes ~9× cheaper than a 1080p source): that
 * keyframe alone, as MPEG-TS with its parameter sets (media/formats/mpegts-muxer.ts), decoded and scaled to at
 * most `maxHeight` lines, written as JPEG. Runs go one at a time for all streams, at a low CPU priority (nice 10: the
 * live transcoders come first, yet a saturated box still makes a thumbnail within seconds; at nice 19 it got
 * ~1.5 % of a core and none came), each bounded in time; a failure leaves the last thumbnail in place.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { setPriority } from 'node:os';
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { Rendition, Stream } from '../core/stream.js';
import type { StreamObserver } from '../core/stream-registry.js';
import type { Subscriber } from '../core/subscriber.js';
import type { Track, VideoTrack } from '../core/track.js';
import { MpegTsMuxer } from '../media/formats/mpegts-muxer.js';
import { ffmpegPath, trackChild } from '../transcode/ffmpeg-path.js';

/** One stream's thumbnail. */
export interface Thumbnail {
  jpeg: Buffer;
  /** Epoch ms it was made. */
  at: number;
}

/** Options of the thumbnailer. */
export interface ThumbnailerOptions {
  /** How often a live stream's thumbnail is renewed, ms (default 5000). */
  intervalMs: number;
  /** Largest height, lines (default 360); the width keeps the aspect ratio. */
  maxHeight: number;
}

/** Longest one ffmpeg run may take, ms. */
const RUN_TIMEOUT_MS = 10_000;
/** Nice value of a thumbnail run (the live transcoders run at 0). */
const RUN_NICE = 10;
/** Largest JPEG kept, bytes. */
const MAX_JPEG_BYTES = 2 * 1024 * 1024;

/** One picture source of a stream: the stream itself or a ladder rung. */
interface Source {
  stream: Stream;
  subscriber: Subscriber;
  video: VideoTrack | undefined;
  keyframe: AccessUnit | undefined;
  /** When the kept keyframe arrived, ms. */
  keyframeAt: number;
}

interface Watched {
  stream: Stream;
  sources: Source[];
  /** When the thumbnail was last made, ms. */
  madeFrom: number;
  /** When someone last asked for the thumbnail (a page, the recorder), ms: only wanted ones are renewed. */
  wantedAt: number;
}

/** A thumbnail nobody asked for in this long is no longer renewed, ms. */
const WANTED_FOR_MS = 60_000;

/** A source's keyframe older than this is not used (its rung may have been shed), ms. */
const KEYFRAME_FRESH_MS = 10_000;

/** Makes and keeps thumbnails of live streams. `close()` is idempotent. */
export class Thumbnailer implements StreamObserver {
  private readonly watched = new Map<string, Watched>();
  private readonly thumbnails = new Map<string, Thumbnail>();
  private readonly timer: NodeJS.Timeout;
  private busy = false;
  /** The ffmpeg run in flight, killed by close(). */
  private running: ChildProcess | undefined;
  private closed = false;
  readonly counters = { made: 0, failed: 0 };

  constructor(
    private readonly options: ThumbnailerOptions,
    private readonly log: Logger,
  ) {
    this.timer = setInterval(() => void this.renew(), Math.max(500, options.intervalMs / 5));
    this.timer.unref();
  }

  /**
   * The newest thumbnail of `name`, if one was made (it stays after the stream ends). Asking keeps it renewed for
   * a minute: no ffmpeg runs for streams nobody looks at.
   */
  latest(name: string): Thumbnail | undefined {
    const w = this.watched.get(name);
    if (w) w.wantedAt = Date.now();
    return this.thumbnails.get(name);
  }

  /** When the newest thumbnail of `name` was made (epoch ms), without asking for it to be renewed. */
  madeAt(name: string): number | undefined {
    return this.thumbnails.get(name)?.at;
  }

  streamCreated(stream: Stream): void {
    this.forget(stream.name);
    const w: Watched = { stream, sources: [], madeFrom: 0, wantedAt: 0 };
    this.watched.set(stream.name, w);
    this.addSource(w, stream, () => this.forget(stream.name, w));
  }

  /** A ladder rung of a watched stream: its keyframes are cheaper to decode. */
  renditionCreated(source: Stream, rendition: Rendition): void {
    const w = this.watched.get(source.name);
    if (!w || w.stream !== source || rendition.info.role !== 'ladder') return;
    this.addSource(w, rendition.stream, () => undefined);
  }

  private addSource(w: Watched, stream: Stream, ended: () => void): void {
    const src: Source = { stream, subscriber: undefined as unknown as Subscriber, video: undefined, keyframe: undefined, keyframeAt: 0 };
    src.subscriber = stream.subscribe(
      {
        onSessionStart: (s) => {
          src.video = s.tracks.find((t: Track): t is VideoTrack => t.kind === 'video');
          src.keyframe = undefined;
        },
        onAccessUnit: (au) => {
          if (au.keyframe && au.trackId === src.video?.id) {
            src.keyframe = au;
            src.keyframeAt = Date.now();
          }
        },
        onPublisherLost: () => undefined,
        onEnd: () => {
          src.subscriber.close();
          w.sources = w.sources.filter((x) => x !== src);
          ended();
        },
      },
      { maxQueue: 64, label: 'thumbnails' },
    );
    w.sources.push(src);
  }

  private forget(name: string, only?: Watched): void {
    const w = this.watched.get(name);
    if (!w || (only && w !== only)) return;
    this.watched.delete(name);
    for (const s of w.sources) s.subscriber.close();
  }

  /** The freshest keyframe of the stream's lowest rendition, if any. */
  private pick(w: Watched, now: number): Source | undefined {
    return w.sources
      .filter((s) => s.keyframe && s.video && now - s.keyframeAt < KEYFRAME_FRESH_MS)
      .sort((a, b) => (a.video!.info.height ?? 0) - (b.video!.info.height ?? 0))[0];
  }

  /** Makes the thumbnail of the stream that waited longest, if one is due. */
  private async renew(): Promise<void> {
    if (this.busy || this.closed) return;
    const now = Date.now();
    const due = [...this.watched.values()]
      .filter((w) => now - w.wantedAt < WANTED_FOR_MS && now - w.madeFrom >= this.options.intervalMs && w.sources.some((s) => s.keyframeAt > w.madeFrom))
      .sort((a, b) => a.madeFrom - b.madeFrom)[0];
    const source = due && this.pick(due, now);
    if (!due || !source) return;
    this.busy = true;
    due.madeFrom = now;
    try {
      const jpeg = await this.decode(source.video!, source.keyframe!);
      this.thumbnails.set(due.stream.name, { jpeg, at: Date.now() });
      this.counters.made++;
    } catch (err) {
      this.counters.failed++;
      this.log.warn({ stream: due.stream.name, err: (err as Error).message }, 'thumbnail could not be made');
    } finally {
      this.busy = false;
    }
  }

  /** One keyframe → JPEG through ffmpeg. */
  private decode(video: VideoTrack, au: AccessUnit): Promise<Buffer> {
    const ts = new MpegTsMuxer([video]).writeAccessUnit(video.id, au.dts, au.pts, true, au.payload);
    return new Promise<Buffer>((resolve, reject) => {
      const child = spawn(
        ffmpegPath(),
        ['-hide_banner', '-loglevel', 'error', '-f', 'mpegts', '-i', 'pipe:0', '-frames:v', '1', '-vf', `scale=-2:'min(${this.options.maxHeight},ih)'`, '-q:v', '5', '-f', 'image2', '-c:v', 'mjpeg', 'pipe:1'],
        { stdio: ['pipe', 'pipe', 'pipe'] },
      );
      trackChild(child);
      this.running = child;
      child.once('exit', () => {
        if (this.running === child) this.running = undefined;
      });
      // Behind the live transcoders for the CPU: a thumbnail may wait, a rendition may not.
      if (child.pid) {
        try {
          setPriority(child.pid, RUN_NICE);
        } catch {
          // not allowed: it runs at normal priority
        }
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let stderr = '';
      const timer = setTimeout(() => child.kill('SIGKILL'), RUN_TIMEOUT_MS);
      child.stdout.on('data', (d: Buffer) => {
        size += d.length;
        if (size <= MAX_JPEG_BYTES) chunks.push(d);
      });
      child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-500)));
      child.stdin.on('error', () => undefined);
      child.on('error', reject);
      child.on('close', (code) => {
        clearTimeout(timer);
        const jpeg = Buffer.concat(chunks);
        if (code === 0 && jpeg.length > 2 && jpeg[0] === 0xff && jpeg[1] === 0xd8 && size <= MAX_JPEG_BYTES) resolve(jpeg);
        else reject(new Error(`ffmpeg exited ${code}: ${stderr.trim() || 'no picture'}`));
      });
      child.stdin.end(ts);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.running?.kill('SIGKILL');
    for (const name of [...this.watched.keys()]) this.forget(name);
  }
}
