/**
 * The ABR ladder (issue 5; DESIGN.md "rendition group"): a subscriber of each source stream that republishes
 * transcoded renditions into the core. One ffmpeg per stream decodes the source once and feeds every rung
 * (scaled in a chain, largest first); each rung comes back as FLV on its own pipe (fd 3, 4, …).
 *
 * - Keyframes: every rung gets a keyframe exactly where the source has one (`-force_key_frames source`, scene
 *   cuts off, no other GOP boundary), so all renditions switch at identical presentation times.
 * - Latency: no B-frames, zerolatency-class settings (no lookahead, sliced threads), ffmpeg reads with no
 *   probing and flushes every packet.
 * - Timeline: output timestamps are mapped back to the source's exact ticks, so a picture has the same PTS in
 *   every rendition and in the source.
 * - Audio is not re-encoded: each rendition carries the source's audio frames, released in step with the video
 *   coming out of ffmpeg so both stay aligned.
 * - Faults: ffmpeg exiting, stalling, or falling behind real time is restarted with exponential backoff while the
 *   source keeps playing; every restart is logged and counted. ffmpeg ends by itself when its stdin closes, so
 *   it cannot outlive Glasscast, even after a SIGKILL.
 */
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { RenditionInfo, Stream } from '../core/stream.js';
import type { StreamObserver } from '../core/stream-registry.js';
import type { SessionStart, StreamSink, Subscriber } from '../core/subscriber.js';
import type { AudioTrack, Track, VideoTrack } from '../core/track.js';
import { joinLengthPrefixed, splitLengthPrefixed } from '../media/codecs/h264.js';
import { VIDEO_CODECS } from '../media/codecs/codec-table.js';
import { flvAvcBody, FlvStreamReader, parseFlvVideo, writeFlvHeader, writeFlvTag } from '../media/formats/flv.js';
import type { EncoderChoice, VideoEncoderKind } from './encoder-detect.js';
import { VAAPI_DEVICE } from './encoder-detect.js';
import { spawnFfmpegPipe, type FfmpegPipe } from './ffmpeg-path.js';
import type { PlannedRung, Rung } from './ladder.js';
import { planRungs } from './ladder.js';

/** Options of the ladder transcoder. */
export interface LadderTranscoderOptions {
  /** The ladder for a stream (config `ladder`, or its `streamLadders` entry); empty = no transcoding. */
  ladderFor(streamName: string): readonly Rung[];
  /** The encoder to drive (chosen once at start, see encoder-detect.ts). */
  encoder: EncoderChoice;
  /** First restart delay after ffmpeg dies, ms; doubles per restart up to `maxRestartDelayMs`. Default 500. */
  restartDelayMs?: number;
  /** Longest restart delay, ms. Default 30 000. */
  maxRestartDelayMs?: number;
  /** A picture taking longer than this from the source to ffmpeg's output means ffmpeg fell behind, ms. Default 3 000. */
  maxLagMs?: number;
}

/** Statistics of one stream's ladder (REST API `transcode`). */
export interface LadderStats {
  encoder: VideoEncoderKind;
  encoderReason: string;
  /** True while ffmpeg runs. */
  running: boolean;
  /** ffmpeg restarts after it died, stalled or fell behind, since the stream was created. */
  restarts: number;
  /** Why the last restart happened. */
  lastRestartReason: string | undefined;
  /** Time from a picture reaching the transcoder to its transcoded copy leaving ffmpeg, last picture, ms. */
  lagMs: number | undefined;
  renditions: RenditionInfo[];
}

/** Bytes waiting in ffmpeg's stdin beyond which it is considered behind real time. */
const MAX_STDIN_BACKLOG = 16 * 1024 * 1024;
/** Source pictures remembered for mapping ffmpeg's millisecond timestamps back to exact ticks. */
const MAX_INPUT_TIMES = 900;
/** Audio frames held while the video of the renditions catches up (about 10 s at 48 kHz AAC). */
const MAX_AUDIO_QUEUE = 500;
/** No output for this long while input flows means ffmpeg stalled, ms. */
const STALL_MS = 5_000;
/** A run this long resets the restart delay to its first value, ms. */
const STABLE_RUN_MS = 30_000;
/** GOP length (frames) that never triggers by itself: keyframes come from the source only. */
const NO_AUTOMATIC_KEYFRAMES = 100_000;

