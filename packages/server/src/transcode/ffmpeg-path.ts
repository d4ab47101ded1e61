/** Running ffmpeg: which binary, and a piped child that owns its logging and shutdown (used by ffmpeg-job.ts). */
import { spawn, type ChildProcess, type ChildProcessByStdio } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import type { Logger } from '../core/logger.js';

/** Which ffmpeg to run: FFMPEG_PATH, else `ffmpeg` on PATH (DESIGN.md "ffmpeg"). */
export function ffmpegPath(): string {
  return process.env['FFMPEG_PATH'] ?? 'ffmpeg';
}

/**
 * Every ffmpeg child still running. They end by themselves when their stdin closes (even after a SIGKILL of
 * Glasscast); a normal exit of Node also kills them at once, so none outlives the process that made it.
 */
const liveChildren = new Set<ChildProcess>();
let exitHookInstalled = false;

/** Tracks `child` until it exits and kills it if this process exits first. */
export function trackChild(child: ChildProcess): void {
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once('exit', () => {
      for (const c of liveChildren) c.kill('SIGKILL');
    });
  }
  liveChildren.add(child);
  const forget = (): void => void liveChildren.delete(child);
  child.once('exit', forget);
  child.once('error', forget);
}

/** PIDs of the ffmpeg children running now (tests prove none is left behind). */
export function liveFfmpegPids(): number[] {
  return [...liveChildren].flatMap((c) => (c.pid !== undefined && c.exitCode === null && c.signalCode === null ? [c.pid] : []));
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
  /** The last lines ffmpeg wrote to stderr (at most 2 000 characters). */
  readonly stderr: string;
  /** Called once when the child exits or fails to start without `stop()`; `spawnFailed` for a failed start. */
  onUnexpectedExit(handler: (reason: string, spawnFailed: boolean) => void): void;
  /** Writes to stdin unless stopped or dead. */
  write(data: Buffer): void;
  /** Ends stdin and kills the child. */
  stop(): void;
}

/**
 * Spawns ffmpeg with `args` (after `-hide_banner -loglevel error -nostdin`), with `extraOutputs` more pipes
 * after stdout. The child also ends by itself when its stdin closes (EOF, then a broken pipe on its outputs).
 */
export function spawnFfmpegPipe(args: string[], log: Logger, label: string, extraOutputs = 0): FfmpegPipe {
  const stdio = new Array<'pipe'>(3 + extraOutputs).fill('pipe');
  const child = spawn(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-nostdin', ...args], { stdio }) as unknown as ChildProcessByStdio<Writable, Readable, Readable>;
  trackChild(child);
  const outputs = (child.stdio as unknown as (Readable | null)[]).slice(3) as Readable[];
  let stopped = false;
  let alive = true;
  let stderr = '';
  let exitHandler: ((reason: string, spawnFailed: boolean) => void) | undefined;
  const died = (reason: string, spawnFailed: boolean): void => {
    const h = exitHandler;
    exitHandler = undefined;
    if (!stopped) h?.(reason, spawnFailed);
  };
  child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
  child.stdin.on('error', () => undefined);
  child.stdout.on('error', () => undefined);
  for (const o of outputs) o.on('error', () => undefined);
  child.on('error', (err) => {
    alive = false;
    if (!stopped) log.warn({ err }, `${label}: ffmpeg failed to start`);
    died(`failed to start: ${err.message}`, true);
  });
  child.on('exit', (code, signal) => {
    alive = false;
    if (!stopped) log.warn({ code, signal, stderr }, `${label}: ffmpeg exited`);
    died(signal ? `killed by ${signal}` : `exited with code ${code}`, false);
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
    get stderr() {
      return stderr;
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
