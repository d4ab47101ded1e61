/**
 * Opus codec configuration: the identification header "OpusHead" (RFC 7845 §5.1), which is what a Track
 * carries as its configuration, and the facts derived from it. Opus over RTP always runs a 48 kHz clock
 * (RFC 7587 §4.1), so tracks are timed in 48 kHz samples whatever the input rate was.
 */
import { MediaParseError } from '../errors.js';

/** Facts from an OpusHead. */
export interface OpusConfig {
  channels: number;
  /** Samples (at 48 kHz) to discard at the start of decoding. */
  preSkip: number;
  /** The encoder's input sample rate, Hz (informational). */
  inputSampleRate: number;
}

/** Builds a 19-byte OpusHead for channel mapping family 0 (mono or stereo). */
export function buildOpusHead(channels: number, preSkip = 312, inputSampleRate = 48_000): Buffer {
  const out = Buffer.alloc(19);
  out.write('OpusHead', 0, 'latin1');
  out[8] = 1; // version
  out[9] = channels;
  out.writeUInt16LE(preSkip, 10);
  out.writeUInt32LE(inputSampleRate, 12);
  out.writeInt16LE(0, 16); // output gain
  out[18] = 0; // mapping family 0
  return out;
}

/** Parses an OpusHead. @throws MediaParseError `OPUS_HEAD_INVALID` when it is not one. */
export function parseOpusHead(head: Uint8Array): OpusConfig {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length < 19 || b.toString('latin1', 0, 8) !== 'OpusHead') throw new MediaParseError('OPUS_HEAD_INVALID', 'not an OpusHead');
  const channels = b[9]!;
  if (channels < 1) throw new MediaParseError('OPUS_HEAD_INVALID', 'OpusHead with no channels');
  return { channels, preSkip: b.readUInt16LE(10), inputSampleRate: b.readUInt32LE(12) };
}
