/**
 * The one video job of a stream (issues 5 and 10; DESIGN.md "rendition group"): a subscriber of the source that
 * republishes every derived picture into the core from ONE decode. One ffmpeg run decodes the source once and
 * feeds, scaled in a chain (largest first), every output; each comes back as FLV on its own pipe (fd 3, 4, …):
 *
 * - the ABR ladder's rungs below the source's height (`ladder` renditions, `720p`, `480p`, …);
 * - when the source has B-frames, or is HEVC, an H.264 B-frame-free copy at the source's size (`webrtc`, role
 *   `bframe-free`): WebRTC has no decode timestamps (and browsers do not take HEVC), so WHEP viewers watch this
 *   instead of the source.
 *
 * H.264 goes to ffmpeg as FLV; HEVC (which Debian's ffmpeg 5.1 does not read from FLV) as MPEG-TS
 * (media/formats/mpegts-muxer.ts), its timestamps offset by the muxer's delay.
 *
 * Every output has a keyframe exactly where the source has one (`-force_key_frames source`, scene cuts off), so
 * all renditions switch at identical presentation times, and one at least every second between (`-g`), so a
 * player switching finds an independent part close by. No B-frames, zerolatency-class settings, no probing.
 * Output timestamps are mapped back to the source's exact ticks: a picture has the same PTS everywhere.
 * Renditions carry video only; readers join the group's audio (core/joined-reader.ts).
 *
 * Overload degrades, never loops: the job measures its speed (media time out per media time in) and, when it
 * cannot keep real time, sheds work in a stated order (x264 `ultrafast`; frame rate capped at 30; ladder rungs
 * dropped, highest first; the B-frame-free copy scaled to 720p, then 480p; the lowest rung; finally all derived
 * video), jumping as far down that list as the measured speed says is needed. Each step replaces the run once;
 * the result is reported in `getStats()` (`degraded`, `shed`, `degradeReason`). The source plays throughout.
 * Faults (exit, stall, unreadable output) restart with backoff (ffmpeg-job.ts).
 */
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { EntityStats } from '../core/stats.js';
import type { PublisherSession, RenditionInfo, Stream } from '../core/stream.js';
import type { SessionStart, Subscriber } from '../core/subscriber.js';
import type { VideoTrack } from '../core/track.js';
import { joinLengthPrefixed, splitLengthPrefixed } from '../media/codecs/h264.js';
import { VIDEO_CODECS, type VideoCodec } from '../media/codecs/codec-table.js';
import { MpegTsMuxer, MUX_DELAY_TICKS } from '../media/formats/mpegts-muxer.js';
import { flvAvcBody, FlvStreamReader, parseFlvVideo, writeFlvHeader, writeFlvTag } from '../media/formats/flv.js';
import type { EncoderChoice, VideoEncoderKind } from './encoder-detect.js';
import { VAAPI_DEVICE } from './encoder-detect.js';
import { FfmpegJob, type FfmpegJobOptions, type FfmpegRun, type FfmpegRunSpec } from './ffmpeg-job.js';
import type { Rung } from './ladder.js';
import { planRungs } from './ladder.js';

/** Name of the B-frame-free rendition (its URL segment and WHEP layer id). */
export const BFRAME_FREE_RENDITION = 'webrtc';

/** One output of a run: a rung or the B-frame-free copy, at its size, bitrate and frame-rate cap. */
export interface VideoOutput {
  name: string;
  role: 'ladder' | 'bframe-free';
  /** Pixels, even. */
  width: number;
  height: number;
  /** bits/s. */
  bitrate: number;
  /** Frames/s cap; undefined keeps the source's rate. */
  maxFrameRate: number | undefined;
}

/** What one run makes, and what was shed to get there. */
export interface VideoPlan {
  /**
   * x264 preset of the rungs (hardware encoders ignore it). The B-frame-free copy runs one step faster
   * (`superfast`): at the source's size it would cost as much as the whole ladder at `veryfast`, and at the high
   * bitrate it gets the faster preset loses little. Shedding sets everything to `ultrafast`.
   */
  preset: 'veryfast' | 'ultrafast';
  outputs: VideoOutput[];
  /** Shedding steps taken, in order, as sentences (`x264 ultrafast`, `720p dropped`…); empty at full service. */
  shed: string[];
}

