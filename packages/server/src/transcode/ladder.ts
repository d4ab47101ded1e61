/**
 * ABR ladder profiles (issue 5): which renditions a source is transcoded into. Pure: text in, rungs out.
 *
 * A ladder is written `1080p=4500k,720p=2500k,480p=1200k@30,360p=600k@30`: per rung the height in lines, the
 * target video bitrate (`k` = 1 000 bits/s, `m` = 1 000 000) and an optional frame-rate cap (frames/s). `none`
 * is an empty ladder (source passthrough only).
 */
import { GlasscastError } from '../core/errors.js';

/** One rung of the ladder. */
export interface Rung {
  /** `<height>p`, e.g. `720p`: the rendition's name in URLs and menus. */
  name: string;
  /** Lines. 144–2160, even. */
  height: number;
  /** Target video bitrate, bits/s. */
  bitrate: number;
  /** Frames/s this rung may not exceed; undefined keeps the source's rate. */
  maxFrameRate: number | undefined;
}

/** A rung sized for a given source: the width keeps the source's aspect ratio. */
export interface PlannedRung extends Rung {
  /** Pixels, even. */
  width: number;
}

/** The default ladder (DESIGN.md; issue 5): 1080p 4.5 Mb/s, 720p 2.5, 480p 1.2, 360p 0.6; 30 fps cap from 480p down. */
export const DEFAULT_LADDER = '1080p=4500k,720p=2500k,480p=1200k@30,360p=600k@30';

/** Most rungs a ladder may have (each one costs an encoder). */
export const MAX_RUNGS = 6;

const RUNG_PATTERN = /^(\d{3,4})p=(\d+(?:\.\d+)?)([km])(?:@(\d{1,3}))?$/i;

/**
 * Parses a ladder. Rungs come out highest first; duplicates are refused.
 * @throws GlasscastError `CONFIG_INVALID` with a sentence naming the bad rung.
 */
export function parseLadder(text: string): Rung[] {
  const trimmed = text.trim();
  if (trimmed === '' || trimmed.toLowerCase() === 'none') return [];
  const rungs: Rung[] = [];
  for (const item of trimmed.split(',').map((s) => s.trim())) {
    const m = RUNG_PATTERN.exec(item);
    if (!m) {
      throw new GlasscastError('CONFIG_INVALID', `ladder rung "${item.slice(0, 40)}" is not like 720p=2500k or 480p=1200k@30`);
    }
    const height = Number(m[1]);
    const bitrate = Math.round(Number(m[2]) * (m[3]!.toLowerCase() === 'm' ? 1_000_000 : 1_000));
    const maxFrameRate = m[4] === undefined ? undefined : Number(m[4]);
    if (height < 144 || height > 2160 || height % 2 !== 0) {
      throw new GlasscastError('CONFIG_INVALID', `ladder rung ${item}: height must be even, 144–2160`);
    }
    if (bitrate < 100_000 || bitrate > 50_000_000) {
      throw new GlasscastError('CONFIG_INVALID', `ladder rung ${item}: bitrate must be 100k–50m`);
    }
    if (maxFrameRate !== undefined && (maxFrameRate < 1 || maxFrameRate > 240)) {
      throw new GlasscastError('CONFIG_INVALID', `ladder rung ${item}: frame-rate cap must be 1–240`);
    }
    if (rungs.some((r) => r.height === height)) throw new GlasscastError('CONFIG_INVALID', `ladder has ${height}p twice`);
    rungs.push({ name: `${height}p`, height, bitrate, maxFrameRate });
  }
  if (rungs.length > MAX_RUNGS) throw new GlasscastError('CONFIG_INVALID', `a ladder has at most ${MAX_RUNGS} rungs`);
  return rungs.sort((a, b) => b.height - a.height);
}

/** Writes a ladder back as text (the inverse of {@link parseLadder}). */
export function formatLadder(rungs: readonly Rung[]): string {
  if (rungs.length === 0) return 'none';
  return rungs.map((r) => `${r.height}p=${Math.round(r.bitrate / 1000)}k${r.maxFrameRate ? `@${r.maxFrameRate}` : ''}`).join(',');
}

/**
 * The rungs to encode for a `width`×`height` source: those strictly below the source's height. A rung at the
 * source's own height is skipped too: the source rendition (passed through) already serves that resolution,
 * and re-encoding it would cost a full-size encoder for a lower bitrate only.
 */
export function planRungs(ladder: readonly Rung[], width: number, height: number): PlannedRung[] {
  if (width <= 0 || height <= 0) return [];
  return ladder
    .filter((r) => r.height < height)
    .map((r) => ({ ...r, width: Math.max(2, Math.round((width * r.height) / height / 2) * 2) }));
}
