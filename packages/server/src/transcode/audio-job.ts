/**
 * The one audio job of a stream (issue 10): bridges the source's audio into the other codec once, as an audio
 * rendition of the stream's group: AAC → Opus (for WebRTC viewers) or Opus → AAC (for LL-HLS and recordings).
 * Every reader of the other codec reads this one rendition, so every variant carries the same samples at the
 * same timestamps.
 *
 * Raw frames go to ffmpeg on stdin (ADTS for AAC, Ogg for Opus) and come back the same way on stdout; output
 * frames are timed by counting samples from the first input frame of the run, less the encoder's delay (Opus
 * pre-skip from the OpusHead ffmpeg writes, RFC 7845 §4.2; AAC's 1024 priming samples), so a sample keeps its
 * place on the stream's timeline. The rendition's track is fixed (Opus or AAC-LC, 48 kHz stereo), so a restart
 * of ffmpeg leaves a gap, not a new session.
 */
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { EntityStats } from '../core/stats.js';
import type { PublisherSession, Stream } from '../core/stream.js';
import type { Subscriber } from '../core/subscriber.js';
import type { AudioTrack } from '../core/track.js';
import { adtsHeader, AdtsFrameReader, AAC_FRAME_SAMPLES, buildAacConfig, parseAacConfig, type AacConfig } from '../media/codecs/aac.js';
import { AUDIO_CODECS, type AudioCodec } from '../media/codecs/codec-table.js';
import { buildOpusHead, parseOpusHead } from '../media/codecs/opus.js';
import { OggOpusWriter, OggPacketReader, opusPacketSamples } from '../media/formats/ogg.js';
import { FfmpegJob, type FfmpegJobOptions, type FfmpegRun, type FfmpegRunSpec } from './ffmpeg-job.js';

/** Opus bitrate, bits/s. */
const OPUS_BITRATE = 96_000;
/** AAC bitrate, bits/s. */
const AAC_BITRATE = 128_000;
/** The output sample rate, Hz (Opus is always 48 kHz on RTP, RFC 7587 §4.1). */
const OUTPUT_RATE = 48_000;
/** Samples of encoder delay ffmpeg's AAC encoder puts before the first real sample (its initial padding). */
const AAC_PRIMING_SAMPLES = 1024;

/** The fixed track of an audio rendition in `codec` (48 kHz stereo), with the source's track id. */
export function bridgedAudioTrack(codec: AudioCodec, id: number): AudioTrack {
  const config = codec === 'opus' ? buildOpusHead(2, 0) : buildAacConfig(2, OUTPUT_RATE, 2);
  return { kind: 'audio', id, codec, timescale: OUTPUT_RATE, config, info: AUDIO_CODECS[codec].parseConfig(config) };
}

/** ffmpeg arguments for bridging `from` into `to` (stdin → stdout). Pure, for tests. */
export function audioBridgeArgs(from: AudioCodec, to: AudioCodec): string[] {
  // No probing, no input buffering: each frame is decoded as soon as it arrives.
  const input = ['-fflags', 'nobuffer', '-probesize', '32', '-analyzeduration', '0', '-f', from === 'aac' ? 'aac' : 'ogg', '-i', 'pipe:0'];
  const output =
    to === 'opus'
      ? // 20 ms Opus frames, one per Ogg page. (10 ms frames leave ffmpeg ~20 ms sooner, but Chromium then played
        // the picture later, not sooner: 460–520 ms instead of 230–240 ms glass-to-glass in bench/, twice each.)
        ['-c:a', 'libopus', '-b:a', String(OPUS_BITRATE), '-application', 'lowdelay', '-frame_duration', '20', '-ar', '48000', '-ac', '2', '-f', 'ogg', '-page_duration', '20000', '-flush_packets', '1', 'pipe:1']
      : ['-c:a', 'aac', '-b:a', String(AAC_BITRATE), '-ar', '48000', '-ac', '2', '-f', 'adts', '-flush_packets', '1', 'pipe:1'];
  return [...input, ...output];
}

/** Bridges one stream's audio into `to` as its audio rendition. `close()` is idempotent. */
export class AudioJob {
  readonly job: FfmpegJob;
  private readonly subscriber: Subscriber;
  private input: AudioTrack | undefined;
  private aac: AacConfig | undefined;
  private handle: PublisherSession | undefined;
  private rendition: Stream | undefined;
  private output: AudioTrack | undefined;
  /** This run's timeline origin: the first input frame's time in 48 kHz samples, and samples produced since. */
  private base: number | undefined;
  private produced = 0;
  private readonly counters = { framesIn: 0, framesOut: 0 };
  private closed = false;

  constructor(
    private readonly source: Stream,
    readonly to: AudioCodec,
    private readonly log: Logger,
    options: FfmpegJobOptions = {},
  ) {
    this.job = new FfmpegJob(`${source.name}/audio`, { plan: () => this.plan(), runStarted: (run) => this.runStarted(run), runEnded: () => this.runEnded() }, log, options);
    this.subscriber = source.subscribe(
      {
        onSessionStart: () => undefined, // the session is started synchronously by sessionStarted()
        onAccessUnit: (au) => this.onAccessUnit(au),
        onPublisherLost: () => this.sourceLost('source publisher lost'),
        onEnd: (reason) => this.close(reason),
      },
      { maxQueue: 1024, label: 'audio-job' },
    );
  }