/** The source as the planner sees it. */
export interface VideoSourceFacts {
  width: number;
  height: number;
  /** Frames/s (nominal). */
  frameRate: number;
  bFrames: boolean;
  /** The source's codec; not H.264 (HEVC) needs the WebRTC copy like B-frames do. Default h264. */
  codec?: VideoCodec;
}

/** Options of a video job. */
export interface VideoJobOptions {
  /** The stream's ladder (empty: no rungs; the B-frame-free copy is still made for B-frame sources). */
  ladder: readonly Rung[];
  encoder: EncoderChoice;
  job?: FfmpegJobOptions;
  /** Media time out per media time in below which a measuring window counts as behind. Default 0.95. */
  minSpeed?: number;
  /** A picture taking longer than this from the source to its copy means behind, ms. Default 3 000. */
  maxLagMs?: number;
  /** Told once when the job closes (its stream ended, or its owner closed it). */
  onClosed?: () => void;
}

/** Bytes waiting in ffmpeg's stdin beyond which it is behind real time. */
const MAX_STDIN_BACKLOG = 16 * 1024 * 1024;
/** Source pictures remembered for mapping ffmpeg's millisecond timestamps back to exact ticks. */
const MAX_INPUT_TIMES = 900;
/** Longest time between two keyframes of an output (the encoder's own GOP; the source's keyframes come on top), s. */
const KEYFRAME_INTERVAL_S = 1;
/** Frame rate assumed when the source's cannot be measured. */
const DEFAULT_FRAME_RATE = 30;
/** Access units held at the start while the source's frame rate is measured (it takes two pictures). */
const MAX_START_BUFFER = 64;
/** A run's first seconds are not measured (x264 starts, the start buffer is caught up), ms. */
const SPEED_WARMUP_MS = 2_500;
/** Length of a speed-measuring window, ms. */
const SPEED_WINDOW_MS = 2_000;
/** A window behind with at least this lag (ms) counts; below it, a slow window is jitter. */
const MIN_BEHIND_LAG_MS = 800;
/** Windows behind in a row before work is shed (a single slow window is a passing spike of another process). */
const BEHIND_WINDOWS = 2;
/** Shed until the modelled cost is at most this share of what the measured speed affords. */
const SHED_MARGIN = 0.85;
/** Frame-rate cap of the shedding step, frames/s. */
const SHED_FRAME_RATE = 30;
/** Heights the B-frame-free copy is scaled to when shedding. */
const SHED_COPY_HEIGHTS = [720, 480];

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

/** The B-frame-free copy's bitrate: 2.5 Mb/s at 720p30, scaled by pixels and (less than linearly) frame rate. */
export function bframeFreeBitrate(width: number, height: number, frameRate: number): number {
  const rate = 2_500_000 * ((width * height) / (1280 * 720)) * Math.sqrt(Math.max(frameRate, 1) / 30);
  return Math.round(Math.min(8_000_000, Math.max(400_000, rate)) / 1000) * 1000;
}

/** Everything the job makes for `source` at full service: rungs below its height, and the copy for B-frame sources. */
export function fullPlan(ladder: readonly Rung[], source: VideoSourceFacts): VideoPlan {
  const outputs: VideoOutput[] = planRungs(ladder, source.width, source.height).map((r) => ({ name: r.name, role: 'ladder', width: r.width, height: r.height, bitrate: r.bitrate, maxFrameRate: r.maxFrameRate }));
  if (source.bFrames || (source.codec ?? 'h264') !== 'h264') {
    outputs.unshift({ name: BFRAME_FREE_RENDITION, role: 'bframe-free', width: source.width, height: source.height, bitrate: bframeFreeBitrate(source.width, source.height, source.frameRate), maxFrameRate: undefined });
  }
  return { preset: 'veryfast', outputs, shed: [] };
}

/**
 * The shedding steps after `full`, in the order they are taken, each cumulative (STYLE: overload degrades, never
 * loops): x264 ultrafast; frame rate capped at 30; ladder rungs dropped, highest first, keeping the lowest; the
 * B-frame-free copy scaled to 720p, then 480p; the lowest rung dropped; all derived video off (no outputs).
 */
