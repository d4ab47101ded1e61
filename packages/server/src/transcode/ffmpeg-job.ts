/**
 * One supervised ffmpeg job (issue 10): every ffmpeg child of Glasscast runs through it. The job owns at most
 * one process (a *run*) at a time and decides recovery in one place (after hls.js's error controller):
 *
 * - a run that exits, stalls (input flows, no output for `stallMs`) or is reported behind or unreadable by its
 *   driver is a *fault*: an event with a code from the error catalogue and `fatal`; a non-fatal fault restarts
 *   the run after a backoff (0.5 s doubling to 30 s, back to 0.5 s after a run of 30 s); a fatal one (ffmpeg
 *   cannot be started) ends the job;
 * - a *reconfiguration* (the driver's plan changed, e.g. it shed work under overload) replaces the run at once
 *   and is not a fault;
 * - `close(reason)` is idempotent and kills the run. A run's ffmpeg also ends by itself when its stdin closes,
 *   and Node's exit kills it (ffmpeg-path.ts): no orphan process, ever.
 *
 * What to run and how to read it is the driver's (video-job.ts, audio-job.ts).
 */
import type { Readable } from 'node:stream';
import type { ErrorCode } from '../core/errors.js';
import { errorSpec } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { EntityStats } from '../core/stats.js';
import { entityStats } from '../core/stats.js';
import { spawnFfmpegPipe, type FfmpegPipe } from './ffmpeg-path.js';

/** A fault of a job: its code, a sentence, and whether the job gave up. */
export interface JobFault {
  code: ErrorCode;
  message: string;
  fatal: boolean;
  /** Epoch ms. */
  at: number;
}

/** What one run executes: ffmpeg arguments (after `-hide_banner -loglevel error -nostdin`) and extra output pipes. */
export interface FfmpegRunSpec {
  args: string[];
  /** Output pipes after stdout: fd 3, 4, … (`pipe:3`, …). Default 0. */
  extraOutputs?: number;
}

/** One running ffmpeg process of a job. */
export interface FfmpegRun {
  readonly stdout: Readable;
  /** fd 3, 4, … in order. */
  readonly outputs: Readable[];
  /** False once this run ended (data from it must be ignored). */
  readonly current: boolean;
  /** Bytes written to stdin that ffmpeg has not read yet. */
  readonly backlog: number;
  readonly pid: number | undefined;
  /** Writes to ffmpeg's stdin (ignored once the run ended). */
  write(data: Buffer): void;
}

/** What a job runs, and what it is told. Implemented by the video and audio jobs. */
export interface FfmpegJobDriver {
  /** The run to start now (called before every start, so a changed plan takes effect). */
  plan(): FfmpegRunSpec;
  /** A run started: read its outputs, write its headers. */
  runStarted(run: FfmpegRun): void;
  /** The run ended (fault, reconfiguration, stop or close): drop per-run state; renditions wait. */
  runEnded(reason: string): void;
}

/** Timing of a job, ms. */
export interface FfmpegJobOptions {
  /** First restart delay after a fault; doubles per restart up to `maxRestartDelayMs`. Default 500. */
  restartDelayMs?: number;
  /** Longest restart delay. Default 30 000. */
  maxRestartDelayMs?: number;
  /** A run this long resets the restart delay to its first value. Default 30 000. */
  stableRunMs?: number;
  /** Input flowing with no output for this long is a stall. Default 5 000. */
  stallMs?: number;
}

/** Lifecycle of a job. */
export type JobState = 'idle' | 'running' | 'restarting' | 'failed' | 'closed';

/** A supervised ffmpeg job. `close()` is idempotent. */
export class FfmpegJob {
  readonly createdAt = Date.now();
  private ff: FfmpegPipe | undefined;
  private runToken = 0;
  private _state: JobState = 'idle';
  private restartTimer: NodeJS.Timeout | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private restartDelayMs: number;
  private runStartedAt = 0;
  private lastInputAt = 0;
  private lastOutputAt = 0;
  private readonly listeners: ((fault: JobFault) => void)[] = [];
  private readonly counters = { runs: 0, restarts: 0, reconfigurations: 0, faults: 0 };
  private lastFault: JobFault | undefined;

  constructor(
    /** `<stream>/<kind>` in logs and stats. */
    readonly id: string,
    private readonly driver: FfmpegJobDriver,
    private readonly log: Logger,
    private readonly options: FfmpegJobOptions = {},
  ) {
    this.restartDelayMs = options.restartDelayMs ?? 500;
  }

  /** Lifecycle state. */
  get state(): JobState {
    return this._state;
  }

  /** True while a process runs. */
  get running(): boolean {
    return this._state === 'running' && (this.ff?.alive ?? false);
  }

  /** The running process's PID (tests kill it to prove recovery). */
  get pid(): number | undefined {
    return this.running ? this.ff?.child.pid : undefined;
  }

  /** The last fault, if any. */
  get fault(): JobFault | undefined {
    return this.lastFault;
  }

  /** Called with every fault (after the job decided what to do). Listeners must not throw. */
  onFault(listener: (fault: JobFault) => void): void {
    this.listeners.push(listener);
  }

  /** Starts a run now unless one runs, a restart is pending, or the job failed or closed. */
  start(): void {
    if (this._state !== 'idle') return;
    this.spawn();
  }

