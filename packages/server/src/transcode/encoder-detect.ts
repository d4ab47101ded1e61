/**
 * Which H.264 encoder the ladder uses (issue 5): NVENC, VAAPI or QSV when this machine has one that works,
 * else libx264. Each candidate is tried with a one-frame encode, because "ffmpeg lists the encoder" says nothing
 * about a GPU, a driver or a render node being present.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Logger } from '../core/logger.js';
import { ffmpegPath, trackChild } from './ffmpeg-path.js';

/** Encoders the ladder knows how to drive. */
export type VideoEncoderKind = 'nvenc' | 'vaapi' | 'qsv' | 'libx264';

/** The encoder chosen, and why (shown in logs and stats). */
export interface EncoderChoice {
  kind: VideoEncoderKind;
  reason: string;
}

/** The render node VAAPI uses. */
export const VAAPI_DEVICE = '/dev/dri/renderD128';
/** Longest a one-frame probe may take, ms (a missing driver fails fast; a hung one must not hold the start). */
const PROBE_TIMEOUT_MS = 8_000;
const HARDWARE: readonly Exclude<VideoEncoderKind, 'libx264'>[] = ['nvenc', 'vaapi', 'qsv'];

/** ffmpeg arguments for a one-frame test encode with `kind` (input: a 256x144 colour frame; output discarded). */
export function probeArgs(kind: VideoEncoderKind): string[] {
  const input = ['-f', 'lavfi', '-i', 'color=c=gray:size=256x144:rate=30'];
  switch (kind) {
    case 'nvenc':
      return [...input, '-frames:v', '1', '-c:v', 'h264_nvenc', '-f', 'null', '-'];
    case 'vaapi':
      return ['-vaapi_device', VAAPI_DEVICE, ...input, '-frames:v', '1', '-vf', 'format=nv12,hwupload', '-c:v', 'h264_vaapi', '-f', 'null', '-'];
    case 'qsv':
      return [...input, '-frames:v', '1', '-c:v', 'h264_qsv', '-f', 'null', '-'];
    case 'libx264':
      return [...input, '-frames:v', '1', '-c:v', 'libx264', '-f', 'null', '-'];
  }
}

/** Runs one probe; resolves to undefined on success or to the reason it failed (ffmpeg's first error line). */
export function probeEncoder(kind: VideoEncoderKind): Promise<string | undefined> {
  if (kind === 'vaapi' && !existsSync(VAAPI_DEVICE)) return Promise.resolve(`no ${VAAPI_DEVICE}`);
  return new Promise((resolve) => {
    // A one-frame run with a timeout; tracked like every ffmpeg child, so Node's exit kills it too.
    const child = execFile(
      ffmpegPath(),
      ['-hide_banner', '-loglevel', 'error', '-nostdin', ...probeArgs(kind)],
      { timeout: PROBE_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (err, _stdout, stderr) => {
        if (!err) return resolve(undefined);
        // The first line names the cause ("Cannot load libcuda.so.1"); the generic "Error initializing" follows.
        const first = String(stderr).trim().split('\n').find((l) => l.trim() !== '');
        resolve((first?.replace(/^\[[^\]]*\]\s*/, '') ?? err.message).slice(0, 160));
      },
    );
    trackChild(child);
  });
}

/**
 * Picks the encoder: `auto` tries NVENC, VAAPI, QSV in that order and takes the first whose probe succeeds,
 * else libx264; a named one is probed and used if it works, else libx264 with the failure as the reason.
 * Never rejects; the result is logged once.
 */
export async function chooseVideoEncoder(preference: 'auto' | VideoEncoderKind, log: Logger): Promise<EncoderChoice> {
  let choice: EncoderChoice;
  if (preference === 'libx264') {
    choice = { kind: 'libx264', reason: 'configured (videoEncoder=libx264)' };
  } else if (preference !== 'auto') {
    const failure = await probeEncoder(preference);
    choice = failure === undefined
      ? { kind: preference, reason: `configured (videoEncoder=${preference}); one-frame test encode passed` }
      : { kind: 'libx264', reason: `configured ${preference} failed its test encode (${failure}); using libx264` };
  } else {
    const failures: string[] = [];
    choice = { kind: 'libx264', reason: '' };
    for (const kind of HARDWARE) {
      const failure = await probeEncoder(kind);
      if (failure === undefined) {
        choice = { kind, reason: `auto: ${kind} passed a one-frame test encode` };
        break;
      }
      failures.push(`${kind}: ${failure}`);
    }
    if (choice.kind === 'libx264') choice.reason = `auto: no hardware encoder works (${failures.join('; ')}); using libx264`;
  }
  if (choice.kind === 'libx264' && preference !== 'auto' && preference !== 'libx264') log.error({ encoder: choice.kind, reason: choice.reason }, 'video encoder chosen');
  else log.info({ encoder: choice.kind, reason: choice.reason }, 'video encoder chosen');
  return choice;
}
