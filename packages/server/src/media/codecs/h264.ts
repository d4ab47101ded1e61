/**
 * H.264 / AVC helpers: the decoder configuration record (ISO/IEC 14496-15 §5.3.3.1), SPS fields
 * (ITU-T H.264 §7.3.2.1.1) and the RFC 6381 codec string.
 */
import { BitReader, nalToRbsp } from '../bits/bit-reader.js';
import { MediaParseError } from '../errors.js';

/** NAL unit types used here (ITU-T H.264 Table 7-1). */
export const H264_NAL = { nonIdr: 1, idr: 5, sei: 6, sps: 7, pps: 8, aud: 9 } as const;

/** A parsed AVCDecoderConfigurationRecord. */
export interface AvcConfig {
  /** Bytes of the length prefix before each NAL unit in samples (1, 2 or 4). */
  nalLengthSize: number;
  sps: Uint8Array[];
  pps: Uint8Array[];
  /** The record itself, as carried in an `avcC` box. */
  record: Uint8Array;
}

/** What the SPS tells about the picture. */
export interface H264SpsInfo {
  profileIdc: number;
  constraintFlags: number;
  levelIdc: number;
  /** Cropped luma width in pixels. */
  width: number;
  /** Cropped luma height in pixels. */
  height: number;
}

/**
 * Parses an AVCDecoderConfigurationRecord (ISO/IEC 14496-15 §5.3.3.1).
 * @throws MediaParseError `AVC_CONFIG_INVALID` when truncated or of an unknown version.
 */
export function parseAvcConfig(record: Uint8Array): AvcConfig {
  const bad = (why: string): never => {
    throw new MediaParseError('AVC_CONFIG_INVALID', `AVC decoder configuration record: ${why}`);
  };
  if (record.length < 7) bad('shorter than 7 bytes');
  if (record[0] !== 1) bad(`configurationVersion ${record[0]} (expected 1)`);
  const nalLengthSize = (record[4]! & 0x03) + 1;
  if (nalLengthSize === 3) bad('lengthSizeMinusOne of 2');
  let pos = 5;
  const readList = (count: number): Uint8Array[] => {
    const out: Uint8Array[] = [];
    for (let i = 0; i < count; i++) {
      if (pos + 2 > record.length) bad('parameter set length truncated');
      const len = (record[pos]! << 8) | record[pos + 1]!;
      pos += 2;
      if (pos + len > record.length) bad('parameter set truncated');
      out.push(record.slice(pos, pos + len));
      pos += len;
    }
    return out;
  };
  const sps = readList(record[pos++]! & 0x1f);
  if (pos >= record.length) bad('missing PPS count');
  const pps = readList(record[pos++]!);
  if (sps.length === 0) bad('no SPS');
  return { nalLengthSize, sps, pps, record: record.slice() };
}

/** Builds an AVCDecoderConfigurationRecord from SPS and PPS NAL units (ISO/IEC 14496-15 §5.3.3.1), 4-byte lengths. */
export function buildAvcConfig(sps: Uint8Array[], pps: Uint8Array[]): Uint8Array {
  const first = sps[0];
  if (!first || first.length < 4) throw new TypeError('buildAvcConfig: needs an SPS of at least 4 bytes');
  const parts: number[] = [1, first[1]!, first[2]!, first[3]!, 0xff, 0xe0 | sps.length];
  const push = (nal: Uint8Array): void => {
    parts.push(nal.length >> 8, nal.length & 0xff, ...nal);
  };
  sps.forEach(push);
  parts.push(pps.length);
  pps.forEach(push);
  return Uint8Array.from(parts);
}

const HIGH_PROFILES = new Set([100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135]);

function skipScalingList(r: BitReader, size: number): void {
  let last = 8;
  let next = 8;
  for (let j = 0; j < size; j++) {
    if (next !== 0) next = (last + r.readSe() + 256) % 256;
    last = next === 0 ? last : next;
  }
}

/**
 * Parses an SPS NAL unit (with its 1-byte header) for profile, level and cropped size (ITU-T H.264 §7.3.2.1.1,
 * §7.4.2.1.1 for the cropping arithmetic).
 * @throws MediaParseError `H264_SPS_INVALID` when truncated.
 */