  /** Ends the run without a restart (the source went away); `start()` begins again. */
  stop(reason: string): void {
    if (this._state === 'closed' || this._state === 'failed') return;
    this.endRun(reason);
    this._state = 'idle';
  }

  /** Replaces the run at once with one from the driver's current plan (not a fault). */
  reconfigure(reason: string): void {
    if (this._state !== 'running') return;
    this.counters.reconfigurations++;
    this.log.info({ job: this.id, reason }, 'transcoder reconfigured');
    this.endRun(reason);
    this._state = 'idle';
    this.spawn();
  }

  /**
   * Reports a fault of the current run: it ends, listeners are told, and the job restarts after its backoff, or
   * gives up when the code is fatal (`fatal` overrides the catalogue).
   */
  failed(code: ErrorCode, message: string, fatal = errorSpec(code).fatal): void {
    if (this._state !== 'running') return;
    this.endRun(message);
    const fault: JobFault = { code, message, fatal, at: Date.now() };
    this.lastFault = fault;
    this.counters.faults++;
    if (fatal) {
      this._state = 'failed';
      this.log.error({ job: this.id, code, reason: message }, 'transcoder gave up');
    } else {
      this._state = 'restarting';
      if (performance.now() - this.runStartedAt >= (this.options.stableRunMs ?? 30_000)) this.restartDelayMs = this.options.restartDelayMs ?? 500;
      const delay = this.restartDelayMs;
      this.restartDelayMs = Math.min(this.restartDelayMs * 2, this.options.maxRestartDelayMs ?? 30_000);
      this.counters.restarts++;
      this.log.warn({ job: this.id, code, reason: message, restarts: this.counters.restarts, delayMs: delay }, 'transcoder restarting');
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this._state !== 'restarting') return;
        this._state = 'idle';
        this.spawn();
      }, delay);
      this.restartTimer.unref();
    }
    for (const listener of this.listeners) {
      try {
        listener(fault);
      } catch (err) {
        this.log.error({ err }, 'job fault listener threw');
      }
    }
  }

  /** The driver wrote input (stall detection). */
  noteInput(): void {
    const now = performance.now();
    if (this.lastInputAt === 0) this.lastOutputAt = now;
    this.lastInputAt = now;
  }

  /** The driver read output (stall detection). */
  noteOutput(): void {
    this.lastOutputAt = performance.now();
  }

  private spawn(): void {
    const spec = this.driver.plan();
    const token = ++this.runToken;
    const ff = spawnFfmpegPipe(spec.args, this.log, this.id, spec.extraOutputs ?? 0);
    this.ff = ff;
    this._state = 'running';
    this.counters.runs++;
    this.runStartedAt = performance.now();
    this.lastInputAt = 0;
    this.lastOutputAt = 0;
    ff.onUnexpectedExit((reason, spawnFailed) => {
      if (this.runToken !== token) return;
      if (spawnFailed) this.failed('JOB_START_FAILED', `ffmpeg could not be started (${reason})`, true);
      else this.failed('JOB_EXITED', `ffmpeg ${reason}${ff.stderr ? `: ${lastLine(ff.stderr)}` : ''}`);
    });
    const current = (): boolean => this.runToken === token && this._state === 'running';
    const run: FfmpegRun = {
      stdout: ff.child.stdout,
      outputs: ff.outputs,
      get current() {
        return current();
      },
      get backlog() {
        return ff.backlog;
      },
      get pid() {
        return ff.child.pid;
      },
      write: (data) => {
        if (this.runToken === token) ff.write(data);
      },
    };
    this.watchdog = setInterval(() => this.checkStall(), 1000);
    this.watchdog.unref();
    try {
      this.driver.runStarted(run);
    } catch (err) {
      this.log.error({ err }, 'transcoder driver threw at start');
      this.failed('INTERNAL', 'internal error starting the transcoder');
    }
  }

  private checkStall(): void {
    const now = performance.now();
    const stallMs = this.options.stallMs ?? 5_000;
    if (this.lastInputAt > 0 && now - this.lastOutputAt > stallMs && now - this.lastInputAt < 1000) {
      this.failed('JOB_STALLED', `no output for ${Math.round(now - this.lastOutputAt)} ms while input flows`);
    }
  }

  private endRun(reason: string): void {
    this.runToken++;
    clearTimeout(this.restartTimer);
    this.restartTimer = undefined;
    clearInterval(this.watchdog);
    this.watchdog = undefined;
    const ff = this.ff;
    this.ff = undefined;
    ff?.stop();
    if (ff) {
      try {
        this.driver.runEnded(reason);
      } catch (err) {
        this.log.error({ err }, 'transcoder driver threw at the end of a run');
      }
    }
  }

  /** Statistics of this job; `extra` adds the driver's own counters and info. */
  getStats(extra: Partial<Pick<EntityStats, 'counters' | 'info' | 'children'>> = {}): EntityStats {
    return entityStats('job', this.id, this._state, this.createdAt, {
      counters: { ...this.counters, ...extra.counters },
      info: { lastFaultCode: this.lastFault?.code, lastFault: this.lastFault?.message, lastFaultAt: this.lastFault?.at, ...extra.info },
      children: extra.children ?? [],
    });
  }

  /** Ends the run for good; no restart follows. Idempotent. */
  close(reason: string): void {
    if (this._state === 'closed') return;
    this.endRun(reason);
    this._state = 'closed';
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').pop()?.slice(0, 200) ?? '';
}
