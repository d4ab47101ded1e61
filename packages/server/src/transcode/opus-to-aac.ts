/**
 * Opus → AAC-LC 48 kHz stereo for LL-HLS, once per stream, with ffmpeg: Opus packets go in as Ogg on stdin, AAC
 * frames come out as ADTS on stdout, timed by their sample counts from the first input packet's time. Used as a
 * filter in front of the LL-HLS muxer: the stream's Opus track is replaced by an AAC track with a fixed
 * configuration, so the muxer's init segment is known before the first frame comes back. The child ends when
 * its stdin closes, so it cannot outlive Glasscast.
 */
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { AudioTrack, Track } from '../core/track.js';
import type { SessionStart, StreamSink } from '../core/subscriber.js';
import { AdtsFrameReader, buildAacConfig } from '../media/codecs/aac.js';
import { AUDIO_CODECS } from '../media/codecs/codec-table.js';
import { OggOpusWriter } from '../media/formats/ogg.js';
import { spawnFfmpegPipe, type FfmpegPipe } from './ffmpeg-path.js';

/** AAC bitrate, bits/s. */
const AAC_BITRATE = 128_000;
/** The AAC track that replaces an Opus one: AAC-LC, 48 kHz, stereo. */
const AAC_CONFIG = buildAacConfig(2, 48_000, 2);

/**
 * A StreamSink that passes everything to `inner`, except that an Opus audio track becomes AAC (transcoded by
 * ffmpeg). Streams without Opus pass through untouched.
 */
export class OpusToAacSink implements StreamSink {
  private opusTrackId: number | undefined;
  private ff: FfmpegPipe | undefined;
  private ogg: OggOpusWriter | undefined;
  private reader: AdtsFrameReader | undefined;
  /** 48 kHz timestamp of the first Opus packet of the session, and AAC samples produced since. */
  private base: number | undefined;
  private samples = 0;

  constructor(
    private readonly inner: StreamSink,
    private readonly log: Logger,
  ) {}

  onSessionStart(start: SessionStart): void {
    this.stop();
    const opus = start.tracks.find((t): t is AudioTrack => t.kind === 'audio' && t.codec === 'opus');
    if (!opus) {
      this.inner.onSessionStart(start);
      return;
    }
    this.opusTrackId = opus.id;
    const aac: AudioTrack = { kind: 'audio', id: opus.id, codec: 'aac', timescale: 48_000, config: AAC_CONFIG, info: AUDIO_CODECS.aac.parseConfig(AAC_CONFIG) };
    const tracks: Track[] = start.tracks.map((t) => (t === opus ? aac : t));
    this.inner.onSessionStart({ ...start, tracks });
    const ff = spawnFfmpegPipe(
      [
        '-probesize', '32', '-analyzeduration', '0',
        '-f', 'ogg', '-i', 'pipe:0',
        '-c:a', 'aac', '-b:a', String(AAC_BITRATE), '-ar', '48000', '-ac', '2',
        '-f', 'adts', '-flush_packets', '1', 'pipe:1',
      ],
      this.log,
      'Opus → AAC',
    );
    this.ff = ff;
    this.ogg = new OggOpusWriter();
    this.reader = new AdtsFrameReader();
    this.base = undefined;
    this.samples = 0;
    const reader = this.reader;
    ff.child.stdout.on('data', (data: Buffer) => {
      if (this.ff !== ff || this.base === undefined) return;
      for (const frame of reader.push(data)) {
        const dts = this.base + this.samples;
        this.samples += 1024;
        // Outside the subscriber's delivery loop: a throwing muxer must not become an uncaught exception.
        try {
          this.inner.onAccessUnit({ trackId: opus.id, dts, pts: dts, keyframe: true, payload: [frame] });
        } catch (err) {
          this.log.error({ err }, 'LL-HLS muxer threw on a transcoded AAC frame; frame skipped');
        }
      }
    });
    ff.write(this.ogg.headers(opus.config));
  }

  onAccessUnit(au: AccessUnit): void {
    if (au.trackId !== this.opusTrackId) {
      this.inner.onAccessUnit(au);
      return;
    }
    const packet = au.payload[0];
    if (!this.ff?.alive || !this.ogg || !packet || packet.length === 0) return;
    this.base ??= au.dts;
    try {
      this.ff.write(this.ogg.packet(packet));
    } catch (err) {
      this.log.debug({ err }, 'Opus packet skipped');
    }
  }

  onPublisherLost(): void {
    this.stop();
    this.inner.onPublisherLost();
  }

  onEnd(reason: string): void {
    this.stop();
    this.inner.onEnd(reason);
  }

  /** Stops the transcoder (the owner detached this sink). Idempotent. */
  close(): void {
    this.stop();
  }

  private stop(): void {
    this.ff?.stop();
    this.ff = undefined;
    this.opusTrackId = undefined;
  }
}
