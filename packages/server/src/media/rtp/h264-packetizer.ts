/**
 * H.264 RTP payloads (RFC 6184 §5.6–5.8, packetization-mode=1): single NAL unit packets, STAP-A carrying SPS and
 * PPS ahead of each IDR access unit, and FU-A fragments for NAL units larger than the payload budget. Pure: access
 * units in, payloads out; the caller writes RTP headers (once per stream, DESIGN.md).
 */
import { H264_NAL } from '../codecs/h264.js';

/** One RTP payload and whether it ends the access unit (the RTP marker bit). */
export interface RtpPayload {
  payload: Buffer;
  marker: boolean;
}

const STAP_A = 24;
const FU_A = 28;

/** Default payload budget, bytes: 1200 keeps RTP + SRTP + UDP + IP under common path MTUs. */
export const DEFAULT_MAX_RTP_PAYLOAD = 1200;

/**
 * Packetizes one access unit. `nalUnits` come without start codes. When the access unit holds an IDR slice and
 * carries no SPS/PPS of its own, `parameterSets` (from the track) are sent first in one STAP-A; access unit
 * delimiters are dropped.
 */
export function packetizeH264(nalUnits: readonly Uint8Array[], parameterSets: readonly Uint8Array[], maxPayload = DEFAULT_MAX_RTP_PAYLOAD): RtpPayload[] {
  const type = (n: Uint8Array): number => n[0]! & 0x1f;
  const nals = nalUnits.filter((n) => n.length > 0 && type(n) !== H264_NAL.aud);
  const inBand = nals.filter((n) => type(n) === H264_NAL.sps || type(n) === H264_NAL.pps);
  const media = nals.filter((n) => type(n) !== H264_NAL.sps && type(n) !== H264_NAL.pps);
  const isIdr = media.some((n) => type(n) === H264_NAL.idr);
  const sets = inBand.length > 0 ? inBand : isIdr ? parameterSets : [];
  const out: RtpPayload[] = [];
  if (sets.length > 0) {
    const size = 1 + sets.reduce((n, s) => n + 2 + s.length, 0);
    if (size <= maxPayload) {
      const stap = Buffer.allocUnsafe(size);
      // F = 0, NRI = the highest NRI of the aggregated units (RFC 6184 §5.7.1).
      stap[0] = sets.reduce((nri, s) => Math.max(nri, s[0]! & 0x60), 0) | STAP_A;
      let pos = 1;
      for (const s of sets) {
        stap.writeUInt16BE(s.length, pos);
        stap.set(s, pos + 2);
        pos += 2 + s.length;
      }
      out.push({ payload: stap, marker: false });
    } else {
      media.unshift(...sets);
    }
  }
  for (const nal of media) {
    if (nal.length <= maxPayload) {
      out.push({ payload: Buffer.from(nal), marker: false });
      continue;
    }
    const indicator = (nal[0]! & 0xe0) | FU_A;
    const nalType = type(nal);
    const chunk = maxPayload - 2;
    for (let pos = 1; pos < nal.length; pos += chunk) {
      const end = Math.min(pos + chunk, nal.length);
      const fu = Buffer.allocUnsafe(2 + end - pos);
      fu[0] = indicator;
      fu[1] = (pos === 1 ? 0x80 : 0) | (end === nal.length ? 0x40 : 0) | nalType;
      fu.set(nal.subarray(pos, end), 2);
      out.push({ payload: fu, marker: false });
    }
  }
  if (out.length > 0) out[out.length - 1]!.marker = true;
  return out;
}

/**
 * Reassembles NAL units from H.264 RTP payloads of one access unit (RFC 6184), for tests and for WHIP ingest.
 * Malformed payloads are skipped.
 */
export function depacketizeH264(payloads: readonly Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let fu: Uint8Array[] | undefined;
  for (const p of payloads) {
    if (p.length < 1) continue;
    const t = p[0]! & 0x1f;
    if (t === STAP_A) {
      for (let pos = 1; pos + 2 <= p.length; ) {
        const len = (p[pos]! << 8) | p[pos + 1]!;
        if (pos + 2 + len > p.length) break;
        out.push(p.subarray(pos + 2, pos + 2 + len));
        pos += 2 + len;
      }
    } else if (t === FU_A) {
      if (p.length < 2) continue;
      const start = (p[1]! & 0x80) !== 0;
      const end = (p[1]! & 0x40) !== 0;
      if (start) fu = [Uint8Array.of((p[0]! & 0xe0) | (p[1]! & 0x1f))];
      if (!fu) continue;
      fu.push(p.subarray(2));
      if (end) {
        out.push(Buffer.concat(fu));
        fu = undefined;
      }
    } else if (t >= 1 && t <= 23) {
      out.push(p);
    }
  }
  return out;
}
