/** Timestamp helpers. Every media timestamp is an integer in a stated timescale (ticks per second). */

/** Video timescale used throughout the core: 90 kHz (RFC 6184 §5.1, ISO/IEC 13818-1). */
export const VIDEO_TIMESCALE = 90_000;

/** Converts `value` ticks from timescale `from` to timescale `to`, rounding to the nearest tick. */
export function rescale(value: number, from: number, to: number): number {
  if (from === to) return value;
  return Math.round((value * to) / from);
}

/**
 * Unwraps a timestamp counter of `bits` width (32 for RTMP milliseconds, 33 for MPEG-TS) against the previous
 * unwrapped value, so it keeps increasing across a wrap. A jump back of more than half the range counts as a wrap.
 */
export function unwrap(previous: number | undefined, raw: number, bits: number): number {
  if (previous === undefined) return raw;
  const range = 2 ** bits;
  const half = range / 2;
  const base = previous - (((previous % range) + range) % range);
  let candidate = base + raw;
  if (candidate - previous > half) candidate -= range;
  else if (previous - candidate > half) candidate += range;
  return candidate;
}
