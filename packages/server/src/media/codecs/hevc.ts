/**
 * H.265 / HEVC helpers: the decoder configuration record (ISO/IEC 14496-15 §8.3.3.1), SPS picture size
 * (ITU-T H.265 §7.3.2.2) and the RFC 6381 / ISO/IEC 14496-15 Annex E codec string (`hvc1.1.6.L93.B0`).
 */
import { BitReader, nalToRbsp } from '../bits/bit-reader.js';
import { MediaParseError } from '../errors.js';

/** NAL unit types used here (ITU-T H.265 Table 7-1). */
export const HEVC_NAL = { vps: 32, sps: 33, pps: 34, aud: 35, idrWRadl: 19, idrNLp: 20, craNut: 21 } as const;

/** A parsed HEVCDecoderConfigurationRecord. */
export interface HevcConfig {
  nalLengthSize: number;
  profileSpace: number;
  tierFlag: number;
  profileIdc: number;
  compatibilityFlags: number;
  /** 6 bytes of general constraint indicator flags. */
  constraintFlags: Uint8Array;
  levelIdc: number;
  vps: Uint8Array[];
  sps: Uint8Array[];
  pps: Uint8Array[];
  /** The record itself, as carried in an `hvcC` box. */
  record: Uint8Array;
}

/**
 * Parses an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1.2).
 * @throws MediaParseError `HEVC_CONFIG_INVALID` when truncated.
 */
export function parseHevcConfig(record: Uint8Array): HevcConfig {
  const bad = (why: string): never => {
    throw new MediaParseError('HEVC_CONFIG_INVALID', `HEVC decoder configuration record: ${why}`);
  };
  if (record.length < 23) bad('shorter than 23 bytes');
  if (record[0] !== 1) bad(`configurationVersion ${record[0]} (expected 1)`);
  const b1 = record[1]!;
  const cfg: HevcConfig = {
    nalLengthSize: (record[21]! & 0x03) + 1,
    profileSpace: b1 >> 6,
    tierFlag: (b1 >> 5) & 1,
    profileIdc: b1 & 0x1f,
    compatibilityFlags: ((record[2]! << 24) | (record[3]! << 16) | (record[4]! << 8) | record[5]!) >>> 0,
    constraintFlags: record.slice(6, 12),
    levelIdc: record[12]!,
    vps: [],
    sps: [],
    pps: [],
    record: record.slice(),
  };
  let pos = 23;
  const arrays = record[22]!;
  for (let a = 0; a < arrays; a++) {
    if (pos + 3 > record.length) bad('NAL array header truncated');
    const type = record[pos]! & 0x3f;
    const count = (record[pos + 1]! << 8) | record[pos + 2]!;
    pos += 3;
    for (let i = 0; i < count; i++) {
      if (pos + 2 > record.length) bad('NAL unit length truncated');
      const len = (record[pos]! << 8) | record[pos + 1]!;
      pos += 2;
      if (pos + len > record.length) bad('NAL unit truncated');
      const nal = record.slice(pos, pos + len);
      pos += len;
      if (type === HEVC_NAL.vps) cfg.vps.push(nal);
      else if (type === HEVC_NAL.sps) cfg.sps.push(nal);
      else if (type === HEVC_NAL.pps) cfg.pps.push(nal);
    }
  }
  if (cfg.sps.length === 0) bad('no SPS');
  return cfg;
}

/**
 * Reads the cropped picture size from an HEVC SPS NAL unit (2-byte header included), ITU-T H.265 §7.3.2.2.1
 * and §7.3.3 (profile_tier_level).
 * @throws MediaParseError `HEVC_SPS_INVALID` when truncated.
 */
