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
