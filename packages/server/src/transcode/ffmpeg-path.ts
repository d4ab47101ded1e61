/** Running ffmpeg for the transcoders: which binary, and a piped child that owns its logging and shutdown. */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../core/logger.js';

/** Which ffmpeg to run: FFMPEG_PATH, else `ffmpeg` on PATH (DESIGN.md "ffmpeg"). */
export function ffmpegPath(): string {
  return process.env['FFMPEG_PATH'] ?? 'ffmpeg';
}

/** An ffmpeg child reading stdin and writing stdout. `stop()` is idempotent. */
export interface FfmpegPipe {
  child: ChildProcessByStdio<Writable, Readable, Readable>;
  /** False once the child failed to start or exited. */
  readonly alive: boolean;
  /** Writes to stdin unless stopped or dead. */
  write(data: Buffer): void;
  /** Ends stdin and kills the child. */
  stop(): void;
}

/**
 * Spawns ffmpeg with `args` (after `-hide_banner -loglevel error -nostdin`). An unexpected exit is logged once
 * with the tail of stderr under `label`; the child also ends by itself when its stdin closes, so it cannot
 * outlive Glasscast even after a SIGKILL.
 */
export function spawnFfmpegPipe(args: string[], log: Logger, label: string): FfmpegPipe {
  const child = spawn(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
  let stopped = false;
  let alive = true;
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  child.stdin.on('error', () => undefined);
  child.on('error', (err) => {
    alive = false;
    log.warn({ err }, `${label}: ffmpeg failed to start`);
  });
  child.on('exit', (code, signal) => {
    alive = false;
    if (!stopped) log.warn({ code, signal, stderr }, `${label}: ffmpeg exited`);
  });
  return {
    child,
    get alive() {
      return alive && !stopped;
    },
    write(data) {
      if (alive && !stopped) child.stdin.write(data);
    },
    stop() {
      if (stopped) return;
      stopped = true;
      child.stdin.end();
      child.kill('SIGKILL');
    },
  };
}