/**
 * ffmpeg arguments for one ladder process: FLV (H.264) in on stdin, one FLV per rung out on fd 3, 4, ….
 * Pure, for tests. Scaling is chained (each rung is scaled from the one above, which is cheaper than scaling
 * every rung from the full-size source); a frame-rate cap keeps keyframes and drops other frames that come too
 * soon after the previous kept one, so timestamps stay the source's.
 */
export function ladderFfmpegArgs(rungs: readonly PlannedRung[], encoder: VideoEncoderKind): string[] {
  const graph: string[] = [];
  rungs.forEach((r, i) => {
    const from = i === 0 ? '[0:v]' : `[next${i - 1}]`;
    const last = i === rungs.length - 1;
    graph.push(`${from}scale=${r.width}:${r.height}${last ? `[scaled${i}]` : `,split=2[scaled${i}][next${i}]`}`);
    const filters: string[] = [];
    if (r.maxFrameRate) {
      const minGap = (0.9 / r.maxFrameRate).toFixed(4);
      filters.push(`select='isnan(prev_selected_t)+key+gte(t-prev_selected_t\\,${minGap})'`);
    }
    if (encoder === 'vaapi') filters.push('format=nv12', 'hwupload');
    else if (encoder === 'qsv') filters.push('format=nv12');
    graph.push(`[scaled${i}]${filters.length > 0 ? filters.join(',') : 'null'}[out${i}]`);
  });
  const args = [
    ...(encoder === 'vaapi' ? ['-vaapi_device', VAAPI_DEVICE] : []),
    // No probing: the first tags are the AVC sequence header and a keyframe. (`-fflags nobuffer` must not be
    // used: it leaves the FLV demuxer without a first DTS and ffmpeg then holds every frame.)
    '-probesize', '32', '-analyzeduration', '0',
    // Timestamps pass through untouched, so each output picture maps back to its source picture.
    '-copyts',
    '-f', 'flv', '-i', 'pipe:0',
    '-filter_complex', graph.join(';'),
  ];
  rungs.forEach((r, i) => {
    const b = String(r.bitrate);
    args.push('-map', `[out${i}]`, '-an', ...encoderArgs(encoder), '-b:v', b, '-maxrate', String(Math.round(r.bitrate * 1.1)), '-bufsize', b);
    args.push('-force_key_frames', 'source', '-g', String(NO_AUTOMATIC_KEYFRAMES), '-fps_mode', 'passthrough');
    args.push('-f', 'flv', '-flvflags', 'no_duration_filesize', '-flush_packets', '1', `pipe:${3 + i}`);
  });
  return args;
}

/** Per-encoder options: no B-frames (WebRTC has no decode timestamps), lowest-latency rate control. */
function encoderArgs(encoder: VideoEncoderKind): string[] {
  switch (encoder) {
    case 'libx264':
      // Constrained baseline plays in every WebRTC stack (Firefox's OpenH264 included) and has no B-frames.
      return ['-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-sc_threshold', '0'];
    case 'nvenc':
      return ['-c:v', 'h264_nvenc', '-preset', 'p2', '-tune', 'ull', '-zerolatency', '1', '-bf', '0', '-rc', 'cbr', '-profile:v', 'baseline', '-forced-idr', '1', '-no-scenecut', '1'];
    case 'vaapi':
      return ['-c:v', 'h264_vaapi', '-bf', '0', '-rc_mode', 'CBR', '-profile:v', 'constrained_baseline'];
    case 'qsv':
      return ['-c:v', 'h264_qsv', '-preset', 'veryfast', '-bf', '0', '-look_ahead', '0', '-profile:v', 'baseline', '-forced_idr', '1'];
  }
}

interface RungOutput {
  rung: PlannedRung;
  reader: FlvStreamReader;
  stream: Stream | undefined;
  track: VideoTrack | undefined;
}

