/**
 * ABR ladder speed (DESIGN.md "Figures": 1080p → 720/480/360 with libx264 veryfast ≥ 1.3× real time on ≤ 1
 * core). Runs the transcoder's own ffmpeg command (`ladderFfmpegArgs`, the default ladder planned for a 1080p30
 * source) on the 1080p30 test clip (x264 High with B-frames, 6 Mb/s, as OBS sends), reading a file instead of
 * the pipe and writing the rungs to /dev/null:
 *
 *   1. pinned to one core (taskset -c 0), as fast as it can: × real time = media seconds / wall seconds;
 *   2. at real time (-re), unpinned: CPU cores used = (user + system CPU seconds) / wall seconds.
 *
 * Usage: npm run bench:ladder [-- --loops 3]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { DEFAULT_LADDER, parseLadder, planRungs } from '../packages/server/src/transcode/ladder.js';
import { ladderFfmpegArgs } from '../packages/server/src/transcode/ladder-transcoder.js';
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

async function main(): Promise<void> {
  const clip = await ladderSourceClip();
  const rungs = planRungs(parseLadder(DEFAULT_LADDER), 1920, 1080);
  const args = ladderFfmpegArgs(rungs, 'libx264').map((a) => (/^pipe:[3-9]$/.test(a) ? '/dev/null' : a));
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
  const figures = {
    bench: 'abr-ladder-speed',
    source: '1080p30 x264 High with B-frames, 6 Mb/s (12 s test pattern, looped)',
    rungs: rungs.map((r) => `${r.width}x${r.height} ${r.bitrate / 1000} kb/s${r.maxFrameRate ? ` ≤${r.maxFrameRate} fps` : ''}`),
    encoder: 'libx264 veryfast zerolatency baseline, one ffmpeg: decode once, chained scaling',
    mediaSeconds: media,
    oneCore: { wallSeconds: pinned.wall, timesRealTime: Number((media / pinned.wall).toFixed(2)) },
    realTime: { wallSeconds: live.wall, cpuSeconds: Number((live.user + live.sys).toFixed(1)), coresUsed: Number(((live.user + live.sys) / live.wall).toFixed(2)) },
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/ladder-speed.json', JSON.stringify(figures, null, 2) + '\n');
  console.log(
    `ABR ladder 1080p30 → ${rungs.map((r) => r.name).join('/')} (libx264 veryfast): ${figures.oneCore.timesRealTime}× real time on one core; ` +
      `${figures.realTime.coresUsed} cores used at real time (${media} s of media)`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