export function parseH264Sps(nal: Uint8Array): H264SpsInfo {
  try {
    const r = new BitReader(nalToRbsp(nal.subarray(1)));
    const profileIdc = r.readBits(8);
    const constraintFlags = r.readBits(8);
    const levelIdc = r.readBits(8);
    r.readUe(); // seq_parameter_set_id
    let chromaFormatIdc = 1;
    if (HIGH_PROFILES.has(profileIdc)) {
      chromaFormatIdc = r.readUe();
      if (chromaFormatIdc === 3) r.readBit(); // separate_colour_plane_flag
      r.readUe(); // bit_depth_luma_minus8
      r.readUe(); // bit_depth_chroma_minus8
      r.readBit(); // qpprime_y_zero_transform_bypass_flag
      if (r.readBit()) {
        const lists = chromaFormatIdc === 3 ? 12 : 8;
        for (let i = 0; i < lists; i++) if (r.readBit()) skipScalingList(r, i < 6 ? 16 : 64);
      }
    }
    r.readUe(); // log2_max_frame_num_minus4
    const pocType = r.readUe();
    if (pocType === 0) {
      r.readUe();
    } else if (pocType === 1) {
      r.readBit();
      r.readSe();
      r.readSe();
      const cycle = r.readUe();
      if (cycle > 255) throw new RangeError('num_ref_frames_in_pic_order_cnt_cycle > 255');
      for (let i = 0; i < cycle; i++) r.readSe();
    }
    r.readUe(); // max_num_ref_frames
    r.readBit(); // gaps_in_frame_num_value_allowed_flag
    const widthMbs = r.readUe() + 1;
    const heightMapUnits = r.readUe() + 1;
    const frameMbsOnly = r.readBit();
    if (!frameMbsOnly) r.readBit(); // mb_adaptive_frame_field_flag
    r.readBit(); // direct_8x8_inference_flag
    let crop = [0, 0, 0, 0];
    if (r.readBit()) crop = [r.readUe(), r.readUe(), r.readUe(), r.readUe()];
    const subWidthC = chromaFormatIdc === 3 ? 1 : 2;
    const subHeightC = chromaFormatIdc === 1 ? 2 : 1;
    const cropUnitX = chromaFormatIdc === 0 ? 1 : subWidthC;
    const cropUnitY = (chromaFormatIdc === 0 ? 1 : subHeightC) * (2 - frameMbsOnly);
    return {
      profileIdc,
      constraintFlags,
      levelIdc,
      width: widthMbs * 16 - cropUnitX * (crop[0]! + crop[1]!),
      height: (2 - frameMbsOnly) * heightMapUnits * 16 - cropUnitY * (crop[2]! + crop[3]!),
    };
  } catch (err) {
    if (err instanceof RangeError) throw new MediaParseError('H264_SPS_INVALID', `H.264 SPS: ${err.message}`);
    throw err;
  }
}

/** RFC 6381 §3.3 codec string, e.g. `avc1.64001f`, from the SPS profile/constraint/level bytes. */
export function h264CodecString(info: H264SpsInfo): string {
  const hex = (n: number): string => n.toString(16).padStart(2, '0');
  return `avc1.${hex(info.profileIdc)}${hex(info.constraintFlags)}${hex(info.levelIdc)}`;
}

/**
 * Splits length-prefixed NAL units (the AVCC/HVCC sample format, ISO/IEC 14496-15 §4.3) into views.
 * @throws MediaParseError `NAL_LENGTH_INVALID` when a length runs past the end.
 */
export function splitLengthPrefixed(data: Uint8Array, lengthSize: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos + lengthSize <= data.length) {
    let len = 0;
    for (let i = 0; i < lengthSize; i++) len = len * 256 + data[pos + i]!;
    pos += lengthSize;
    if (pos + len > data.length) {
      throw new MediaParseError('NAL_LENGTH_INVALID', `NAL unit length ${len} runs past the end of a ${data.length}-byte sample`);
    }
    if (len > 0) out.push(data.subarray(pos, pos + len));
    pos += len;
  }
  return out;
}

/**
 * Joins NAL units into the length-prefixed sample format (ISO/IEC 14496-15 §4.3), `lengthSize` bytes (1, 2 or 4)
 * big-endian per length; the inverse of {@link splitLengthPrefixed}.
 */
export function joinLengthPrefixed(nals: readonly Uint8Array[], lengthSize: number): Buffer {
  let total = 0;
  for (const n of nals) total += lengthSize + n.length;
  const out = Buffer.allocUnsafe(total);
  let pos = 0;
  for (const n of nals) {
    out.writeUIntBE(n.length, pos, lengthSize);
    out.set(n, pos + lengthSize);
    pos += lengthSize + n.length;
  }
  return out;
}

/** Splits an Annex B byte stream (start codes 00 00 01 / 00 00 00 01, ITU-T H.264 Annex B) into NAL units. */
export function splitAnnexB(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = -1;
  let i = 0;
  while (i + 2 < data.length) {
    if (data[i] === 0 && data[i + 1] === 0 && data[i + 2] === 1) {
      if (start >= 0) {
        let end = i;
        while (end > start && data[end - 1] === 0) end--;
        if (end > start) out.push(data.subarray(start, end));
      }
      i += 3;
      start = i;
    } else {
      i++;
    }
  }
  if (start >= 0 && start < data.length) out.push(data.subarray(start));
  return out;
}
