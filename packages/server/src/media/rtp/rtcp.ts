/**
 * RTCP pieces a sender needs: Sender Reports (RFC 3550 §6.4.1) for audio/video sync, and reading the feedback
 * receivers send (PLI and FIR, RFC 4585 §6.3.1 / RFC 5104 §4.3.1; generic NACK, RFC 4585 §6.2.1). And what a
 * receiver (WHIP ingest) sends: Receiver Reports (RFC 3550 §6.4.2), generic NACK, PLI, and REMB
 * (draft-alvestrand-rmcat-remb-03 §2.2) so a browser's encoder knows how much it may send.
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
  /**
   * Report blocks of Receiver/Sender Reports (RFC 3550 §6.4): per media SSRC, the fraction of packets lost since
   * the previous report (0–1) and the interarrival jitter (RTP clock units).
   */
  reports: { ssrc: number; fractionLost: number; jitter: number }[];
  /** The receiver's estimated maximum bitrate (REMB, draft-alvestrand-rmcat-remb-03 §2.2), bits/s, if sent. */
  remb: number | undefined;
}

/** True when `packet` looks like RTCP rather than RTP (RFC 5761 §4: payload type 192–223 in the second byte). */
export function isRtcp(packet: Uint8Array): boolean {
  return packet.length >= 4 && packet[1]! >= 192 && packet[1]! <= 223;
}

/**
 * Reads PLI, FIR, generic NACK (RFC 4585 §6.2.1, §6.3.1; RFC 5104 §4.3.1), report blocks of SR/RR (RFC 3550
 * §6.4) and REMB out of a compound RTCP packet; anything else, and anything malformed, is skipped.
 */
