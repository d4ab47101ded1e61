/** The one-file MP4 of a recording (issue 13): its segments remuxed by ffmpeg, no re-encode. */
import { spawn } from 'node:child_process';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { GlasscastError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { RecordingRecord, RecordingStore } from '../store/recording-store.js';
import { ffmpegPath, trackChild } from '../transcode/ffmpeg-path.js';
import { renderVodPlaylist } from './vod-playlist.js';

/** Longest an MP4 remux may take, ms. */
const MP4_TIMEOUT_MS = 10 * 60_000;

/**
 * `<dir>/download.mp4`: the first rendition's segments remuxed by ffmpeg into one MP4 with its index up front
 * (no re-encode). Made once; later calls find it.
 */
export async function makeMp4(recordings: RecordingStore, dir: string, r: RecordingRecord, log: Logger): Promise<string> {
  const out = join(dir, 'download.mp4');
  if (await stat(out).catch(() => undefined)) return out;
  const rendition = r.renditions[0]!;
  const playlist = join(dir, rendition, 'local.m3u8');
  await writeFile(playlist, renderVodPlaylist(await recordings.segments(r.id, rendition), true));
  const partial = join(dir, 'download.partial.mp4');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-i', playlist, '-map', '0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', partial], { stdio: ['ignore', 'ignore', 'pipe'] });
    trackChild(child);
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), MP4_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new GlasscastError('NOT_READY', `the MP4 could not be made (ffmpeg exited ${code}): ${stderr.trim().slice(-300)}`));
    });
  }).catch(async (err: unknown) => {
    log.error({ err, recording: r.id }, 'MP4 remux failed');
    await rm(partial, { force: true });
    throw err;
  });
  await rename(partial, out);
  return out;
}