/** One stream's ladder: owns its ffmpeg process. `close()` is idempotent. */
class LadderJob implements StreamSink {
  private ff: FfmpegPipe | undefined;
  private outputs: RungOutput[] = [];
  private rungs: PlannedRung[] = [];
  private video: VideoTrack | undefined;
  private audio: AudioTrack | undefined;
  private live = false;
  private closed = false;
  private waitingForKeyframe = true;
  /** Stream ticks of the first picture written to this ffmpeg (FLV time 0). */
  private base: number | undefined;
  /** FLV ms of a written picture → its exact PTS (ticks) and when it was written (performance.now ms). */
  private readonly inputTimes = new Map<number, { pts: number; at: number }>();
  private audioQueue: AccessUnit[] = [];
  private restartTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private restartDelayMs: number;
  private startedAt = 0;
  private lastInputAt = 0;
  private lastOutputAt = 0;
  readonly stats: { restarts: number; lastRestartReason: string | undefined; lagMs: number | undefined } = { restarts: 0, lastRestartReason: undefined, lagMs: undefined };
  subscriber: Subscriber | undefined;

  constructor(
    private readonly source: Stream,
    private readonly ladder: readonly Rung[],
    private readonly options: LadderTranscoderOptions,
    private readonly log: Logger,
  ) {
    this.restartDelayMs = options.restartDelayMs ?? 500;
  }

  get running(): boolean {
    return this.ff?.alive ?? false;
  }

  get renditions(): RenditionInfo[] {
    return this.rungs.map(renditionInfo);
  }

  onSessionStart(start: SessionStart): void {
    this.stop();
    this.live = true;
    const video = start.tracks.find((t): t is VideoTrack => t.kind === 'video');
    this.audio = start.tracks.find((t): t is AudioTrack => t.kind === 'audio');
    this.video = video;
    const rungs = video?.codec === 'h264' ? planRungs(this.ladder, video.info.width, video.info.height) : [];
    for (const r of this.source.renditions) {
      if (!rungs.some((p) => p.name === r.info.name)) this.source.removeRendition(r.info.name, 'source resolution changed');
    }
    this.rungs = rungs;
    if (video && video.codec !== 'h264') this.log.info({ codec: video.codec }, 'no ladder: only H.264 sources are transcoded');
    else if (video && rungs.length === 0) this.log.info({ height: video.info.height }, 'no ladder: no rung below the source resolution');
    if (rungs.length > 0) this.spawn();
  }

  onAccessUnit(au: AccessUnit): void {
    const ff = this.ff;
    if (au.trackId === this.audio?.id && au.trackId !== this.video?.id) {
      this.queueAudio(au);
      return;
    }
    if (!ff?.alive || !this.video || au.trackId !== this.video.id) return;
    if (this.waitingForKeyframe) {
      if (!au.keyframe) return;
      this.waitingForKeyframe = false;
    }
    if (ff.backlog > MAX_STDIN_BACKLOG) {
      this.restart(`fell behind real time (${Math.round(ff.backlog / 1024)} KiB of input waiting)`);
      return;
    }
    this.base ??= au.dts;
    const dtsMs = Math.round((au.dts - this.base) / 90);
    const ptsMs = Math.round((au.pts - this.base) / 90);
    const now = performance.now();
    this.inputTimes.set(ptsMs, { pts: au.pts, at: now });
    if (this.inputTimes.size > MAX_INPUT_TIMES) this.inputTimes.delete(this.inputTimes.keys().next().value!);
    if (this.lastInputAt === 0) this.lastOutputAt = now;
    this.lastInputAt = now;
    ff.write(writeFlvTag(9, dtsMs, flvAvcBody(1, au.keyframe, ptsMs - dtsMs, joinLengthPrefixed(au.payload, this.video.info.nalLengthSize))));
  }

  onPublisherLost(): void {
    this.live = false;
    this.stop();
    for (const o of this.outputs) o.stream?.endSession('source publisher lost');
  }

  onEnd(): void {
    this.close();
  }

