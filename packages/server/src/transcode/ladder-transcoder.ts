/**
 * The ABR ladder (issue 5; DESIGN.md "rendition group"): a subscriber of each source stream that republishes
 * transcoded renditions into the core. One ffmpeg per stream decodes the source once and feeds every rung
 * (scaled in a chain, largest first); each rung comes back as FLV on its own pipe (fd 3, 4, …).
 *
 * - Keyframes: every rung gets a keyframe exactly where the source has one (`-force_key_frames source`, scene
 *   cuts off), so all renditions switch at identical presentation times; and at least one a second in between
 *   (`-g` from the source's measured frame rate), so an LL-HLS player switching to a rung finds an independent
 *   part at most a second back and does not reload a whole long GOP. WHEP switches and LL-HLS segment cuts use
 *   the source's keyframes only; the extra ones only start independent parts.
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
/** Longest time between two keyframes of a rung (the encoder's own GOP; the source's keyframes come on top), s. */
const RUNG_KEYFRAME_INTERVAL_S = 1;
/** Frame rate assumed when the source's cannot be measured (a single picture before the start buffer fills). */
const DEFAULT_FRAME_RATE = 30;
/** Access units held at the start while the source's frame rate is measured (it takes two pictures). */
const MAX_START_BUFFER = 64;

/**
 * ffmpeg arguments for one ladder process: FLV (H.264) in on stdin, one FLV per rung out on fd 3, 4, ….
 * Pure, for tests. Scaling is chained (each rung is scaled from the one above, which is cheaper than scaling
 * every rung from the full-size source); a frame-rate cap keeps keyframes and drops other frames that come too
 * soon after the previous kept one, so timestamps stay the source's.
 */
