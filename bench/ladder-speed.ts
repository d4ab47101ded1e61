/**
 * ABR ladder speed (DESIGN.md "Figures": 1080p → 720/480/360 with libx264 veryfast ≥ 1.3× real time on ≤ 1
 * core). Runs the video job's own ffmpeg command (`videoJobArgs`, the default ladder planned for a 1080p30
 * source) on the 1080p30 test clip (x264 High with B-frames, 6 Mb/s, as OBS sends), reading a file instead of
 * the pipe and writing the outputs to /dev/null, in two rows:
 *
 *   - `ladder`: the three rungs (a source without B-frames gets just these);
 *   - `default`: what this clip gets at the defaults: the rungs plus the 1080p B-frame-free copy for WebRTC,
 *     all from one decode.
 *
 * Each row: pinned to one core (taskset -c 0), as fast as it can (× real time = media seconds / wall seconds),
 * and at real time (-re) unpinned (cores used = (user + system CPU seconds) / wall seconds).
 *
 * Usage: npm run bench:ladder [-- --loops 3]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_LADDER, parseLadder } from '../packages/server/src/transcode/ladder.js';
import { fullPlan, videoJobArgs, type VideoSourceFacts } from '../packages/server/src/transcode/video-job.js';
import { ladderSourceClip } from '../packages/server/test/support/ffmpeg.js';

const { values: opts } = parseArgs({ options: { loops: { type: 'string', default: '3' } } });
const LOOPS = Math.max(1, Math.min(10, Number(opts.loops) || 3));
const CLIP_SECONDS = 12;

/** Runs `command` under bash's `time`; resolves to wall, user and system seconds. */
function timed(command: string[]): Promise<{ wall: number; user: number; sys: number }> {
  return new Promise((resolve, reject) => {
    const quoted = command.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
    const child = spawn('bash', ['-c', `TIMEFORMAT='%R %U %S'; time ${quoted} >/dev/null 2>/tmp/glasscast-ladder-bench.log`], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 10 * 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      const m = /(\d+\.\d+) (\d+\.\d+) (\d+\.\d+)\s*$/.exec(err);
      if (code !== 0 || !m) reject(new Error(`ffmpeg failed (exit ${code}); see /tmp/glasscast-ladder-bench.log\n${err.slice(-500)}`));
      else resolve({ wall: Number(m[1]), user: Number(m[2]), sys: Number(m[3]) });
    });
  });
}

async function measure(clip: string, bFrames: boolean): Promise<Record<string, unknown>> {
  const facts: VideoSourceFacts = { width: 1920, height: 1080, frameRate: 30, bFrames };
  const plan = fullPlan(parseLadder(DEFAULT_LADDER), facts);
  const args = videoJobArgs(plan, 'libx264', facts).map((a) => (/^pipe:[3-9]$/.test(a) ? '/dev/null' : a));
  const input = args.indexOf('pipe:0');
  // The file instead of the pipe (keeping -copyts and the filter graph); -stream_loop makes a longer run.
  const withInput = (realtime: boolean): string[] => [
    ...args.slice(0, input - 3),
    ...(realtime ? ['-re'] : []),
    '-stream_loop', String(LOOPS - 1),
    '-i', clip,
    ...args.slice(input + 1),
  ];
  const media = CLIP_SECONDS * LOOPS;
  const ffmpeg = ['ffmpeg', '-hide_banner', '-loglevel', 'error', '-nostdin', '-y'];
  const pinned = await timed(['taskset', '-c', '0', ...ffmpeg, ...withInput(false)]);
  const live = await timed([...ffmpeg, ...withInput(true)]);
  return {
    row: bFrames ? 'default (rungs + B-frame-free copy)' : 'ladder (rungs only)',
    outputs: plan.outputs.map((o) => `${o.name} ${o.width}x${o.height} ${o.bitrate / 1000} kb/s${o.maxFrameRate ? ` ≤${o.maxFrameRate} fps` : ''}`),
    mediaSeconds: media,
    oneCore: { wallSeconds: pinned.wall, timesRealTime: Number((media / pinned.wall).toFixed(2)) },
    realTime: { wallSeconds: live.wall, cpuSeconds: Number((live.user + live.sys).toFixed(1)), coresUsed: Number(((live.user + live.sys) / live.wall).toFixed(2)) },
  };
}

async function main(): Promise<void> {
  const clip = await ladderSourceClip();
  const rows = [await measure(clip, false), await measure(clip, true)];
  const figures = {
    bench: 'abr-ladder-speed',
    source: '1080p30 x264 High with B-frames, 6 Mb/s (12 s test pattern, looped)',
    encoder: 'libx264 veryfast zerolatency baseline, one ffmpeg: decode once, chained scaling',
    rows,
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/ladder-speed.json', JSON.stringify(figures, null, 2) + '\n');
  for (const r of rows) {
    const one = r['oneCore'] as { timesRealTime: number };
    const rt = r['realTime'] as { coresUsed: number };
    console.log(`video job 1080p30, ${String(r['row'])}: ${one.timesRealTime}× real time on one core; ${rt.coresUsed} cores used at real time (${(r['outputs'] as string[]).join(', ')})`);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
