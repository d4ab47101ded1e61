/**
 * CPU cost of recording (issue 13; target ≤ 2 % of one core for a 6 Mb/s stream, as nothing is re-encoded): one
 * stream of a 1080p30 x264 6 Mb/s + AAC clip (stream-copied over RTMP in a loop, so the publisher costs little),
 * the server on its defaults except `--ladder none` (the ladder's encoders are not the recorder's cost). The
 * server's CPU (from /proc) is read over alternating windows with recording off and on (started and stopped over
 * the API, `POST|DELETE /api/v1/streams/<name>/recording`); the figure is the difference of the medians.
 * Usage: npm run bench:record-cost [-- --window 15 --rounds 3]
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuTicks, endServer, freePort } from './bench-support.js';
import { ladderSourceClip, runFfmpeg } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

const { values: opts } = parseArgs({ options: { window: { type: 'string', default: '15' }, rounds: { type: 'string', default: '3' } } });
const WINDOW_S = Number(opts.window);
const ROUNDS = Number(opts.rounds);
const TICKS = 100; // USER_HZ


const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function main(): Promise<void> {
  const clip = await ladderSourceClip({ bFrames: false });
  const dir = mkdtempSync(join(tmpdir(), 'glasscast-bench-record-'));
  const [httpPort, rtmpPort, srtPort] = [await freePort(), await freePort(), await freePort()];
  const server = spawn(process.execPath, ['packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--srt-port', String(srtPort), '--data-dir', join(dir, 'data'), '--publish-auth', 'open', '--ladder', 'none', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.once('exit', () => server.kill('SIGKILL'));
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const base = `http://127.0.0.1:${httpPort}`;
  let publisher: ReturnType<typeof runFfmpeg> | undefined;
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    publisher = runFfmpeg(['-re', '-stream_loop', '-1', '-i', clip, '-c', 'copy', '-f', 'flv', `rtmp://127.0.0.1:${rtmpPort}/live/bench`]);
    const token = /API token:\s+(\S+)/.exec(out)?.[1] ?? '';
    const call = async (method: string, path: string): Promise<Record<string, unknown>> => {
      const res = await fetch(`${base}${path}`, { method, headers: { authorization: `Bearer ${token}` } });
      if (res.status >= 300) throw new Error(`${method} ${path} → ${res.status} ${await res.text()}`);
      return (await res.json()) as Record<string, unknown>;
    };
    await waitUntil('the stream', async () => ((await (await fetch(`${base}/api/v1/streams/bench`)).json()) as { playable: boolean }).playable, 30_000, 250);
    await new Promise((r) => setTimeout(r, 3000));
    const off: number[] = [];
    const on: number[] = [];
    let recordedBytes = 0;
    let recordedMs = 0;
    const window = async (): Promise<number> => {
      const t0 = performance.now();
      const c0 = cpuTicks(server.pid!);
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      return ((cpuTicks(server.pid!) - c0) / TICKS / ((performance.now() - t0) / 1000)) * 100;
    };
    for (let i = 0; i < ROUNDS; i++) {
      off.push(await window());
      await call('POST', '/api/v1/streams/bench/recording');
      await new Promise((r) => setTimeout(r, 3000)); // the recording starts at the next segment
      on.push(await window());
      const r = await call('DELETE', '/api/v1/streams/bench/recording');
      recordedBytes += Number(r['sizeBytes']);
      recordedMs += Number(r['durationMs']);
    }
    const costPct = median(on) - median(off);
    const mbps = (recordedBytes * 8) / (recordedMs / 1000) / 1e6;
    const figures = {
      bench: 'record-cost',
      source: '1920x1080 30 fps x264 6 Mb/s (no B-frames) + AAC over RTMP, stream-copied',
      server: 'defaults, --ladder none',
      windowSeconds: WINDOW_S,
      rounds: ROUNDS,
      cpuPercentOff: off.map((x) => Number(x.toFixed(1))),
      cpuPercentOn: on.map((x) => Number(x.toFixed(1))),
      recordingCostPercentOfOneCore: Number(costPct.toFixed(2)),
      recordedMbps: Number(mbps.toFixed(2)),
    };
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/record-cost.json', JSON.stringify(figures, null, 2) + '\n');
    console.log(
      `Recording a ${figures.recordedMbps} Mb/s stream: server CPU off ${figures.cpuPercentOff.join(' / ')} %, on ${figures.cpuPercentOn.join(' / ')} % of one core ` +
        `→ recording costs ${figures.recordingCostPercentOfOneCore} % of one core (difference of medians, ${ROUNDS} × ${WINDOW_S} s each)`,
    );
  } finally {
    await publisher?.stop();
    await endServer(server, dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
