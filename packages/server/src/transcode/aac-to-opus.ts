/**
 * AAC → Opus 48 kHz, once per stream (not per viewer), with ffmpeg: raw AAC frames go in as ADTS on stdin, Opus
 * packets come out in Ogg on stdout, timed by their own sample counts from the first input frame's time. The
 * child ends when its stdin closes, so it cannot outlive Glasscast even after a SIGKILL.
 */
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { AudioTrack } from '../core/track.js';
import { adtsHeader, parseAacConfig } from '../media/codecs/aac.js';
import { OggPacketReader, opusPacketSamples } from '../media/formats/ogg.js';
import { spawnFfmpegPipe } from './ffmpeg-path.js';

/** An Opus packet with its RTP-style timestamp in 48 kHz samples. */
export interface OpusPacket {
  timestamp: number;
  packet: Buffer;
}

/** A running transcoder; `close()` is idempotent and kills the child. */
export interface AudioTranscoder {
  /** False once ffmpeg failed or exited: viewers must not be promised audio. */
  readonly alive: boolean;
  push(au: AccessUnit): void;
  close(): void;
}

/** Creates AAC → Opus transcoders (what the WHEP egress is given in app.ts). */
export interface OpusTranscoderFactory {
  create(track: AudioTrack, onPacket: (p: OpusPacket) => void): AudioTranscoder | undefined;
}

/** Opus bitrate, bits/s. */
const OPUS_BITRATE = 96_000;

/** ffmpeg-backed factory. */
export class FfmpegOpusTranscoderFactory implements OpusTranscoderFactory {
  constructor(private readonly log: Logger) {}

  create(track: AudioTrack, onPacket: (p: OpusPacket) => void): AudioTranscoder | undefined {
    if (track.codec !== 'aac') return undefined;
    const config = parseAacConfig(track.config);
    const ff = spawnFfmpegPipe(
      [
        '-fflags', 'nobuffer', '-probesize', '32', '-analyzeduration', '0',
        '-f', 'aac', '-i', 'pipe:0',
        '-c:a', 'libopus', '-b:a', String(OPUS_BITRATE), '-application', 'lowdelay', '-frame_duration', '20', '-ar', '48000', '-ac', '2',
        '-f', 'ogg', '-page_duration', '20000', '-flush_packets', '1', 'pipe:1',
      ],
      this.log,
      'AAC → Opus',
    );
    const reader = new OggPacketReader();
    let base: number | undefined;
    let samples = 0;
    let headers = 0;
    ff.child.stdout.on('data', (data: Buffer) => {
      let packets: Buffer[];
      try {
        packets = reader.push(data);
      } catch (err) {
        this.log.warn({ err }, 'bad Ogg from ffmpeg');
        ff.stop();
        return;
      }
      for (const packet of packets) {
        if (headers < 2) {
          headers++; // OpusHead, OpusTags (RFC 7845 §5)
          continue;
        }
        if (base === undefined) continue;
        const timestamp = base + samples;
        samples += opusPacketSamples(packet);
        onPacket({ timestamp, packet });
      }
    });
    return {
      get alive() {
        return ff.alive;
      },
      push(au) {
        if (!ff.alive || au.payload.length === 0) return;
        // The first frame anchors the Opus clock to the stream's timeline (converted to 48 kHz).
        base ??= Math.round((au.dts * 48_000) / track.timescale);
        const frame = au.payload[0]!;
        ff.write(Buffer.concat([adtsHeader(config, frame.length), frame]));
      },
      close: () => ff.stop(),
    };
  }
}
