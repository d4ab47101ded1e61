/**
 * FLV audio/video tag bodies as carried in RTMP messages 8 and 9 (Adobe FLV v10.1 §E.4.2/E.4.3) and the
 * Enhanced RTMP extension (veovera enhanced-rtmp v1/v2: ExVideoTagHeader with FourCC, `hvc1`/`avc1`).
 */
import type { VideoCodec } from '../codecs/codec-table.js';
import { MediaParseError } from '../errors.js';

/** A parsed video tag body. `compositionTime` is PTS − DTS in milliseconds (SI24). */
export type FlvVideoPacket =
  | { type: 'config'; codec: VideoCodec; record: Uint8Array }
  | { type: 'frame'; codec: VideoCodec; keyframe: boolean; compositionTime: number; data: Uint8Array }
  | { type: 'end-of-sequence'; codec: VideoCodec }
  | { type: 'skip'; reason: string };

/** A parsed audio tag body. */
export type FlvAudioPacket =
  | { type: 'config'; codec: 'aac'; config: Uint8Array }
  | { type: 'frame'; codec: 'aac'; data: Uint8Array }
  | { type: 'skip'; reason: string };

const LEGACY_VIDEO_CODECS: Record<number, VideoCodec | undefined> = { 7: 'h264', 12: 'h265' };
const FOURCC_VIDEO_CODECS: Record<string, VideoCodec | undefined> = { avc1: 'h264', hvc1: 'h265' };

// Enhanced RTMP VideoPacketType values.
const EX_PACKET = { sequenceStart: 0, codedFrames: 1, sequenceEnd: 2, codedFramesX: 3, metadata: 4, mpeg2tsSequenceStart: 5 } as const;
const FRAME_TYPE_KEY = 1;
const FRAME_TYPE_COMMAND = 5;

function si24(b: Uint8Array, pos: number): number {
  const v = (b[pos]! << 16) | (b[pos + 1]! << 8) | b[pos + 2]!;
  return v & 0x800000 ? v - 0x1000000 : v;
}

function truncated(what: string): never {
  throw new MediaParseError('FLV_TRUNCATED', `FLV ${what} truncated`);
}

/**
 * Parses the body of an RTMP video message (FLV VIDEODATA, or Enhanced RTMP ExVideoTagHeader).
 * @throws MediaParseError `FLV_TRUNCATED` when the header is cut short.
 */
export function parseFlvVideo(body: Uint8Array): FlvVideoPacket {
  if (body.length < 1) truncated('video tag');
  const b0 = body[0]!;
  if (b0 & 0x80) {
    const frameType = (b0 >> 4) & 0x07;
    const packetType = b0 & 0x0f;
    if (body.length < 5) truncated('enhanced video tag');
    const fourCc = Buffer.from(body.subarray(1, 5)).toString('latin1');
    const codec = FOURCC_VIDEO_CODECS[fourCc];
    if (!codec) return { type: 'skip', reason: `unsupported video FourCC "${fourCc}"` };
    if (frameType === FRAME_TYPE_COMMAND) return { type: 'skip', reason: 'video command frame' };
    switch (packetType) {
      case EX_PACKET.sequenceStart:
        return { type: 'config', codec, record: body.subarray(5) };
      case EX_PACKET.codedFrames:
        if (body.length < 8) truncated('enhanced coded frame');
        return { type: 'frame', codec, keyframe: frameType === FRAME_TYPE_KEY, compositionTime: si24(body, 5), data: body.subarray(8) };
      case EX_PACKET.codedFramesX:
        return { type: 'frame', codec, keyframe: frameType === FRAME_TYPE_KEY, compositionTime: 0, data: body.subarray(5) };
      case EX_PACKET.sequenceEnd:
        return { type: 'end-of-sequence', codec };
      default:
        return { type: 'skip', reason: `enhanced video packet type ${packetType}` };
    }
  }
  const frameType = b0 >> 4;
  const codecId = b0 & 0x0f;
  const codec = LEGACY_VIDEO_CODECS[codecId];
  if (!codec) return { type: 'skip', reason: `unsupported FLV video codec id ${codecId}` };
  if (frameType === FRAME_TYPE_COMMAND) return { type: 'skip', reason: 'video command frame' };
  if (body.length < 5) truncated('AVC video tag');
  const packetType = body[1]!;
  if (packetType === 0) return { type: 'config', codec, record: body.subarray(5) };
  if (packetType === 1) {
    return { type: 'frame', codec, keyframe: frameType === FRAME_TYPE_KEY, compositionTime: si24(body, 2), data: body.subarray(5) };
  }
  if (packetType === 2) return { type: 'end-of-sequence', codec };
  return { type: 'skip', reason: `AVC packet type ${packetType}` };
}

/**
 * Parses the body of an RTMP audio message (FLV AUDIODATA, §E.4.2.1). Only AAC (SoundFormat 10) is carried.
 * @throws MediaParseError `FLV_TRUNCATED` when the header is cut short.
 */