export function readRtcpFeedback(packet: Uint8Array): RtcpFeedback {
  const out: RtcpFeedback = { keyframeRequests: [], nacks: [], reports: [], remb: undefined };
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  for (let pos = 0; pos + 4 <= packet.length; ) {
    const fmt = packet[pos]! & 0x1f;
    const type = packet[pos + 1]!;
    const end = pos + (view.readUInt16BE(pos + 2) + 1) * 4;
    if (end > packet.length) break;
    if (type === 200 || type === 201) {
      // SR (28-byte sender info after the header) or RR; `fmt` is the report count.
      let p = pos + (type === 200 ? 28 : 8);
      for (let i = 0; i < fmt && p + 24 <= end; i++, p += 24) {
        out.reports.push({ ssrc: view.readUInt32BE(p), fractionLost: packet[p + 4]! / 256, jitter: view.readUInt32BE(p + 12) });
      }
    } else if (type === 206 && fmt === 15 && end - pos >= 24 && view.toString('latin1', pos + 12, pos + 16) === 'REMB') {
      const exp = packet[pos + 17]! >> 2;
      const mantissa = ((packet[pos + 17]! & 0x03) << 16) | view.readUInt16BE(pos + 18);
      out.remb = mantissa * 2 ** exp;
    } else if (type === 206 && fmt === 1 && end - pos >= 12) {
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

/** One report block of a Receiver Report (RFC 3550 §6.4.1): reception statistics for one media SSRC. */
export interface ReportBlock {
  ssrc: number;
  /** Fraction of packets lost since the last report, 0–1. */
  fractionLost: number;
  /** Packets lost in total (expected − received), may be negative with duplicates. */
  cumulativeLost: number;
  /** Extended highest sequence number received (cycles × 65536 + highest). */
  extendedHighestSequence: number;
  /** Interarrival jitter, RTP timestamp units. */
  jitter: number;
  /** Middle 32 bits of the NTP time of the last Sender Report received (0 if none). */
  lastSenderReport: number;
  /** Delay since that Sender Report, 1/65536 s (0 if none). */
  delaySinceLastSenderReport: number;
}

/** Writes a Receiver Report from `senderSsrc` with up to 31 report blocks. */
export function writeReceiverReport(senderSsrc: number, blocks: readonly ReportBlock[]): Buffer {
  const n = Math.min(blocks.length, 31);
  const out = Buffer.alloc(8 + 24 * n);
  out[0] = 0x80 | n;
  out[1] = 201;
  out.writeUInt16BE(out.length / 4 - 1, 2);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  for (let i = 0; i < n; i++) {
    const b = blocks[i]!;
    const at = 8 + 24 * i;
    out.writeUInt32BE(b.ssrc >>> 0, at);
    out[at + 4] = Math.max(0, Math.min(255, Math.floor(b.fractionLost * 256)));
    out.writeIntBE(Math.max(-0x800000, Math.min(0x7fffff, b.cumulativeLost)), at + 5, 3);
    out.writeUInt32BE(b.extendedHighestSequence >>> 0, at + 8);
    out.writeUInt32BE(Math.max(0, Math.round(b.jitter)) >>> 0, at + 12);
    out.writeUInt32BE(b.lastSenderReport >>> 0, at + 16);
    out.writeUInt32BE(b.delaySinceLastSenderReport >>> 0, at + 20);
  }
  return out;
}

/** A generic NACK (RFC 4585 §6.2.1) from `senderSsrc` for `sequenceNumbers` of `mediaSsrc`, packed as PID + BLP. */
export function writeNack(senderSsrc: number, mediaSsrc: number, sequenceNumbers: readonly number[]): Buffer {
  const sorted = [...new Set(sequenceNumbers.map((s) => s & 0xffff))].sort((a, b) => a - b);
  const fcis: number[][] = [];
  for (const seq of sorted) {
    const last = fcis[fcis.length - 1];
    const offset = last ? (seq - last[0]! + 0x10000) & 0xffff : 0;
    if (last && offset >= 1 && offset <= 16) last[1]! |= 1 << (offset - 1);
    else fcis.push([seq, 0]);
  }
  const out = Buffer.alloc(12 + 4 * fcis.length);
  out[0] = 0x81; // V=2, FMT=1 (generic NACK)
  out[1] = 205; // RTPFB
  out.writeUInt16BE(out.length / 4 - 1, 2);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  out.writeUInt32BE(mediaSsrc >>> 0, 8);
  fcis.forEach(([pid, blp], i) => {
    out.writeUInt16BE(pid!, 12 + 4 * i);
    out.writeUInt16BE(blp!, 14 + 4 * i);
  });
  return out;
}

/** A Picture Loss Indication (RFC 4585 §6.3.1): asks the sender of `mediaSsrc` for a keyframe. */
export function writePli(senderSsrc: number, mediaSsrc: number): Buffer {
  const out = Buffer.alloc(12);
  out[0] = 0x81; // V=2, FMT=1 (PLI)
  out[1] = 206; // PSFB
  out.writeUInt16BE(2, 2);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  out.writeUInt32BE(mediaSsrc >>> 0, 8);
  return out;
}

/**
 * A Receiver Estimated Maximum Bitrate message (draft-alvestrand-rmcat-remb-03 §2.2): the most, in bits/s,
 * the receiver wants the senders of `mediaSsrcs` to send in total.
 */
export function writeRemb(senderSsrc: number, bitrate: number, mediaSsrcs: readonly number[]): Buffer {
  const out = Buffer.alloc(20 + 4 * mediaSsrcs.length);
  out[0] = 0x8f; // V=2, FMT=15 (application layer feedback)
  out[1] = 206; // PSFB
  out.writeUInt16BE(out.length / 4 - 1, 2);
  out.writeUInt32BE(senderSsrc >>> 0, 4);
  out.writeUInt32BE(0, 8); // media source: unused
  out.write('REMB', 12, 'latin1');
  let mantissa = Math.max(0, Math.floor(bitrate));
  let exp = 0;
  while (mantissa > 0x3ffff) {
    mantissa = Math.floor(mantissa / 2);
    exp++;
  }
  out[16] = mediaSsrcs.length;
  out[17] = (exp << 2) | (mantissa >> 16);
  out.writeUInt16BE(mantissa & 0xffff, 18);
  mediaSsrcs.forEach((ssrc, i) => out.writeUInt32BE(ssrc >>> 0, 20 + 4 * i));
  return out;
}

/** The middle 32 bits of a Sender Report's NTP timestamp in `packet` (for an RR's LSR), with its sender SSRC. */
export function readSenderReport(packet: Uint8Array): { ssrc: number; ntpMiddle: number } | undefined {
  const view = Buffer.from(packet.buffer, packet.byteOffset, packet.byteLength);
  for (let pos = 0; pos + 4 <= packet.length; ) {
    const type = packet[pos + 1]!;
    const end = pos + (view.readUInt16BE(pos + 2) + 1) * 4;
    if (end > packet.length) break;
    if (type === 200 && end - pos >= 28) return { ssrc: view.readUInt32BE(pos + 4), ntpMiddle: view.readUInt32BE(pos + 10) };
    pos = end;
  }
  return undefined;
}
