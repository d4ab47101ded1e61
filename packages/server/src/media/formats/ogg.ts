/**
 * Ogg page reader (RFC 3533 §6) that reassembles packets across segments and pages, and the Opus packet duration
 * (RFC 6716 §3.1) so packets can be timed without a decoder. Incremental and bounded.
 */
import { MediaParseError } from '../errors.js';

/** Largest packet accepted, bytes (an Opus packet is at most 1275 bytes × 48 frames). */
const MAX_PACKET = 256 * 1024;

/** Incremental Ogg demuxer for a single logical stream. */
export class OggPacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private partial: Buffer[] = [];
  private partialSize = 0;

  /** Feeds bytes; returns the packets completed by them. @throws MediaParseError `OGG_INVALID` on a broken page. */
  push(data: Buffer): Buffer[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: Buffer[] = [];
    for (;;) {
      if (this.buf.length < 27) break;
      if (this.buf.toString('latin1', 0, 4) !== 'OggS') throw new MediaParseError('OGG_INVALID', 'Ogg capture pattern missing');
      const segments = this.buf[26]!;
      const headerLen = 27 + segments;
      if (this.buf.length < headerLen) break;
      const lacing = this.buf.subarray(27, headerLen);
      const bodyLen = lacing.reduce((n, l) => n + l, 0);
      if (this.buf.length < headerLen + bodyLen) break;
      let pos = headerLen;
      for (const l of lacing) {
        this.partial.push(this.buf.subarray(pos, pos + l));
        this.partialSize += l;
        pos += l;
        if (this.partialSize > MAX_PACKET) throw new MediaParseError('OGG_INVALID', 'Ogg packet too large');
        if (l < 255) {
          out.push(Buffer.concat(this.partial));
          this.partial = [];
          this.partialSize = 0;
        }
      }
      this.buf = Buffer.from(this.buf.subarray(headerLen + bodyLen));
    }
    return out;
  }
}

/**
 * Samples at 48 kHz in an Opus packet, from its TOC byte and frame count code (RFC 6716 §3.1).
 * @throws MediaParseError `OPUS_INVALID` for an empty or truncated packet.
 */
export function opusPacketSamples(packet: Uint8Array): number {
  if (packet.length < 1) throw new MediaParseError('OPUS_INVALID', 'empty Opus packet');
  const toc = packet[0]!;
  const config = toc >> 3;
  let frameSamples: number;
  if (config < 12) frameSamples = [480, 960, 1920, 2880][config & 3]!; // SILK: 10/20/40/60 ms
  else if (config < 16) frameSamples = [480, 960][config & 1]!; // Hybrid: 10/20 ms
  else frameSamples = [120, 240, 480, 960][config & 3]!; // CELT: 2.5/5/10/20 ms
  const code = toc & 3;
  let frames = 1;
  if (code === 1 || code === 2) frames = 2;
  else if (code === 3) {
    if (packet.length < 2) throw new MediaParseError('OPUS_INVALID', 'Opus code-3 packet without a frame count');
    frames = packet[1]! & 0x3f;
  }
  return frameSamples * frames;
}

/** CRC-32 of Ogg pages (RFC 3533 §6: polynomial 0x04c11db7, no reflection, initial value 0). */
const OGG_CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let r = i << 24;
    for (let j = 0; j < 8; j++) r = r & 0x80000000 ? (r << 1) ^ 0x04c11db7 : r << 1;
    table[i] = r >>> 0;
  }
  return table;
})();

function oggCrc(page: Uint8Array): number {
  let crc = 0;
  for (const byte of page) crc = ((crc << 8) ^ OGG_CRC_TABLE[((crc >>> 24) ^ byte) & 0xff]!) >>> 0;
  return crc;
}

/**
 * Writes one logical Ogg Opus stream (RFC 7845): the OpusHead page, the OpusTags page, then one page per Opus
 * packet with its granule position (48 kHz samples so far), so a reader (ffmpeg) gets each packet at once.
 */
export class OggOpusWriter {
  private sequence = 0;
  private granule = 0n;
  private readonly serial: number;

  constructor(serial = 0x47434153 /* "GCAS" */) {
    this.serial = serial >>> 0;
  }

  /** The two header pages for `opusHead` (a 19-byte OpusHead). */
  headers(opusHead: Uint8Array): Buffer {
    const tags = Buffer.alloc(8 + 4 + 9 + 4);
    tags.write('OpusTags', 0, 'latin1');
    tags.writeUInt32LE(9, 8);
    tags.write('glasscast', 12, 'latin1');
    tags.writeUInt32LE(0, 21);
    return Buffer.concat([this.page(opusHead, 0x02, 0n), this.page(tags, 0x00, 0n)]);
  }

  /** A page carrying one Opus packet. */
  packet(opus: Uint8Array): Buffer {
    this.granule += BigInt(opusPacketSamples(opus));
    return this.page(opus, 0x00, this.granule);
  }

  private page(body: Uint8Array, flags: number, granule: bigint): Buffer {
    const lacing: number[] = [];
    for (let left = body.length; ; left -= 255) {
      lacing.push(Math.min(left, 255));
      if (left < 255) break;
    }
    if (lacing.length > 255) throw new RangeError('Ogg page body too large');
    const header = Buffer.alloc(27 + lacing.length);
    header.write('OggS', 0, 'latin1');
    header[4] = 0; // version
    header[5] = flags;
    header.writeBigUInt64LE(granule, 6);
    header.writeUInt32LE(this.serial, 14);
    header.writeUInt32LE(this.sequence++, 18);
    header[26] = lacing.length;
    Buffer.from(lacing).copy(header, 27);
    const page = Buffer.concat([header, body]);
    page.writeUInt32LE(oggCrc(page), 22);
    return page;
  }
}
