/**
 * The REST API must not slow the media: glass-to-glass latency over WebRTC (RTMP x264 1280x720 + AAC source,
 * default server settings, headless Chromium) measured idle, then with 200 API requests a second (public list and
 * status, an admin's stats, sessions and history, Prometheus scrapes) during the measurement. Prints both medians
 * and their ratio (held to ≤ 1.10). Runs glass-to-glass.ts twice, alternating, `--runs` pairs (default 2).
 * With the default ladder a 2-core box is saturated by the source encoder, the ladder, Chromium and the server
 * together, so `--ladder none` adds the row where the question (does API work disturb media delivery?) can be
 * told apart from CPU starvation of the stand-in encoder and browser.
 * Usage: npm run bench:api-load [-- --rate 200 --seconds 30 --runs 3 --ladder default|none --row default|tuned]
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

const { values: opts } = parseArgs({
  options: {
    rate: { type: 'string', default: '200' },
    seconds: { type: 'string', default: '30' },
    runs: { type: 'string', default: '3' },
    ladder: { type: 'string', default: 'default' },
    row: { type: 'string', default: 'default' },
  },
});
/**
 * `default`: what a user gets. `tuned`: the latency table's tuned row (640x360 without audio, no ladder), where
 * WebRTC glass-to-glass is steady (tens of ms) and the box has CPU to spare, so the API's effect on the server's
 * media path shows instead of the stand-in encoder's and browser's CPU starvation.
 */
const TUNED = opts.row === 'tuned';
/** The server's ladder: `default` (what a user gets), or e.g. `none`. */
const LADDER = [...(opts.ladder === 'default' && !TUNED ? [] : ['--ladder', TUNED ? 'none' : opts.ladder!]), ...(TUNED ? ['--size', '640x360', '--audio', 'none'] : [])];

interface Result {
  latencyMs: { median: number; p95: number };
  apiLoad?: { requestsPerSecond: number; ok: number; failed: number };
}

function run(row: string, extra: string[]): Result {
  const r = spawnSync(process.execPath, ['--import', 'tsx', 'bench/glass-to-glass.ts', '--protocol', 'webrtc', '--loads', '1', '--seconds', opts.seconds!, '--row', row, ...LADDER, ...extra], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 10 * 60_000 });
  if (r.status !== 0) throw new Error(`glass-to-glass (${row}) exited with ${r.status}`);
  return JSON.parse(readFileSync(`bench/results/webrtc-${row}-latency.json`, 'utf8')) as Result;
}

const idle: number[] = [];
const loaded: number[] = [];
let served = '';
for (let i = 0; i < Number(opts.runs); i++) {
  idle.push(run('api-idle', []).latencyMs.median);
  const l = run('api-load', ['--api-load', opts.rate!]);
  loaded.push(l.latencyMs.median);
  served = `${l.apiLoad?.requestsPerSecond ?? 0} req/s, ${l.apiLoad?.ok ?? 0} ok, ${l.apiLoad?.failed ?? 0} failed`;
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const ratio = median(loaded) / median(idle);
console.log(
  `API load vs WebRTC glass-to-glass (${TUNED ? 'tuned: RTMP 640x360 without audio, ladder none' : `RTMP 1280x720 + AAC, ladder ${opts.ladder}`}): idle median ${median(idle)} ms [${idle.join(', ')}], ` +
    `with ${opts.rate} API req/s median ${median(loaded)} ms [${loaded.join(', ')}] (last run: ${served}); ratio ${ratio.toFixed(2)} (target ≤ 1.10)`,
);
