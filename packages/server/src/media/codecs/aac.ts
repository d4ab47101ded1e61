/** AAC helpers: AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and the RFC 6381 codec string. */
import { BitReader } from '../bits/bit-reader.js';
import { MediaParseError } from '../errors.js';

/** Sampling frequencies by samplingFrequencyIndex (ISO/IEC 14496-3 Table 1.18). */
export const AAC_SAMPLE_RATES = [96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350] as const;

/** Samples per AAC-LC/HE-AAC core frame (ISO/IEC 14496-3 §4.5.1.1): 1024. */
export const AAC_FRAME_SAMPLES = 1024;

/** What an AudioSpecificConfig says. */
export interface AacConfig {
  /** audioObjectType: 2 = AAC-LC, 5 = SBR (HE-AAC), 29 = PS. */
  objectType: number;
  /** Hz. */
  sampleRate: number;
  channels: number;
  /** The AudioSpecificConfig bytes, as carried in the `esds` DecoderSpecificInfo. */
  config: Uint8Array;
}

/**
 * Parses an AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1).
 * @throws MediaParseError `AAC_CONFIG_INVALID` when truncated or using a reserved frequency index.
 */
export function parseAacConfig(config: Uint8Array): AacConfig {
  try {
    const r = new BitReader(config);
    let objectType = r.readBits(5);
    if (objectType === 31) objectType = 32 + r.readBits(6);
    const freqIndex = r.readBits(4);
    const sampleRate = freqIndex === 15 ? r.readBits(24) : AAC_SAMPLE_RATES[freqIndex];
    if (!sampleRate) throw new RangeError(`reserved samplingFrequencyIndex ${freqIndex}`);
    const channels = r.readBits(4);
    return { objectType, sampleRate, channels: channels === 0 ? 2 : channels, config: config.slice() };
  } catch (err) {
    if (err instanceof RangeError) throw new MediaParseError('AAC_CONFIG_INVALID', `AAC AudioSpecificConfig: ${err.message}`);
    throw err;
  }
}

/** RFC 6381 §3.3 codec string for MPEG-4 audio, e.g. `mp4a.40.2`. */
export function aacCodecString(config: AacConfig): string {
  return `mp4a.40.${config.objectType}`;
}

/**
 * An ADTS header (ISO/IEC 13818-7 §6.2, no CRC) for one raw AAC frame of `frameLength` bytes, so raw frames can be
 * fed to decoders that read ADTS streams.
 * @throws RangeError for an object type ADTS cannot carry (> 4) or a frame over 8184 bytes.
 */
export function adtsHeader(config: AacConfig, frameLength: number): Buffer {
  const freqIndex = AAC_SAMPLE_RATES.indexOf(config.sampleRate as (typeof AAC_SAMPLE_RATES)[number]);
  if (config.objectType < 1 || config.objectType > 4 || freqIndex < 0) throw new RangeError('ADTS cannot carry this AudioSpecificConfig');
  const total = frameLength + 7;
  if (total > 0x1fff) throw new RangeError('AAC frame too large for ADTS');
  const profile = config.objectType - 1;
  const ch = config.channels & 0x7;
  return Buffer.from([
    0xff,
    0xf1, // sync, MPEG-4, layer 0, no CRC
    (profile << 6) | (freqIndex << 2) | (ch >> 2),
    ((ch & 3) << 6) | (total >> 11),
    (total >> 3) & 0xff,
    ((total & 7) << 5) | 0x1f,
    0xfc, // buffer fullness 0x7ff (VBR), one raw data block
  ]);
}

/** Builds a 2-byte AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) for a standard rate, e.g. AAC-LC 48 kHz stereo. */
export function buildAacConfig(objectType: number, sampleRate: number, channels: number): Buffer {
  const freqIndex = AAC_SAMPLE_RATES.indexOf(sampleRate as (typeof AAC_SAMPLE_RATES)[number]);
  if (objectType < 1 || objectType > 30 || freqIndex < 0 || channels < 1 || channels > 7) throw new RangeError('unsupported AAC configuration');
  const v = (objectType << 11) | (freqIndex << 7) | (channels << 3);
  return Buffer.from([v >> 8, v & 0xff]);
}

/**
 * Splits an ADTS byte stream (ISO/IEC 13818-7 §6.2) into raw AAC frames, incrementally. Bytes before a sync
 * word are skipped; holds at most one frame (8 KiB) between calls.
 */
export class AdtsFrameReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Feeds bytes; returns the raw frames (ADTS headers removed) they complete. */
  push(data: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: Buffer[] = [];
    let pos = 0;
    while (pos + 7 <= this.buf.length) {
      if (this.buf[pos] !== 0xff || (this.buf[pos + 1]! & 0xf6) !== 0xf0) {
        pos++;
        continue;
      }
      const headerLength = this.buf[pos + 1]! & 1 ? 7 : 9; // protection_absent = 1: no CRC
      const frameLength = ((this.buf[pos + 3]! & 3) << 11) | (this.buf[pos + 4]! << 3) | (this.buf[pos + 5]! >> 5);
      if (frameLength < headerLength) {
        pos++;
        continue;
      }
      if (pos + frameLength > this.buf.length) break;
      out.push(Buffer.from(this.buf.subarray(pos + headerLength, pos + frameLength)));
      pos += frameLength;
    }
    this.buf = Buffer.from(this.buf.subarray(pos));
    return out;
  }
}
