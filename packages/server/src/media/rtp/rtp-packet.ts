/** RTP fixed header (RFC 3550 §5.1): write and read. No extensions are written; CSRC lists are skipped on read. */
import { MediaParseError } from '../errors.js';

/** Size of the fixed RTP header, bytes. */
export const RTP_HEADER_SIZE = 12;

/** The fields of an RTP header that Glasscast uses. */
export interface RtpHeader {
  /** 7-bit payload type. */
  payloadType: number;
  /** 16-bit sequence number. */
  sequenceNumber: number;
  /** 32-bit timestamp in the payload's clock (90 kHz for video, 48 kHz for Opus). */
  timestamp: number;
  /** 32-bit synchronization source. */
  ssrc: number;
  /** Marker bit: last packet of a video access unit (RFC 6184 §5.1). */
  marker: boolean;
}

/** Writes a 12-byte RTP header followed by `payload`. */
export function writeRtpPacket(header: RtpHeader, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(RTP_HEADER_SIZE + payload.length);
  out[0] = 0x80; // V=2, no padding, no extension, no CSRC
  out[1] = (header.marker ? 0x80 : 0) | (header.payloadType & 0x7f);
  out.writeUInt16BE(header.sequenceNumber & 0xffff, 2);
  out.writeUInt32BE(header.timestamp >>> 0, 4);
  out.writeUInt32BE(header.ssrc >>> 0, 8);
  out.set(payload, RTP_HEADER_SIZE);
  return out;
}

/**
 * Reads an RTP packet's header and payload (skipping CSRCs, the header extension and padding).
 * @throws MediaParseError `RTP_INVALID` for a short packet or a version other than 2.
 */
export function readRtpPacket(packet: Uint8Array): RtpHeader & { payload: Uint8Array } {
  if (packet.length < RTP_HEADER_SIZE || packet[0]! >> 6 !== 2) throw new MediaParseError('RTP_INVALID', 'not an RTP version 2 packet');
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  let pos = RTP_HEADER_SIZE + (packet[0]! & 0x0f) * 4;
  if (packet[0]! & 0x10) {
    if (pos + 4 > packet.length) throw new MediaParseError('RTP_INVALID', 'RTP header extension truncated');
    pos += 4 + view.readUInt16BE(pos + 2) * 4;
  }
  let end = packet.length;
  if (packet[0]! & 0x20) end -= packet[packet.length - 1]!;
  if (pos > end) throw new MediaParseError('RTP_INVALID', 'RTP header longer than the packet');
  return {
    payloadType: packet[1]! & 0x7f,
    marker: (packet[1]! & 0x80) !== 0,
    sequenceNumber: view.readUInt16BE(2),
    timestamp: view.readUInt32BE(4),
    ssrc: view.readUInt32BE(8),
    payload: packet.subarray(pos, end),
  };
}