export function sheddingSteps(full: VideoPlan, source: VideoSourceFacts, encoder: VideoEncoderKind): VideoPlan[] {
  const steps: VideoPlan[] = [];
  let plan = full;
  const push = (next: Omit<VideoPlan, 'shed'>, what: string): void => {
    plan = { ...next, shed: [...plan.shed, what] };
    steps.push(plan);
  };
  if (encoder === 'libx264') push({ ...plan, preset: 'ultrafast' }, 'x264 ultrafast');
  if (source.frameRate > SHED_FRAME_RATE + 1) {
    push({ ...plan, outputs: plan.outputs.map((o) => ({ ...o, maxFrameRate: Math.min(o.maxFrameRate ?? Infinity, SHED_FRAME_RATE) })) }, `frame rate capped at ${SHED_FRAME_RATE}`);
  }
  const rungs = (): VideoOutput[] => plan.outputs.filter((o) => o.role === 'ladder');
  while (rungs().length > 1) {
    const top = rungs()[0]!;
    push({ ...plan, outputs: plan.outputs.filter((o) => o !== top) }, `${top.name} dropped`);
  }
  for (const height of SHED_COPY_HEIGHTS) {
    const copy = plan.outputs.find((o) => o.role === 'bframe-free');
    if (!copy || copy.height <= height) continue;
    const width = Math.max(2, Math.round((copy.width * height) / copy.height / 2) * 2);
    const scaled = { ...copy, width, height, bitrate: bframeFreeBitrate(width, height, Math.min(source.frameRate, copy.maxFrameRate ?? Infinity)) };
    push({ ...plan, outputs: plan.outputs.map((o) => (o === copy ? scaled : o)) }, `${BFRAME_FREE_RENDITION} scaled to ${height}p`);
  }
  const last = rungs()[0];
  if (last && plan.outputs.length > 1) push({ ...plan, outputs: plan.outputs.filter((o) => o !== last) }, `${last.name} dropped`);
  if (plan.outputs.length > 0) push({ ...plan, outputs: [] }, 'all derived video stopped');
  return steps;
}

/** Relative x264 cost per pixel of each preset (measured on this project's 2-core machine, 1080p30 zerolatency baseline). */
const PRESET_COST = { veryfast: 1, superfast: 0.36, ultrafast: 0.24 } as const;
/** Cost of decoding a source pixel (H.264 High with B-frames) relative to encoding one at veryfast (measured likewise). */
const DECODE_COST = 0.65;

/** The x264 preset an output of `plan` runs at. */
function outputPreset(plan: Pick<VideoPlan, 'preset'>, output: VideoOutput): keyof typeof PRESET_COST {
  if (plan.preset === 'ultrafast') return 'ultrafast';
  return output.role === 'bframe-free' ? 'superfast' : 'veryfast';
}

/** Modelled cost of a plan, in veryfast-encoded pixels per second (only ratios between plans matter). */
export function planCost(plan: VideoPlan, source: VideoSourceFacts): number {
  if (plan.outputs.length === 0) return 0;
  let cost = source.width * source.height * source.frameRate * DECODE_COST;
  for (const o of plan.outputs) cost += o.width * o.height * Math.min(source.frameRate, o.maxFrameRate ?? Infinity) * PRESET_COST[outputPreset(plan, o)];
  return cost;
}

/**
 * ffmpeg arguments for one run: FLV (H.264) in on stdin, one FLV per output on fd 3, 4, …. Pure, for tests.
 * Scaling is chained (each output is scaled from the one above, which is cheaper than scaling every output from
 * the full-size source); an output at the source's size is not scaled. A frame-rate cap keeps keyframes and
 * drops other frames that come too soon after the previous kept one, so timestamps stay the source's.
 */