  /** Stops ffmpeg and timers; renditions end with their source stream. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.live = false;
    this.stop();
    this.subscriber?.close();
  }

  private spawn(): void {
    if (this.closed || !this.live || !this.video) return;
    const video = this.video;
    const ff = spawnFfmpegPipe(ladderFfmpegArgs(this.rungs, this.options.encoder.kind), this.log, 'ladder', this.rungs.length);
    this.ff = ff;
    this.startedAt = performance.now();
    this.lastInputAt = 0;
    this.waitingForKeyframe = true;
    this.base = undefined;
    this.inputTimes.clear();
    this.audioQueue = [];
    // Rendition streams persist across ffmpeg runs (their viewers stay); each run is a new publisher session.
    const previous = new Map(this.outputs.map((o) => [o.rung.name, o.stream]));
    this.outputs = this.rungs.map((rung) => ({ rung, reader: new FlvStreamReader(), stream: previous.get(rung.name), track: undefined }));
    this.outputs.forEach((output, i) => {
      ff.outputs[i]!.on('data', (data: Buffer) => {
        if (this.ff !== ff) return;
        try {
          this.onOutput(output, data);
        } catch (err) {
          this.restart(`bad output from ffmpeg (${(err as Error).message})`);
        }
      });
    });
    ff.onUnexpectedExit((reason) => {
      if (this.ff === ff) this.restart(`ffmpeg ${reason}`);
    });
    ff.write(writeFlvHeader(true, false));
    ff.write(writeFlvTag(9, 0, flvAvcBody(0, true, 0, video.config)));
    this.watchdog = setInterval(() => this.checkStall(), 1000);
    this.watchdog.unref();
    this.log.info({ encoder: this.options.encoder.kind, rungs: this.rungs.map((r) => `${r.width}x${r.height}@${r.bitrate}`) }, 'ladder transcoder started');
  }

  private onOutput(output: RungOutput, data: Buffer): void {
    const video = this.video!;
    for (const tag of output.reader.push(data)) {
      if (tag.tagType !== 9) continue;
      const p = parseFlvVideo(tag.body);
      if (p.type === 'config') {
        const info = VIDEO_CODECS.h264.parseConfig(p.record);
        output.track = { kind: 'video', id: video.id, codec: 'h264', timescale: 90_000, config: p.record, info };
        output.stream ??= this.source.addRendition(renditionInfo(output.rung));
        if (output.stream.state === 'live') output.stream.endSession('rendition configuration changed');
        const tracks: Track[] = [output.track];
        if (this.audio) tracks.push(this.audio);
        output.stream.startSession(tracks);
      } else if (p.type === 'frame' && output.track && output.stream) {
        const ptsMs = tag.timestamp + p.compositionTime;
        const input = this.inputTimes.get(ptsMs);
        // Map back to the source's exact ticks (FLV only has milliseconds): the same picture, the same PTS.
        const pts = input?.pts ?? (this.base ?? 0) + ptsMs * 90;
        const now = performance.now();
        this.lastOutputAt = now;
        if (input) this.stats.lagMs = Math.round(now - input.at);
        const nals = splitLengthPrefixed(p.data, output.track.info.nalLengthSize);
        output.stream.publish({ trackId: video.id, dts: pts, pts, keyframe: p.keyframe, payload: nals });
        if (output === this.outputs[this.outputs.length - 1]) this.releaseAudio(pts);
        if (input && now - input.at > (this.options.maxLagMs ?? 3000)) {
          this.restart(`fell behind real time (${Math.round(now - input.at)} ms from source to rendition)`);
          return;
        }
      }
    }
  }

  /** Holds source audio until the renditions' video has caught up with it, then publishes it to each. */
  private queueAudio(au: AccessUnit): void {
    if (!this.ff?.alive) return;
    this.audioQueue.push(au);
    if (this.audioQueue.length > MAX_AUDIO_QUEUE) this.audioQueue.shift();
  }