export function parseHevcSpsSize(nal: Uint8Array): { width: number; height: number } {
  try {
    const r = new BitReader(nalToRbsp(nal.subarray(2)));
    r.readBits(4); // sps_video_parameter_set_id
    const maxSubLayersMinus1 = r.readBits(3);
    r.readBit(); // sps_temporal_id_nesting_flag
    r.skipBits(2 + 1 + 5 + 32 + 48 + 8); // general profile_tier_level
    const profilePresent: number[] = [];
    const levelPresent: number[] = [];
    for (let i = 0; i < maxSubLayersMinus1; i++) {
      profilePresent.push(r.readBit());
      levelPresent.push(r.readBit());
    }
    if (maxSubLayersMinus1 > 0) for (let i = maxSubLayersMinus1; i < 8; i++) r.skipBits(2);
    for (let i = 0; i < maxSubLayersMinus1; i++) {
      if (profilePresent[i]) r.skipBits(88);
      if (levelPresent[i]) r.skipBits(8);
    }
    r.readUe(); // sps_seq_parameter_set_id
    const chromaFormatIdc = r.readUe();
    if (chromaFormatIdc === 3) r.readBit();
    let width = r.readUe();
    let height = r.readUe();
    if (r.readBit()) {
      const subWidthC = chromaFormatIdc === 1 || chromaFormatIdc === 2 ? 2 : 1;
      const subHeightC = chromaFormatIdc === 1 ? 2 : 1;
      const [l, rt, t, b] = [r.readUe(), r.readUe(), r.readUe(), r.readUe()];
      width -= subWidthC * (l + rt);
      height -= subHeightC * (t + b);
    }
    return { width, height };
  } catch (err) {
    if (err instanceof RangeError) throw new MediaParseError('HEVC_SPS_INVALID', `HEVC SPS: ${err.message}`);
    throw err;
  }
}

/** Codec string per ISO/IEC 14496-15 Annex E.3, e.g. `hvc1.1.6.L93.B0`. */
export function hevcCodecString(cfg: HevcConfig): string {
  const space = ['', 'A', 'B', 'C'][cfg.profileSpace] ?? '';
  // The 32 compatibility flags are written in reverse bit order, as hex without leading zeros.
  let reversed = 0;
  for (let i = 0; i < 32; i++) reversed = (reversed * 2) + ((cfg.compatibilityFlags >>> i) & 1);
  const constraints = Array.from(cfg.constraintFlags);
  while (constraints.length > 0 && constraints[constraints.length - 1] === 0) constraints.pop();
  const parts = [
    'hvc1',
    `${space}${cfg.profileIdc}`,
    reversed.toString(16),
    `${cfg.tierFlag ? 'H' : 'L'}${cfg.levelIdc}`,
    ...constraints.map((c) => c.toString(16).toUpperCase()),
  ];
  return parts.join('.');
}

/**
 * Builds an HEVCDecoderConfigurationRecord (ISO/IEC 14496-15 §8.3.3.1.2) from VPS, SPS and PPS NAL units, with
 * 4-byte NAL lengths. Profile, tier, level and constraint flags are copied from the SPS profile_tier_level.
 * @throws MediaParseError `HEVC_SPS_INVALID` when the SPS is too short.
 */
export function buildHevcConfig(vps: Uint8Array[], sps: Uint8Array[], pps: Uint8Array[]): Uint8Array {
  const first = sps[0];
  if (!first) throw new MediaParseError('HEVC_SPS_INVALID', 'HEVC SPS missing');
  const rbsp = nalToRbsp(first.subarray(2));
  if (rbsp.length < 13) throw new MediaParseError('HEVC_SPS_INVALID', 'HEVC SPS shorter than its profile_tier_level');
  const out: number[] = [1];
  // rbsp[0] holds vps id / max sub layers / nesting; rbsp[1..12] is general_profile_space … general_level_idc.
  out.push(...rbsp.subarray(1, 13));
  out.push(0xf0, 0x00); // reserved + min_spatial_segmentation_idc 0
  out.push(0xfc); // reserved + parallelismType 0
  out.push(0xfc | 1); // reserved + chroma_format_idc 1 (4:2:0)
  out.push(0xf8, 0xf8); // bit depths 8
  out.push(0, 0); // avgFrameRate unknown
  out.push((1 << 3) | (1 << 2) | 3); // numTemporalLayers 1, temporalIdNested 1, lengthSizeMinusOne 3
  const arrays: [number, Uint8Array[]][] = [
    [HEVC_NAL.vps, vps],
    [HEVC_NAL.sps, sps],
    [HEVC_NAL.pps, pps],
  ];
  out.push(arrays.length);
  for (const [type, nals] of arrays) {
    out.push(0x80 | type, nals.length >> 8, nals.length & 0xff);
    for (const nal of nals) out.push(nal.length >> 8, nal.length & 0xff, ...nal);
  }
  return Uint8Array.from(out);
}