export function videoJobArgs(plan: Pick<VideoPlan, 'outputs' | 'preset'>, encoder: VideoEncoderKind, source: Pick<VideoSourceFacts, 'width' | 'height' | 'frameRate' | 'codec'>): string[] {
  const ts = (source.codec ?? 'h264') !== 'h264';
  const outputs = [...plan.outputs].sort((a, b) => b.height - a.height);
  const graph: string[] = [];
  outputs.forEach((o, i) => {
    const from = i === 0 ? '[0:v]' : `[next${i - 1}]`;
    const last = i === outputs.length - 1;
    const scale = o.width === source.width && o.height === source.height && i === 0 ? 'null' : `scale=${o.width}:${o.height}`;
    graph.push(`${from}${scale}${last ? `[scaled${i}]` : `,split=2[scaled${i}][next${i}]`}`);
    const filters: string[] = [];
    if (o.maxFrameRate && o.maxFrameRate < source.frameRate - 0.5) {
      const minGap = (0.9 / o.maxFrameRate).toFixed(4);
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
    // MPEG-TS carries no size: the demuxer reads the first keyframe's parameter sets (probing stops there).
    ...(ts ? ['-probesize', '65536', '-analyzeduration', '0'] : ['-probesize', '32', '-analyzeduration', '0']),
    // Timestamps pass through untouched, so each output picture maps back to its source picture.
    '-copyts',
    '-f', ts ? 'mpegts' : 'flv', '-i', 'pipe:0',
    '-filter_complex', graph.join(';'),
  ];
  outputs.forEach((o, i) => {
    const b = String(o.bitrate);
    args.push('-map', `[out${i}]`, '-an', ...encoderArgs(encoder, outputPreset(plan, o)), '-b:v', b, '-maxrate', String(Math.round(o.bitrate * 1.1)), '-bufsize', b);
    const fps = Math.min(source.frameRate, o.maxFrameRate ?? Infinity);
    const gop = Math.max(1, Math.round(fps * KEYFRAME_INTERVAL_S));
    // Encoder time base in ms (the default is 1/frame rate, which snaps a source's irregular timestamps to a grid).
    args.push('-force_key_frames', 'source', '-g', String(gop), '-fps_mode', 'passthrough', '-enc_time_base', '1:1000');
    args.push('-f', 'flv', '-flvflags', 'no_duration_filesize', '-flush_packets', '1', `pipe:${3 + i}`);
  });
  return args;
}

/** Per-encoder options: no B-frames (WebRTC has no decode timestamps), lowest-latency rate control. */
function encoderArgs(encoder: VideoEncoderKind, preset: keyof typeof PRESET_COST): string[] {
  switch (encoder) {
    case 'libx264':
      // Constrained baseline plays in every WebRTC stack (Firefox's OpenH264 included) and has no B-frames.
      return ['-c:v', 'libx264', '-preset', preset, '-tune', 'zerolatency', '-profile:v', 'baseline', '-sc_threshold', '0'];
    case 'nvenc':
      return ['-c:v', 'h264_nvenc', '-preset', 'p2', '-tune', 'ull', '-zerolatency', '1', '-bf', '0', '-rc', 'cbr', '-profile:v', 'baseline', '-forced-idr', '1', '-no-scenecut', '1'];
    case 'vaapi':
      return ['-c:v', 'h264_vaapi', '-bf', '0', '-rc_mode', 'CBR', '-profile:v', 'constrained_baseline'];
    case 'qsv':
      return ['-c:v', 'h264_qsv', '-preset', 'veryfast', '-bf', '0', '-look_ahead', '0', '-profile:v', 'baseline', '-forced_idr', '1'];
  }
}

function renditionInfo(o: VideoOutput): RenditionInfo {
  return { name: o.name, role: o.role, kind: 'video', codec: 'h264', width: o.width, height: o.height, bitrate: o.bitrate, maxFrameRate: o.maxFrameRate };
}

/** One output of the current run and the rendition it feeds (the rendition outlives runs). */
interface OutputState {
  plan: VideoOutput;
  reader: FlvStreamReader;
  track: VideoTrack | undefined;
}

/** A rendition fed by this job: its stream and this job's claim on it. */
interface Fed {
  stream: Stream;
  handle: PublisherSession;
}

/** Speed measurement of the current run. */
interface SpeedWindow {
  startedAt: number;
  inputTicks: number;
  outputTicks: number;
}

/** Makes every derived picture of one stream. `close()` is idempotent. */
export class VideoJob {
  readonly job: FfmpegJob;
  private readonly subscriber: Subscriber;
  private video: VideoTrack | undefined;
  private closed = false;
  /** The plan at full service for this session, the steps below it, and where we are (-1 = full). */
  private full: VideoPlan | undefined;
  private steps: VideoPlan[] = [];
  private level = -1;
  private facts: VideoSourceFacts | undefined;
  /** Why the job degraded (the last shedding decision), and the degrade level kept for a returning publisher. */
  private degradeReason: string | undefined;
  private remembered: { key: string; level: number; reason: string | undefined } | undefined;
  private outputs: OutputState[] = [];
  private readonly fed = new Map<string, Fed>();
  private waitingForKeyframe = true;
  private frameTicks: number | undefined;
  private lastVideoDts: number | undefined;
  private startBuffer: AccessUnit[] | undefined;
  private sessionHasBFrames = false;
  private run: FfmpegRun | undefined;
  /** The run's MPEG-TS writer when the source is HEVC (undefined: FLV). */
  private tsInput: MpegTsMuxer | undefined;
  /** Stream ticks of the first picture written to this run (FLV time 0). */
  private base: number | undefined;
  /** FLV ms of a written picture → its exact PTS (ticks) and when it was written (performance.now ms). */
  private readonly inputTimes = new Map<number, { pts: number; at: number }>();
  private runStartedAt = 0;
  private latestInputPts = -Infinity;
  private latestOutputPts = -Infinity;
  private window: SpeedWindow | undefined;
  /** Measuring windows in a row that were behind. */
  private behindWindows = 0;
  private readonly measured = { speed: undefined as number | undefined, lagMs: undefined as number | undefined };
  private readonly counters = { framesIn: 0, framesOut: 0, shedSteps: 0 };

  constructor(
    private readonly source: Stream,
    private readonly options: VideoJobOptions,
    private readonly log: Logger,
  ) {
    this.job = new FfmpegJob(`${source.name}/video`, { plan: () => this.plan(), runStarted: (run) => this.runStarted(run), runEnded: (reason) => this.runEnded(reason) }, log, options.job);
    // Transcoding reads the whole stream; a large queue absorbs ffmpeg start-up without dropping pictures.
    this.subscriber = source.subscribe(
      {
        onSessionStart: (s) => this.onSessionStart(s),
        onAccessUnit: (au) => this.onAccessUnit(au),
        onPublisherLost: () => this.onPublisherLost(),
        onEnd: (reason) => this.close(reason),
      },
      { maxQueue: 2048, label: 'video-job' },
    );
  }

  /** The renditions made now. */
  get renditions(): RenditionInfo[] {
    return this.currentPlan()?.outputs.map(renditionInfo) ?? [];
  }

  /** True when the job runs below full service. */
  get degraded(): boolean {
    return this.level >= 0;
  }

  private currentPlan(): VideoPlan | undefined {
    return this.level < 0 ? this.full : this.steps[this.level];
  }

  private onSessionStart(start: SessionStart): void {
    this.job.stop('source session restarted');
    const video = start.tracks.find((t): t is VideoTrack => t.kind === 'video');
    this.video = video?.codec === 'h264' || video?.codec === 'h265' ? video : undefined;
    this.full = undefined;
    this.frameTicks = undefined;
    this.lastVideoDts = undefined;
    this.sessionHasBFrames = false;
    // ffmpeg starts at the second picture, when the frame rate is known; the first keyframe waits for it.
    this.startBuffer = this.video ? [] : undefined;
    if (!this.video) this.removeAll('source has no video');
  }

  private onAccessUnit(au: AccessUnit): void {
    if (!this.video || au.trackId !== this.video.id) return;
    const d = this.lastVideoDts === undefined ? 0 : au.dts - this.lastVideoDts;
    if (d > 0 && d <= 90_000 / 5) this.frameTicks = d;
    this.lastVideoDts = au.dts;
    if (au.pts !== au.dts && !this.sessionHasBFrames) {
      this.sessionHasBFrames = true;
      // B-frames appearing mid-session: WebRTC viewers now need the copy.
      if (this.full && !this.full.outputs.some((o) => o.role === 'bframe-free')) this.replan('source began sending B-frames');
    }
    const held = this.startBuffer;
    if (!held) {
      this.deliver(au);
      return;
    }
    if (held.length === 0 && !au.keyframe) return;
    held.push(au);
    if (this.frameTicks === undefined && held.length < MAX_START_BUFFER) return;
    this.startBuffer = undefined;
    this.replan(undefined);
    for (const a of held) this.deliver(a);
  }

  /** Plans the session's outputs from what is known of the source, and starts (or restarts) the run. */
  private replan(reason: string | undefined): void {
    const video = this.video;
    if (!video) return;
    const frameRate = this.frameTicks ? nominalFrameRate(90_000 / this.frameTicks) : DEFAULT_FRAME_RATE;
    this.facts = { width: video.info.width, height: video.info.height, frameRate, bFrames: this.sessionHasBFrames, codec: video.codec };
    this.full = fullPlan(this.options.ladder, this.facts);
    this.steps = sheddingSteps(this.full, this.facts, this.options.encoder.kind);
    // A publisher returning with the same picture keeps the shedding it needed before (OBS reconnects often).
    const key = `${this.facts.width}x${this.facts.height}@${Math.round(frameRate)}/${this.facts.bFrames}`;
    this.level = this.remembered?.key === key ? Math.min(this.remembered.level, this.steps.length - 1) : -1;
    this.degradeReason = this.remembered?.key === key ? this.remembered.reason : undefined;
    this.applyPlan(reason);
  }

  /** Removes renditions the plan no longer makes, then starts a run for it (none when it has no outputs). */
  private applyPlan(reason: string | undefined): void {
    const plan = this.currentPlan();
    if (!plan) return;
    for (const name of [...this.fed.keys()]) {
      if (!plan.outputs.some((o) => o.name === name)) this.remove(name, plan.shed.length > 0 ? 'shed under overload' : 'not made for this source');
    }
    if (plan.outputs.length === 0) {
      this.job.stop(reason ?? 'nothing to make');
      if (this.video && this.full && this.full.outputs.length === 0) this.log.info({ height: this.video.info.height }, 'no derived video: no rung below the source and no B-frames');
      return;
    }
    if (this.job.state === 'running') this.job.reconfigure(reason ?? 'plan changed');
    else {
      this.job.stop('replanned');
      this.job.start();
    }
  }

  private plan(): FfmpegRunSpec {
    const plan = this.currentPlan()!;
    return { args: videoJobArgs(plan, this.options.encoder.kind, this.facts!), extraOutputs: plan.outputs.length };
  }

  private runStarted(run: FfmpegRun): void {
    const plan = this.currentPlan()!;
    const video = this.video!;
    this.run = run;
    this.runStartedAt = performance.now();
    this.waitingForKeyframe = true;
    this.base = undefined;
    this.inputTimes.clear();
    this.latestInputPts = -Infinity;
    this.latestOutputPts = -Infinity;
    this.window = undefined;
    this.behindWindows = 0;
    // The run's outputs in the order of its pipes (largest first, as videoJobArgs orders them).
    const ordered = [...plan.outputs].sort((a, b) => b.height - a.height);
    this.outputs = ordered.map((o) => ({ plan: o, reader: new FlvStreamReader(), track: undefined }));
    this.outputs.forEach((output, i) => {
      run.outputs[i]!.on('data', (data: Buffer) => {
        if (!run.current) return;
        try {
          this.onOutput(run, output, data);
        } catch (err) {
          this.job.failed('JOB_BAD_OUTPUT', `unreadable output from ffmpeg (${(err as Error).message})`);
        }
      });
    });
    if (video.codec === 'h264') {
      this.tsInput = undefined;
      run.write(writeFlvHeader(true, false));
      run.write(writeFlvTag(9, 0, flvAvcBody(0, true, 0, video.config)));
    } else {
      this.tsInput = new MpegTsMuxer([video]);
    }
    this.log.info({ encoder: this.options.encoder.kind, preset: plan.preset, frameRate: Math.round((this.facts?.frameRate ?? 0) * 100) / 100, outputs: ordered.map((o) => `${o.name} ${o.width}x${o.height}@${o.bitrate}${o.maxFrameRate ? `/${o.maxFrameRate}fps` : ''}`), shed: plan.shed }, 'video transcoder started');
  }

  private runEnded(reason: string): void {
    this.run = undefined;
    this.outputs = [];
    for (const fed of this.fed.values()) fed.handle.interrupt(`transcoder restarting: ${reason}`);
  }

  /** Where the run's timeline starts, ms: ffmpeg keeps input timestamps (-copyts), TS input starts at the muxer's delay. */
  private get inputOffsetMs(): number {
    return this.tsInput ? MUX_DELAY_TICKS / 90 : 0;
  }

  /** Writes one source picture to ffmpeg. */
  private deliver(au: AccessUnit): void {
    const run = this.run;
    const video = this.video;
    if (!run?.current || !video) return;
    if (this.waitingForKeyframe) {
      if (!au.keyframe) return;
      this.waitingForKeyframe = false;
    }
    if (run.backlog > MAX_STDIN_BACKLOG) {
      this.behind(`${Math.round(run.backlog / 1024)} KiB of input waiting in ffmpeg`, undefined);
      return;
    }
    this.base ??= au.dts;
    const dtsMs = Math.round((au.dts - this.base) / 90);
    const ptsMs = Math.round((au.pts - this.base) / 90);
    const now = performance.now();
    this.inputTimes.set(ptsMs + this.inputOffsetMs, { pts: au.pts, at: now });
    if (this.inputTimes.size > MAX_INPUT_TIMES) this.inputTimes.delete(this.inputTimes.keys().next().value!);
    if (au.pts > this.latestInputPts) this.latestInputPts = au.pts;
    this.counters.framesIn++;
    this.job.noteInput();
    if (this.tsInput) run.write(this.tsInput.writeAccessUnit(au.trackId, au.dts, au.pts, au.keyframe, au.payload));
    else run.write(writeFlvTag(9, dtsMs, flvAvcBody(1, au.keyframe, ptsMs - dtsMs, joinLengthPrefixed(au.payload, video.info.nalLengthSize))));
  }

  private onOutput(run: FfmpegRun, output: OutputState, data: Buffer): void {
    const video = this.video!;
    for (const tag of output.reader.push(data)) {
      if (!run.current) return; // a measurement below shed work and replaced the run
      if (tag.tagType !== 9) continue;
      const p = parseFlvVideo(tag.body);
      if (p.type === 'config') {
        const info = VIDEO_CODECS.h264.parseConfig(p.record);
        output.track = { kind: 'video', id: video.id, codec: 'h264', timescale: 90_000, config: p.record, info };
        this.feed(output.plan).handle.start([output.track]);
      } else if (p.type === 'frame' && output.track) {
        const ptsMs = tag.timestamp + p.compositionTime;
        const input = this.inputTimes.get(ptsMs);
        // Map back to the source's exact ticks (FLV only has milliseconds): the same picture, the same PTS.
        const pts = input?.pts ?? (this.base ?? 0) + (ptsMs - this.inputOffsetMs) * 90;
        const now = performance.now();
        if (input) this.measured.lagMs = Math.round(now - input.at);
        this.job.noteOutput();
        const fed = this.fed.get(output.plan.name);
        fed?.handle.publish({ trackId: video.id, dts: pts, pts, keyframe: p.keyframe, payload: splitLengthPrefixed(p.data, output.track.info.nalLengthSize) });
        if (output === this.outputs[0]) {
          this.counters.framesOut++;
          if (pts > this.latestOutputPts) this.latestOutputPts = pts;
          this.measure(now);
        }
      }
    }
  }

  /** The rendition for `output`, created and claimed on first use. */
  private feed(output: VideoOutput): Fed {
    let fed = this.fed.get(output.name);
    if (fed && (fed.handle.closed || fed.stream.state === 'ended')) fed = undefined;
    const stream = this.source.addRendition(renditionInfo(output));
    if (!fed) {
      fed = { stream, handle: stream.claim({ protocol: 'transcoder' }, { stats: () => ({ counters: {}, info: { job: this.job.id } }) }) };
      this.fed.set(output.name, fed);
    }
    return fed;
  }

  /** Speed over fixed windows after the warm-up: media time out per media time in, and the lag. */
  private measure(now: number): void {
    if (now - this.runStartedAt < SPEED_WARMUP_MS || !Number.isFinite(this.latestInputPts)) return;
    const w = this.window;
    if (!w) {
      this.window = { startedAt: now, inputTicks: this.latestInputPts, outputTicks: this.latestOutputPts };
      return;
    }
    if (now - w.startedAt < SPEED_WINDOW_MS) return;
    const input = this.latestInputPts - w.inputTicks;
    const output = this.latestOutputPts - w.outputTicks;
    this.window = { startedAt: now, inputTicks: this.latestInputPts, outputTicks: this.latestOutputPts };
    if (input < 45_000) return; // under half a second of source media arrived: nothing to judge
    const speed = output / input;
    this.measured.speed = Math.round(speed * 1000) / 1000;
    const lag = this.measured.lagMs ?? 0;
    const slow = speed < (this.options.minSpeed ?? 0.95) && lag > MIN_BEHIND_LAG_MS;
    this.behindWindows = slow ? this.behindWindows + 1 : 0;
    if (lag > (this.options.maxLagMs ?? 3_000)) this.behind(`${lag} ms from source picture to its copy`, speed);
    else if (this.behindWindows >= BEHIND_WINDOWS) this.behind(`${speed.toFixed(2)}× real time with ${lag} ms lag`, speed);
  }

  /**
   * The run cannot keep real time: take the shedding steps the measured speed calls for (at least one), so the
   * modelled cost fits what the machine delivered, with a margin.
   */
  private behind(why: string, speed: number | undefined): void {
    const facts = this.facts;
    const current = this.currentPlan();
    if (!facts || !current || this.level >= this.steps.length - 1) return;
    const budget = planCost(current, facts) * Math.min(speed ?? 0.9, 0.95) * SHED_MARGIN;
    let level = this.level + 1;
    while (level < this.steps.length - 1 && planCost(this.steps[level]!, facts) > budget) level++;
    this.counters.shedSteps += level - this.level;
    this.level = level;
    const plan = this.steps[level]!;
    this.degradeReason = `behind real time (${why}); shed: ${plan.shed.join(', ')}`;
    this.remembered = { key: `${facts.width}x${facts.height}@${Math.round(facts.frameRate)}/${facts.bFrames}`, level, reason: this.degradeReason };
    this.log.warn({ why, shed: plan.shed, outputs: plan.outputs.map((o) => o.name) }, 'video transcoder overloaded; shedding work');
    this.applyPlan(`overloaded: ${why}`);
  }

  private onPublisherLost(): void {
    this.startBuffer = undefined;
    this.job.stop('source publisher lost');
  }

  private remove(name: string, reason: string): void {
    const fed = this.fed.get(name);
    this.fed.delete(name);
    fed?.handle.close(reason, { endStream: true });
    this.source.removeRendition(name, reason);
  }

  private removeAll(reason: string): void {
    for (const name of [...this.fed.keys()]) this.remove(name, reason);
  }

  /** Statistics: outputs, what was shed and why, speed, lag, encoder. */
  getStats(): EntityStats {
    const plan = this.currentPlan();
    const stats = this.job.getStats({
      counters: { ...this.counters, ...(this.measured.speed !== undefined ? { speed: this.measured.speed } : {}), ...(this.measured.lagMs !== undefined ? { lagMs: this.measured.lagMs } : {}) },
      info: {
        kind: 'video',
        encoder: this.options.encoder.kind,
        encoderReason: this.options.encoder.reason,
        preset: plan?.preset,
        outputs: plan?.outputs.map((o) => o.name).join(',') ?? '',
        degraded: this.degraded,
        shed: plan?.shed.join(', ') || undefined,
        degradeReason: this.degraded ? this.degradeReason : undefined,
      },
    });
    if (this.degraded && stats.state === 'running') stats.state = 'degraded';
    if (this.degraded && plan?.outputs.length === 0) stats.state = 'stopped (overload)';
    return stats;
  }

  /** Stops ffmpeg; renditions end with the source (or now, when the source lives on). Idempotent. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.job.close(reason);
    this.subscriber.close();
    this.removeAll(reason);
    this.options.onClosed?.();
  }
}