  private releaseAudio(videoPts: number): void {
    const audio = this.audio;
    if (!audio) return;
    const until = (videoPts / 90_000) * audio.timescale;
    let n = 0;
    while (n < this.audioQueue.length && this.audioQueue[n]!.dts <= until) n++;
    if (n === 0) return;
    const ready = this.audioQueue.splice(0, n);
    for (const o of this.outputs) {
      if (o.stream?.state !== 'live') continue;
      for (const au of ready) o.stream.publish(au);
    }
  }

  private checkStall(): void {
    const now = performance.now();
    if (this.lastInputAt > 0 && now - this.lastOutputAt > STALL_MS && now - this.lastInputAt < 1000) {
      this.restart(`stalled (no output for ${Math.round(now - this.lastOutputAt)} ms)`);
    }
  }

  /** Kills ffmpeg and starts it again after the backoff delay. */
  private restart(reason: string): void {
    if (this.closed) return;
    this.stop();
    if (!this.live) return;
    this.stats.restarts++;
    this.stats.lastRestartReason = reason;
    if (performance.now() - this.startedAt >= STABLE_RUN_MS) this.restartDelayMs = this.options.restartDelayMs ?? 500;
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(this.restartDelayMs * 2, this.options.maxRestartDelayMs ?? 30_000);
    this.log.warn({ reason, restarts: this.stats.restarts, delayMs: delay }, 'ladder transcoder restarting');
    for (const o of this.outputs) if (o.stream?.state === 'live') o.stream.endSession(`transcoder restarting: ${reason}`);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      this.spawn();
    }, delay);
    this.restartTimer.unref();
  }

  private stop(): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    this.ff?.stop();
    this.ff = undefined;
    this.audioQueue = [];
  }

  /** The ffmpeg child's PID, if running (tests kill it to prove recovery). */
  get pid(): number | undefined {
    return this.ff?.alive ? this.ff.child.pid : undefined;
  }
}

function renditionInfo(r: PlannedRung): RenditionInfo {
  return { name: r.name, width: r.width, height: r.height, bitrate: r.bitrate, maxFrameRate: r.maxFrameRate };
}

/** Runs a ladder for every source stream whose ladder is not empty. `close()` is idempotent. */
export class LadderTranscoder implements StreamObserver {
  private readonly jobs = new Map<string, LadderJob>();

  constructor(
    private readonly options: LadderTranscoderOptions,
    private readonly log: Logger,
  ) {}

  streamCreated(stream: Stream): void {
    this.jobs.get(stream.name)?.close();
    this.jobs.delete(stream.name);
    const ladder = this.options.ladderFor(stream.name);
    if (ladder.length === 0) return;
    const job = new LadderJob(stream, ladder, this.options, this.log.child({ stream: stream.name, transcode: 'ladder' }));
    this.jobs.set(stream.name, job);
    // Transcoding reads the whole stream; a large queue absorbs ffmpeg start-up without dropping pictures.
    job.subscriber = stream.subscribe(
      {
        onSessionStart: (s) => job.onSessionStart(s),
        onAccessUnit: (au) => job.onAccessUnit(au),
        onPublisherLost: () => job.onPublisherLost(),
        onEnd: () => {
          job.onEnd();
          if (this.jobs.get(stream.name) === job) this.jobs.delete(stream.name);
        },
      },
      { maxQueue: 2048 },
    );
  }

  /** Ladder figures of a stream, or undefined when it is not transcoded. */
  stats(name: string): LadderStats | undefined {
    const job = this.jobs.get(name);
    if (!job) return undefined;
    return {
      encoder: this.options.encoder.kind,
      encoderReason: this.options.encoder.reason,
      running: job.running,
      restarts: job.stats.restarts,
      lastRestartReason: job.stats.lastRestartReason,
      lagMs: job.stats.lagMs,
      renditions: job.renditions,
    };
  }

  /** PID of a stream's ffmpeg, if running. */
  pid(name: string): number | undefined {
    return this.jobs.get(name)?.pid;
  }

  /** Stops every ffmpeg. Idempotent. */
  close(): void {
    for (const job of this.jobs.values()) job.close();
    this.jobs.clear();
  }
}
