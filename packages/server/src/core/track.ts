/** Tracks: the codec configuration and timescale that access units refer to (DESIGN.md "Core model"). */
import type { AudioCodec, AudioConfigInfo, VideoCodec, VideoConfigInfo } from '../media/codecs/codec-table.js';

/** A video track. Timestamps of its access units are 90 kHz ticks. */
export interface VideoTrack {
  kind: 'video';
  /** Track number, unique within the stream, ≥ 1 (becomes the fMP4 track_ID). */
  id: number;
  codec: VideoCodec;
  /** Ticks per second: always 90 000 for video. */
  timescale: number;
  /** Decoder configuration record (avcC / hvcC bytes). */
  config: Uint8Array;
  info: VideoConfigInfo;
}

/** An audio track. Timestamps of its access units are in samples (timescale = sample rate). */
export interface AudioTrack {
  kind: 'audio';
  id: number;
  codec: AudioCodec;
  /** Ticks per second: the sample rate in Hz. */
  timescale: number;
  /** AudioSpecificConfig for AAC. */
  config: Uint8Array;
  info: AudioConfigInfo;
}

/** A track of a stream. */
export type Track = VideoTrack | AudioTrack;

/** True when two track lists describe the same codecs and configurations (so no new init segment is needed). */
export function sameTracks(a: readonly Track[], b: readonly Track[]): boolean {
  if (a.length !== b.length) return false;
  return a.every((t, i) => {
    const u = b[i]!;
    return t.kind === u.kind && t.codec === u.codec && t.timescale === u.timescale && Buffer.compare(t.config, u.config) === 0;
  });
}
