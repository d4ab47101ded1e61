/**
 * Derived media for every stream (issue 10; DESIGN.md): at most ONE video job and ONE audio job per source
 * stream, each a supervised ffmpeg (ffmpeg-job.ts) that publishes renditions into the stream's group. Egresses
 * never start ffmpeg: they read the renditions (core/stream.ts `videoWithoutBFrames`, `audioFor`).
 *
 * - Video (video-job.ts): for H.264 sources with ladder rungs below their height, or with B-frames.
 * - Audio (audio-job.ts): AAC sources get an Opus rendition (WebRTC), Opus sources an AAC one (LL-HLS).
 */
import type { Logger } from '../core/logger.js';
import type { EntityStats } from '../core/stats.js';
import type { Stream } from '../core/stream.js';
import type { StreamObserver } from '../core/stream-registry.js';
import type { SessionStart } from '../core/subscriber.js';
import type { AudioTrack } from '../core/track.js';
import { AudioJob } from './audio-job.js';
import type { EncoderChoice } from './encoder-detect.js';
import type { FfmpegJobOptions } from './ffmpeg-job.js';
import type { Rung } from './ladder.js';
import { VideoJob } from './video-job.js';

/** Options of the transcode manager. */
export interface TranscodeManagerOptions {
  /** The ladder of a stream (config `ladder`, or its `streamLadders` entry); empty = no rungs. */
  ladderFor(streamName: string): readonly Rung[];
  /** The video encoder (chosen once at start, encoder-detect.ts). */
  encoder: EncoderChoice;
  /** Restart timing of every job (defaults in ffmpeg-job.ts). */
  job?: FfmpegJobOptions;
  /** Speed below which the video job sheds work (default 0.95; video-job.ts). */
  minSpeed?: number;
}

/** The jobs of one source stream. */
interface StreamJobs {
  video: VideoJob;
  audio: AudioJob | undefined;
}

/** Runs every stream's derived media. `close()` is idempotent. */
export class TranscodeManager implements StreamObserver {
  private readonly streams = new Map<Stream, StreamJobs>();

  constructor(
    private readonly options: TranscodeManagerOptions,
    private readonly log: Logger,
  ) {}

  streamCreated(stream: Stream): void {
    const log = this.log.child({ stream: stream.name });
    // The video job closes itself when the stream ends; the stream's jobs are forgotten then.
    const video = new VideoJob(stream, { ladder: this.options.ladderFor(stream.name), encoder: this.options.encoder, job: this.options.job, minSpeed: this.options.minSpeed, onClosed: () => this.forget(stream) }, log.child({ transcode: 'video' }));
    this.streams.set(stream, { video, audio: undefined });
  }

  /** Before readers hear of the session: the audio rendition in the other codec is put in place. */
  sessionStarted(stream: Stream, start: SessionStart): void {
    const jobs = this.streams.get(stream);
    if (!jobs) return;
    const audio = start.tracks.find((t): t is AudioTrack => t.kind === 'audio');
    const video = start.tracks.find((t) => t.kind === 'video');
    // WebRTC (the Opus consumer) plays every source (HEVC through the video job's H.264 copy); LL-HLS (the AAC
    // consumer) plays everything.
    const to = audio?.codec === 'aac' && (!video || video.codec === 'h264' || video.codec === 'h265') ? 'opus' : audio?.codec === 'opus' ? 'aac' : undefined;
    if (jobs.audio && jobs.audio.to !== to) {
      jobs.audio.close('source audio changed');
      jobs.audio = undefined;
    }
    if (!audio || !to) return;
    jobs.audio ??= new AudioJob(stream, to, this.log.child({ stream: stream.name, transcode: 'audio' }), this.options.job);
    jobs.audio.sessionStarted(audio);
  }

  private forget(stream: Stream): void {
    const jobs = this.streams.get(stream);
    if (!jobs) return;
    this.streams.delete(stream);
    jobs.video.close('stream ended');
    jobs.audio?.close('stream ended');
  }

  private jobsOf(name: string): StreamJobs | undefined {
    for (const [stream, jobs] of this.streams) if (stream.name === name && stream.state !== 'ended') return jobs;
    return undefined;
  }

  /** Statistics of a stream's jobs (video first), empty when it has none. */
  stats(name: string): EntityStats[] {
    const jobs = this.jobsOf(name);
    if (!jobs) return [];
    return [jobs.video.getStats(), ...(jobs.audio ? [jobs.audio.getStats()] : [])];
  }

  /** How many video renditions a stream's video job makes now (the multivariant playlist waits for them). */
  plannedRenditions(name: string): number {
    return this.jobsOf(name)?.video.renditions.filter((r) => r.role === 'ladder').length ?? 0;
  }

  /** PIDs of a stream's ffmpeg processes now: `video` and `audio` (tests kill them to prove recovery). */
  pids(name: string): { video: number | undefined; audio: number | undefined } {
    const jobs = this.jobsOf(name);
    return { video: jobs?.video.job.pid, audio: jobs?.audio?.job.pid };
  }

  /** Every job degraded or failed now (for /healthz). */
  troubled(): { id: string; state: string }[] {
    const out: { id: string; state: string }[] = [];
    for (const jobs of this.streams.values()) {
      for (const stats of [jobs.video.getStats(), ...(jobs.audio ? [jobs.audio.getStats()] : [])]) {
        if (stats.state !== 'running' && stats.state !== 'idle' && stats.state !== 'closed') out.push({ id: stats.id, state: stats.state });
      }
    }
    return out;
  }

  /** Stops every job. Idempotent. */
  close(): void {
    for (const stream of [...this.streams.keys()]) this.forget(stream);
  }
}