  /**
   * The source started a session whose audio is `track` (in the other codec): puts the rendition in place with
   * its fixed track, live before the source's readers hear of the session, and starts ffmpeg.
   */
  sessionStarted(track: AudioTrack): void {
    if (this.closed) return;
    this.job.stop('source session restarted');
    this.input = track;
    this.aac = track.codec === 'aac' ? parseAacConfig(track.config) : undefined;
    this.output = bridgedAudioTrack(this.to, track.id);
    this.rendition = this.source.addRendition({ name: this.to, role: 'audio', kind: 'audio', codec: this.to, width: 0, height: 0, bitrate: this.to === 'opus' ? OPUS_BITRATE : AAC_BITRATE, maxFrameRate: undefined });
    if (!this.handle || this.handle.closed) this.handle = this.rendition.claim({ protocol: 'transcoder' }, { stats: () => ({ counters: { ...this.counters }, info: { job: this.job.id } }) });
    if (!this.rendition.hasTracks([this.output]) || this.rendition.state !== 'live') this.handle.start([this.output]);
    this.job.start();
  }

  /** Access units reaching ffmpeg and frames coming back. */
  private onAccessUnit(au: AccessUnit): void {
    const input = this.input;
    if (!input || au.trackId !== input.id || au.payload.length === 0) return;
    const frame = au.payload[0]!;
    if (frame.length === 0) return;
    this.write?.(au, frame);
  }

  private write: ((au: AccessUnit, frame: Uint8Array) => void) | undefined;

  private plan(): FfmpegRunSpec {
    return { args: audioBridgeArgs(this.input!.codec, this.to) };
  }

  private runStarted(run: FfmpegRun): void {
    const input = this.input!;
    this.base = undefined;
    this.produced = 0;
    let delay = this.to === 'aac' ? AAC_PRIMING_SAMPLES : 0;
    const publish = (payload: Buffer, samples: number): void => {
      if (this.base === undefined || !run.current) return;
      const dts = this.base + this.produced - delay;
      this.produced += samples;
      this.counters.framesOut++;
      this.job.noteOutput();
      this.handle?.publish({ trackId: this.output!.id, dts, pts: dts, keyframe: true, payload: [payload] });
    };
    if (this.to === 'opus') {
      const reader = new OggPacketReader();
      let headers = 0;
      run.stdout.on('data', (data: Buffer) => {
        if (!run.current) return;
        try {
          for (const packet of reader.push(data)) {
            if (headers < 2) {
              // OpusHead (its pre-skip is the encoder's delay), then OpusTags (RFC 7845 §5).
              if (headers === 0) delay = parseOpusHead(packet).preSkip;
              headers++;
              continue;
            }
            publish(packet, opusPacketSamples(packet));
          }
        } catch (err) {
          this.job.failed('JOB_BAD_OUTPUT', `unreadable Ogg from ffmpeg: ${(err as Error).message}`);
        }
      });
    } else {
      const reader = new AdtsFrameReader();
      run.stdout.on('data', (data: Buffer) => {
        if (!run.current) return;
        for (const frame of reader.push(data)) publish(frame, AAC_FRAME_SAMPLES);
      });
    }
    const ogg = input.codec === 'opus' ? new OggOpusWriter() : undefined;
    // The source's pre-skip (WHIP's OpusHead says 312) is not applied: an RTP Opus stream has none, and a skip
    // would pull every output sample 6.5 ms early.
    if (ogg) run.write(ogg.headers(buildOpusHead(input.info.channels, 0)));
    this.write = (au, frame) => {
      if (!run.current) return;
      // The first frame anchors this run's output on the stream's timeline, in 48 kHz samples.
      this.base ??= Math.round((au.dts * OUTPUT_RATE) / input.timescale);
      this.counters.framesIn++;
      this.job.noteInput();
      try {
        run.write(ogg ? ogg.packet(frame) : Buffer.concat([adtsHeader(this.aac!, frame.length), frame]));
      } catch (err) {
        this.log.debug({ err }, 'audio frame skipped');
      }
    };
  }

  private runEnded(): void {
    this.write = undefined;
    this.base = undefined;
  }

  private sourceLost(reason: string): void {
    this.job.stop(reason);
    this.handle?.interrupt(reason);
  }

  /** The rendition this job feeds, if any. */
  get stream(): Stream | undefined {
    return this.rendition;
  }

  /** Statistics of this job (frames in and out). */
  getStats(): EntityStats {
    return this.job.getStats({ counters: { ...this.counters }, info: { kind: 'audio', from: this.input?.codec, to: this.to } });
  }

  /** Stops ffmpeg and ends the rendition's publisher. Idempotent. */
  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.job.close(reason);
    this.subscriber.close();
    this.handle?.close(reason, { endStream: true });
  }
}