export function ladderFfmpegArgs(rungs: readonly PlannedRung[], encoder: VideoEncoderKind, sourceFrameRate = DEFAULT_FRAME_RATE): string[] {
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
    const fps = Math.min(sourceFrameRate, r.maxFrameRate ?? Infinity);
    const gop = Math.max(1, Math.round(fps * RUNG_KEYFRAME_INTERVAL_S));
    // Encoder time base in ms (the default is 1/frame rate, which snaps a source's irregular timestamps to a grid).
    args.push('-force_key_frames', 'source', '-g', String(gop), '-fps_mode', 'passthrough', '-enc_time_base', '1:1000');
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
  /** Index (counted since ffmpeg started) of the next queued audio frame this output has not published. */
  audioNext: number;
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
  /** Spacing of the source's pictures, 90 kHz ticks (sets the rungs' keyframe interval in frames). */
  private frameTicks: number | undefined;
  private lastVideoDts: number | undefined;
  /** From the session's first keyframe until the frame rate is known (its second picture): replayed into ffmpeg. */
  private startBuffer: AccessUnit[] | undefined;
  /** Stream ticks of the first picture written to this ffmpeg (FLV time 0). */
  private base: number | undefined;
  /** FLV ms of a written picture → its exact PTS (ticks) and when it was written (performance.now ms). */
  private readonly inputTimes = new Map<number, { pts: number; at: number }>();
  private audioQueue: AccessUnit[] = [];
  /** Index of `audioQueue[0]` counted since ffmpeg started (frames every output has taken are dropped). */
  private audioBase = 0;
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
    this.frameTicks = undefined;
    this.lastVideoDts = undefined;
    // ffmpeg starts at the second picture, when the frame rate is known; the first keyframe waits for it.
    this.startBuffer = rungs.length > 0 ? [] : undefined;
  }

  onAccessUnit(au: AccessUnit): void {
    const isVideo = au.trackId === this.video?.id;
    if (isVideo) {
      const d = this.lastVideoDts === undefined ? 0 : au.dts - this.lastVideoDts;
      if (d > 0 && d <= 90_000 / 5) this.frameTicks = d;
      this.lastVideoDts = au.dts;
    }
    const held = this.startBuffer;
    if (!held) {
      this.deliver(au);
      return;
    }
    if (held.length === 0 && !(isVideo && au.keyframe)) return;
    held.push(au);
    if (this.frameTicks === undefined && held.length < MAX_START_BUFFER) return;
    this.startBuffer = undefined;
    this.spawn();
    for (const a of held) this.deliver(a);
  }

  /** Writes one access unit to ffmpeg (video) or queues it to follow the renditions' video (audio). */
  private deliver(au: AccessUnit): void {
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
    const frameRate = this.frameTicks ? nominalFrameRate(90_000 / this.frameTicks) : DEFAULT_FRAME_RATE;
    const ff = spawnFfmpegPipe(ladderFfmpegArgs(this.rungs, this.options.encoder.kind, frameRate), this.log, 'ladder', this.rungs.length);
    this.ff = ff;
    this.startedAt = performance.now();
    this.lastInputAt = 0;
    this.waitingForKeyframe = true;
    this.base = undefined;
    this.inputTimes.clear();
    this.audioQueue = [];
    // Rendition streams persist across ffmpeg runs (their viewers stay); each run is a new publisher session.
    const previous = new Map(this.outputs.map((o) => [o.rung.name, o.stream]));
    this.audioBase = 0;
    this.outputs = this.rungs.map((rung) => ({ rung, reader: new FlvStreamReader(), stream: previous.get(rung.name), track: undefined, audioNext: 0 }));
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
    this.log.info({ encoder: this.options.encoder.kind, frameRate: Math.round(frameRate * 100) / 100, rungs: this.rungs.map((r) => `${r.width}x${r.height}@${r.bitrate}`) }, 'ladder transcoder started');
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
        this.releaseAudio(output, pts);
        output.stream.publish({ trackId: video.id, dts: pts, pts, keyframe: p.keyframe, payload: nals });
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
    if (this.audioQueue.length > MAX_AUDIO_QUEUE) {
      this.audioQueue.shift();
      this.audioBase++;
    }
  }

  /**
   * Publishes to `output`, just before its picture at `videoPts` (90 kHz), the queued audio frames that start
   * before that picture. Each rendition thus gets its audio where its video is, whatever the order ffmpeg's pipes
   * deliver in: at a segment cut (a keyframe) the audio before it ends the segment before, reaching past the cut,
   * and the audio from it on starts the next, so audio and video buffered by a player end together.
   */
  private releaseAudio(output: RungOutput, videoPts: number): void {
    const audio = this.audio;
    if (!audio) return;
    const until = (videoPts / 90_000) * audio.timescale;
    const live = output.stream?.state === 'live';
    let i = Math.max(output.audioNext, this.audioBase);
    for (let au = this.audioQueue[i - this.audioBase]; au && au.dts < until; au = this.audioQueue[++i - this.audioBase]) {
      if (live) output.stream!.publish(au);
    }
    output.audioNext = i;
    let slowest = Infinity;
    for (const o of this.outputs) slowest = Math.min(slowest, o.audioNext);
    const taken = slowest - this.audioBase;
    if (taken > 0) {
      this.audioQueue.splice(0, taken);
      this.audioBase += taken;
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
    this.startBuffer = undefined;
  }

  /** The ffmpeg child's PID, if running (tests kill it to prove recovery). */
  get pid(): number | undefined {
    return this.ff?.alive ? this.ff.child.pid : undefined;
  }
}

/** Frame rates encoders use; a measured one within 5 % snaps to the nearest (RTMP's ms timestamps jitter by a tick). */
const NOMINAL_FRAME_RATES = [24000 / 1001, 24, 25, 30000 / 1001, 30, 48, 50, 60000 / 1001, 60, 120];

/** `measured` frames/s snapped to the nearest common frame rate when within 5 % of it. */
export function nominalFrameRate(measured: number): number {
  let best: number | undefined;
  for (const r of NOMINAL_FRAME_RATES) {
    if (Math.abs(measured - r) / r >= 0.05) continue;
    if (best === undefined || Math.abs(measured - r) < Math.abs(measured - best)) best = r;
  }
  return best ?? measured;
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
