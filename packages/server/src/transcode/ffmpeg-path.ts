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
  /** Extra output pipes, fd 3, 4, … in order (ffmpeg writes them as `pipe:3`, `pipe:4`, …). */
  outputs: Readable[];
  /** False once the child failed to start or exited. */
  readonly alive: boolean;
  /** Bytes written to stdin that the child has not read yet (it is falling behind when this grows). */
  readonly backlog: number;
  /** Called once when the child exits without `stop()` (crash, kill, end of input). */
  onUnexpectedExit(handler: (reason: string) => void): void;
  /** Writes to stdin unless stopped or dead. */
  write(data: Buffer): void;
  /** Ends stdin and kills the child. */
  stop(): void;
}

/**
 * Spawns ffmpeg with `args` (after `-hide_banner -loglevel error -nostdin`), with `extraOutputs` more pipes
 * after stdout. An unexpected exit is logged once with the tail of stderr under `label`; the child also ends by
 * itself when its stdin closes (EOF, then a broken pipe on its outputs), so it cannot outlive Glasscast even
 * after a SIGKILL.
 */
export function spawnFfmpegPipe(args: string[], log: Logger, label: string, extraOutputs = 0): FfmpegPipe {
  const stdio = new Array<'pipe'>(3 + extraOutputs).fill('pipe');
  const child = spawn(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], { stdio }) as unknown as ChildProcessByStdio<Writable, Readable, Readable>;
  const outputs = (child.stdio as unknown as (Readable | null)[]).slice(3) as Readable[];
  let stopped = false;
  let alive = true;
  let stderr = '';
  let exitHandler: ((reason: string) => void) | undefined;
  const died = (reason: string): void => {
    const h = exitHandler;
    exitHandler = undefined;
    if (!stopped) h?.(reason);
  };
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  child.stdin.on('error', () => undefined);
  for (const o of outputs) o.on('error', () => undefined);
  child.on('error', (err) => {
    alive = false;
    log.warn({ err }, `${label}: ffmpeg failed to start`);
    died(`failed to start: ${err.message}`);
  });
  child.on('exit', (code, signal) => {
    alive = false;
    if (!stopped) log.warn({ code, signal, stderr }, `${label}: ffmpeg exited`);
    died(signal ? `killed by ${signal}` : `exited with code ${code}`);
  });
  return {
    child,
    outputs,
    get alive() {
      return alive && !stopped;
    },
    get backlog() {
      return child.stdin.writableLength;
    },
    onUnexpectedExit(handler) {
      exitHandler = handler;
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
