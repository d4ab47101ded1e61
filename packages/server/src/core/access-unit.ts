/** Access units: one frame of one track (DESIGN.md "Core model"). */

/**
 * One frame of one track. `dts`/`pts` are integers in the track's timescale (90 kHz for video, the sample
 * rate for audio), continuous within one publisher session.
 */
export interface AccessUnit {
  trackId: number;
  /** Decode timestamp, ticks. */
  dts: number;
  /** Presentation timestamp, ticks (≥ dts for B-frame streams). */
  pts: number;
  /** A random access point: an IDR/IRAP picture for video; every audio frame. */
  keyframe: boolean;
  /** Video: NAL units without start codes or length prefixes. Audio: one element, the raw frame. */
  payload: Uint8Array[];
}

/** Total payload bytes of an access unit. */
export function accessUnitSize(au: AccessUnit): number {
  let n = 0;
  for (const p of au.payload) n += p.length;
  return n;
}
