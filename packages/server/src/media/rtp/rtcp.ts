/**
 * RTCP pieces a sender needs: Sender Reports (RFC 3550 §6.4.1) for audio/video sync, and reading the feedback
 * receivers send (PLI and FIR, RFC 4585 §6.3.1 / RFC 5104 §4.3.1; generic NACK, RFC 4585 §6.2.1).
 */

/** Seconds between 1900-01-01 (NTP epoch) and 1970-01-01. */
const NTP_EPOCH_OFFSET = 2_208_988_800;

/**
 * Writes a Sender Report without report blocks. `wallMs` is the wall-clock time (epoch ms) that corresponds to
 * `rtpTimestamp`; both tracks of a stream use the same wall clock so the receiver can line them up.
 */
export function writeSenderReport(ssrc: number, wallMs: number, rtpTimestamp: number, packets: number, octets: number): Buffer {
  const out = Buffer.alloc(28);
  out[0] = 0x80; // V=2, RC=0
  out[1] = 200;
  out.writeUInt16BE(6, 2); // length in 32-bit words minus one
  out.writeUInt32BE(ssrc >>> 0, 4);
  const seconds = Math.floor(wallMs / 1000) + NTP_EPOCH_OFFSET;
  const fraction = Math.floor(((wallMs % 1000) / 1000) * 2 ** 32);
  out.writeUInt32BE(seconds >>> 0, 8);
  out.writeUInt32BE(fraction >>> 0, 12);
  out.writeUInt32BE(rtpTimestamp >>> 0, 16);
  out.writeUInt32BE(packets >>> 0, 20);
  out.writeUInt32BE(octets >>> 0, 24);
  return out;
}

/** Feedback found in a compound RTCP packet. */
export interface RtcpFeedback {
  /** Media SSRCs for which a keyframe was asked (PLI or FIR). */
  keyframeRequests: number[];
  /** Lost packets reported by generic NACK: media SSRC and sequence numbers. */
  nacks: { ssrc: number; sequenceNumbers: number[] }[];
}

/** True when `packet` looks like RTCP rather than RTP (RFC 5761 §4: payload type 192–223 in the second byte). */
export function isRtcp(packet: Uint8Array): boolean {
  return packet.length >= 4 && packet[1]! >= 192 && packet[1]! <= 223;
}

/** Reads PLI, FIR and generic NACK out of a compound RTCP packet; anything else, and anything malformed, is skipped. */
export function readRtcpFeedback(packet: Uint8Array): RtcpFeedback {
  const out: RtcpFeedback = { keyframeRequests: [], nacks: [] };
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  for (let pos = 0; pos + 4 <= packet.length; ) {
    const fmt = packet[pos]! & 0x1f;
    const type = packet[pos + 1]!;
    const end = pos + (view.readUInt16BE(pos + 2) + 1) * 4;
    if (end > packet.length) break;
    if (type === 206 && fmt === 1 && end - pos >= 12) {
      out.keyframeRequests.push(view.readUInt32BE(pos + 8)); // PLI
    } else if (type === 206 && fmt === 4) {
      for (let p = pos + 12; p + 8 <= end; p += 8) out.keyframeRequests.push(view.readUInt32BE(p)); // FIR entries
    } else if (type === 205 && fmt === 1 && end - pos >= 12) {
      const ssrc = view.readUInt32BE(pos + 8);
      const sequenceNumbers: number[] = [];
      for (let p = pos + 12; p + 4 <= end; p += 4) {
        const pid = view.readUInt16BE(p);
        const blp = view.readUInt16BE(p + 2);
        sequenceNumbers.push(pid);
        for (let bit = 0; bit < 16; bit++) if (blp & (1 << bit)) sequenceNumbers.push((pid + bit + 1) & 0xffff);
      }
      out.nacks.push({ ssrc, sequenceNumbers });
    }
    pos = end;
  }
  return out;
}
