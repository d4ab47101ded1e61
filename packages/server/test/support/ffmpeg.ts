/** Real ffmpeg publishers and probes for tests and benchmarks. Every child is killed by PID on stop. */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

/** The Big Buck Bunny clip (H.264 High with B-frames, AAC 44.1 kHz, keyframes up to 10.4 s apart). */
export const BBB_CLIP = fileURLToPath(new URL('../../../../../shared/media/bbb-360p-60s.mp4', import.meta.url));

/** ffmpeg binary: FFMPEG_PATH, else `ffmpeg` on PATH. */
export const FFMPEG = process.env['FFMPEG_PATH'] ?? 'ffmpeg';
export const FFPROBE = process.env['FFPROBE_PATH'] ?? 'ffprobe';

/** A running ffmpeg child. */
export interface FfmpegProcess {
  child: ChildProcess;
  /** Everything ffmpeg wrote to stderr so far. */
  stderr(): string;
  /** Kills the child (SIGKILL by default, as a publisher dying on a network blip) and waits for it. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Spawns ffmpeg with `args`; `stdin` gives it a writable stdin, `pipes` more writable inputs as fd 3, 4, … (`pipe:3`).
 * `nice` starts it at that CPU priority (through nice(1), so every thread it makes has it; setting it after the
 * start misses the input threads ffmpeg has already made).
 */
export function runFfmpeg(args: string[], options: { stdin?: boolean; pipes?: number; nice?: number } = {}): FfmpegProcess {
  const extra = new Array<'pipe'>(options.pipes ?? 0).fill('pipe');
  const argv = ['-hide_banner', '-loglevel', 'warning', '-nostdin', ...args];
  const child = spawn(options.nice === undefined ? FFMPEG : 'nice', options.nice === undefined ? argv : ['-n', String(options.nice), FFMPEG, ...argv], {
    stdio: [options.stdin ? 'pipe' : 'ignore', 'ignore', 'pipe', ...extra],
  });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  child.on('error', () => undefined);
  return {
    child,
    stderr: () => err,
    async stop(signal = 'SIGKILL') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, 'exit');
      child.kill(signal);
      await exited;
    },
  };
}

/** Publishes a clip (the BBB clip unless `file` is given) looped, stream-copied, at real-time speed. */
export function publishClip(rtmpUrl: string, file = BBB_CLIP): FfmpegProcess {
  return runFfmpeg(['-re', '-stream_loop', '-1', '-i', file, '-c', 'copy', '-f', 'flv', rtmpUrl]);
}

/**
 * Publishes (or, with `realtime: false` and a file path, encodes as fast as it can) an x264 test pattern with OBS's usual settings: CBR 2500k (or `videoKbps`), veryfast, keyframe interval
 * `gopSeconds`, 30 fps, AAC 160k; `zerolatency` adds x264's zerolatency tune (no B-frames, no lookahead).
 */
export function publishTestPattern(
  rtmpUrl: string,
  options: { gopSeconds?: number; zerolatency?: boolean; size?: string; seconds?: number; realtime?: boolean; /** CBR video rate, kb/s (default 2500). */ videoKbps?: number } = {},
): FfmpegProcess {
  const fps = 30;
  const rate = `${options.videoKbps ?? 2500}k`;
  const gop = fps * (options.gopSeconds ?? 2);
  const duration = options.seconds !== undefined ? ['-t', String(options.seconds)] : [];
  return runFfmpeg([
    ...(options.realtime === false ? [] : ['-re']),
    '-f', 'lavfi', '-i', `testsrc2=size=${options.size ?? '1280x720'}:rate=${fps}`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    ...duration,
    '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-pix_fmt', 'yuv420p',
    ...(options.zerolatency ? ['-tune', 'zerolatency'] : []),
    '-b:v', rate, '-minrate', rate, '-maxrate', rate, '-bufsize', rate, '-x264-params', 'nal-hrd=cbr',
    '-g', String(gop), '-keyint_min', String(gop), '-sc_threshold', '0',
    '-c:a', 'aac', '-b:a', '160k', '-ar', '48000',
    '-f', 'flv', rtmpUrl,
  ]);
}

/** Runs ffprobe and returns its JSON output. Rejects on a non-zero exit. */
export async function ffprobeJson(args: string[], timeoutMs = 30_000): Promise<unknown> {
  const child = spawn(FFPROBE, ['-v', 'error', '-of', 'json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const [code] = (await once(child, 'exit')) as [number | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`ffprobe exited ${code}: ${err.slice(-2000)}`);
  return JSON.parse(out);
}

/**
 * A 1080p30 clip as OBS would send it (x264 veryfast High with B-frames, 6 Mb/s, keyframe every 2 s, AAC 48 kHz
 * stereo), 12 s of a moving test pattern, encoded once into the temp directory and reused (tests and benches
 * stream-copy it so an encoder does not compete with the ladder for the 2 cores). `bFrames: false` makes the same
 * clip without B-frames (x264's zerolatency-like `-bf 0`): its stream needs no B-frame-free copy for WebRTC.
 * `size: '1280x720'` makes a 720p clip at 3 Mb/s instead; `gopSeconds` changes the keyframe interval.
 */
export async function ladderSourceClip(options: { bFrames?: boolean; size?: '1920x1080' | '1280x720'; gopSeconds?: 1 | 2 } = {}): Promise<string> {
  const { existsSync, renameSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const bFrames = options.bFrames ?? true;
  const size = options.size ?? '1920x1080';
  const rate = size === '1920x1080' ? '6000k' : '3000k';
  const lines = size.split('x')[1];
  const gop = String(30 * (options.gopSeconds ?? 2));
  const file = join(tmpdir(), `glasscast-${lines}p30${bFrames ? '' : '-nobf'}${gop === '60' ? '' : `-g${gop}`}-v1.mp4`);
  if (existsSync(file)) return file;
  const partial = `${file}.${process.pid}.tmp.mp4`;
  const ff = runFfmpeg([
    '-f', 'lavfi', '-i', `testsrc2=size=${size}:rate=30`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '12', '-c:v', 'libx264', '-preset', 'veryfast', '-profile:v', 'high', '-pix_fmt', 'yuv420p', '-bf', bFrames ? '2' : '0',
    '-b:v', rate, '-maxrate', rate, '-bufsize', rate, '-g', gop, '-keyint_min', gop, '-sc_threshold', '0',
    '-c:a', 'aac', '-b:a', '160k', '-ac', '2', '-movflags', '+faststart', '-y', partial,
  ]);
  const [code] = (await once(ff.child, 'exit')) as [number | null];
  if (code !== 0) throw new Error(`could not encode the ${lines}p clip: ${ff.stderr()}`);
  renameSync(partial, file);
  return file;
}