export function parseFlvAudio(body: Uint8Array): FlvAudioPacket {
  if (body.length < 1) truncated('audio tag');
  const soundFormat = body[0]! >> 4;
  if (soundFormat !== 10) return { type: 'skip', reason: `unsupported FLV sound format ${soundFormat}` };
  if (body.length < 2) truncated('AAC audio tag');
  if (body[1] === 0) return { type: 'config', codec: 'aac', config: body.subarray(2) };
  return { type: 'frame', codec: 'aac', data: body.subarray(2) };
}

/** One FLV tag inside an RTMP aggregate message. `timestamp` is in milliseconds. */
export interface FlvTag {
  tagType: number;
  timestamp: number;
  body: Uint8Array;
}

/**
 * Splits an RTMP aggregate message (type 22) into its FLV tags (FLV v10.1 §E.4.1 tag layout, each followed by
 * a 4-byte back pointer).
 * @throws MediaParseError `FLV_TRUNCATED` when a tag runs past the end.
 */
export function splitAggregate(payload: Uint8Array): FlvTag[] {
  const tags: FlvTag[] = [];
  let pos = 0;
  while (pos + 11 <= payload.length) {
    const tagType = payload[pos]! & 0x1f;
    const size = (payload[pos + 1]! << 16) | (payload[pos + 2]! << 8) | payload[pos + 3]!;
    const timestamp = ((payload[pos + 7]! << 24) | (payload[pos + 4]! << 16) | (payload[pos + 5]! << 8) | payload[pos + 6]!) >>> 0;
    const start = pos + 11;
    if (start + size > payload.length) truncated('aggregate sub-tag');
    tags.push({ tagType, timestamp, body: payload.subarray(start, start + size) });
    pos = start + size + 4;
  }
  return tags;
}

/** FLV file header for a video-only stream (FLV v10.1 §E.2) plus PreviousTagSize0. */
export function writeFlvHeader(hasVideo: boolean, hasAudio: boolean): Buffer {
  return Buffer.from([0x46, 0x4c, 0x56, 1, (hasAudio ? 4 : 0) | (hasVideo ? 1 : 0), 0, 0, 0, 9, 0, 0, 0, 0]);
}

/** One FLV tag (§E.4.1) with its trailing PreviousTagSize. `timestamp` is milliseconds (32-bit, extended byte used). */
export function writeFlvTag(tagType: number, timestamp: number, body: Uint8Array): Buffer {
  const out = Buffer.alloc(11 + body.length + 4);
  out[0] = tagType;
  out.writeUIntBE(body.length, 1, 3);
  const ts = timestamp >>> 0;
  out.writeUIntBE(ts & 0xffffff, 4, 3);
  out[7] = ts >>> 24;
  out.set(body, 11);
  out.writeUInt32BE(11 + body.length, 11 + body.length);
  return out;
}

/** An AVC VIDEODATA body (§E.4.3.1): sequence header (type 0) or NAL units (type 1) with composition time in ms. */
export function flvAvcBody(packetType: 0 | 1, keyframe: boolean, compositionTime: number, data: Uint8Array): Buffer {
  const head = Buffer.alloc(5);
  head[0] = ((keyframe ? 1 : 2) << 4) | 7;
  head[1] = packetType;
  head.writeIntBE(Math.round(compositionTime), 2, 3);
  return Buffer.concat([head, data]);
}

/**
 * Incremental FLV stream reader (file header, then tags), for reading an encoder's FLV output from a pipe.
 * @throws MediaParseError `FLV_INVALID` on a bad signature or a tag larger than `maxTagSize`.
 */
export class FlvStreamReader {
  private buf: Buffer = Buffer.alloc(0);
  private headerDone = false;

  constructor(private readonly maxTagSize = 16 * 1024 * 1024) {}

  /** Feeds bytes; returns the tags completed by them. */
  push(data: Buffer): FlvTag[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    const out: FlvTag[] = [];
    if (!this.headerDone) {
      if (this.buf.length < 13) return out;
      if (this.buf.toString('latin1', 0, 3) !== 'FLV') throw new MediaParseError('FLV_INVALID', 'FLV signature missing');
      const headerSize = this.buf.readUInt32BE(5);
      if (this.buf.length < headerSize + 4) return out;
      this.buf = this.buf.subarray(headerSize + 4);
      this.headerDone = true;
    }
    let pos = 0;
    while (pos + 11 <= this.buf.length) {
      const size = this.buf.readUIntBE(pos + 1, 3);
      if (size > this.maxTagSize) throw new MediaParseError('FLV_INVALID', `FLV tag of ${size} bytes`);
      if (pos + 11 + size + 4 > this.buf.length) break;
      const timestamp = (this.buf.readUIntBE(pos + 4, 3) | (this.buf[pos + 7]! << 24)) >>> 0;
      out.push({ tagType: this.buf[pos]! & 0x1f, timestamp, body: Buffer.from(this.buf.subarray(pos + 11, pos + 11 + size)) });
      pos += 11 + size + 4;
    }
    this.buf = Buffer.from(this.buf.subarray(pos));
    return out;
  }
}
