/**
 * LL-HLS capacity (DESIGN.md "Figures"): one 1280x720 x264 + AAC source (pre-encoded, published looped by stream
 * copy so no encoder competes for the 2 cores), the server on its defaults, and simulated hls.js viewers in
 * low-latency mode (test/support/llhls-viewers.ts: blocking delta reloads, every part, the hinted part beside each reload)
 * spread over processes, on loopback in a private network namespace. Steps up the viewer count and prints for each
 * step: the server's CPU (% of one core, /proc) and per viewer above the no-viewer baseline, blocking playlist
 * wait p50/p99 (request → answer) and how long after its part was complete the answer came (p50/p99), part fetch
 * p99, parts received per viewer per second against the parts made, errors, and the viewer processes' CPU.
 *
 * "Playlist wait after the part exists" is, for each blocking reload, its answer's arrival at the viewer minus the
 * moment its part was complete at Glasscast (a reference follower in this process, on its own connection, notes
 * when each part's last byte arrived). A step is held when there are no errors and that wait's p99 is at most one
 * part duration + 50 ms (through nginx: + 150 ms, and ≥ 95 % answered from its cache), and every viewer received
 * ≥ 95 % of the parts made. It stops at the first step not held.
 *
 * Usage: npm run bench:llhls-load [-- --steps 250,500,1000,2000 --window 15 --client-processes 3 --nginx]
 * `--nginx` puts the documented nginx cache tier (deploy/nginx/glasscast-llhls.conf) between the viewers and
 * Glasscast and prints the share of requests the cache answered.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { cpuTicks, freePort, runInLoopbackNamespace } from './bench-support.js';
import { publishClip, publishTestPattern } from '../packages/server/test/support/ffmpeg.js';
import { PartClock } from '../packages/server/test/support/llhls-viewers.js';
import { cacheFigures, startNginxTier, type NginxTier } from '../packages/server/test/support/nginx.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

runInLoopbackNamespace();

const { values: opts } = parseArgs({
  options: {
    steps: { type: 'string', default: '250,500,1000,2000' },
    window: { type: 'string', default: '15' },
    'client-processes': { type: 'string', default: '3' },
    'part-target-ms': { type: 'string' },
    ladder: { type: 'string' },
    nginx: { type: 'boolean', default: false },
  },
});
const STEPS = opts.steps!.split(',').map(Number);
const WINDOW_S = Number(opts.window);
const CLIENT_PROCESSES = Math.max(1, Number(opts['client-processes']));
const TICKS = 100; // USER_HZ

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
}

interface Row {
  viewers: number;
  serverCpuPct: number;
  perViewerPct: number;
  playlistWaitMs: { p50: number; p99: number };
  afterPartMs: { p50: number; p99: number };
  /** Blocking playlist answers: arrival at the viewer minus the moment its part was complete at the origin. */
  afterPartExistedMs: { p50: number; p99: number };
  cache?: { hitPct: number; originRequestsPerObject: number };
  partFetchP99Ms: number;
  partsPerViewerPerSecond: number;
  partsMadePerSecond: number;
  errors: Record<string, number>;
  viewerProcessesCpuPct: number;
  held: boolean;
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-llhls-load-'));
  const [httpPort, rtmpPort] = [await freePort(), await freePort()];
  const server = spawn(
    process.execPath,
    [...(process.env['LLHLS_LOAD_PROFILE'] ? ['--cpu-prof', '--cpu-prof-dir', process.env['LLHLS_LOAD_PROFILE']] : []), 'packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--srt-port', String(await freePort()), '--webrtc-tcp-port', '0', '--data-dir', dataDir, '--publish-auth', 'open', '--log-level', 'error', ...(opts['part-target-ms'] ? ['--part-target-ms', opts['part-target-ms']] : []), ...(opts.ladder ? ['--ladder', opts.ladder] : [])],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  process.once('exit', () => server.kill('SIGKILL'));
  const base = `http://127.0.0.1:${httpPort}`;
  const nginx: NginxTier | undefined = opts.nginx ? await startNginxTier(httpPort, await freePort()) : undefined;
  const viewerBase = nginx?.url ?? base;
  const clock = new PartClock(base, 'load');
  const rows: Row[] = [];
  let publisher: ReturnType<typeof publishClip> | undefined;
  const clients = Array.from({ length: CLIENT_PROCESSES }, () => {
    // The viewers run at a lower priority (nice 10): they stand in for a thousand other machines, and on this one
    // they must not take CPU from the server being measured. `nice` execs, so the PID stays the viewers'.
    const child = spawn('nice', ['-n', '10', process.execPath, '--import', 'tsx', 'packages/server/test/support/llhls-viewers-process.ts', viewerBase, 'load'], { stdio: ['pipe', 'pipe', 'inherit'] });
    process.once('exit', () => child.kill('SIGKILL'));
    const replies: string[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => replies.push(l));
    return { child, replies };
  });
  const ask = async (cmd: (i: number) => string): Promise<Record<string, unknown>[]> =>
    Promise.all(
      clients.map(async ({ child, replies }, i) => {
        replies.length = 0;
        child.stdin.write(cmd(i) + '\n');
        const line = await waitUntil(`viewers to answer "${cmd(i)}"`, () => replies.shift(), 60_000, 20);
        return JSON.parse(line) as Record<string, unknown>;
      }),
    );
  const share = (n: number, i: number): number => Math.floor(n / CLIENT_PROCESSES) + (i < n % CLIENT_PROCESSES ? 1 : 0);
  /** Parts made so far: the number of the preload-hinted part (parts are numbered from 0). */
  const partsMade = async (): Promise<number> => Number(/part(\d+)\.m4s"\s*$/m.exec(await (await fetch(`${base}/hls/load/src/media.m3u8`)).text())?.[1] ?? 0);
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    const clip = join(dataDir, 'source.flv');
    const encode = publishTestPattern(clip, { gopSeconds: 2, zerolatency: true, size: '1280x720', seconds: 30, realtime: false });
    await waitUntil('the source clip to be encoded', () => encode.child.exitCode !== null || undefined, 180_000, 100);
    if (encode.child.exitCode !== 0) throw new Error(`encoding the source failed: ${encode.stderr()}`);
    publisher = publishClip(`rtmp://127.0.0.1:${rtmpPort}/live/load`, clip);
    await waitUntil('the stream to be playable', async () => ((await (await fetch(`${base}/api/v1/streams/load`)).json()) as { playable: boolean }).playable, 30_000, 200);
    clock.start();
    await new Promise((r) => setTimeout(r, 3000));
    const measure = async (): Promise<{ cpu: number; clientCpu: number; answers: Record<string, unknown>[]; partsPerSecond: number; cache: ReturnType<typeof cacheFigures> | undefined }> => {
      const logBefore = nginx?.accessLog().length ?? 0;
      const before = await ask(() => 'stats');
      const t0 = cpuTicks(server.pid!);
      const p0 = await partsMade();
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      const answers = await ask(() => 'stats');
      const p1 = await partsMade();
      const pct = (ticks: number): number => (ticks / TICKS / WINDOW_S) * 100;
      const sum = (xs: Record<string, unknown>[]): number => xs.reduce((n, a) => n + (a['cpuTicks'] as number), 0);
      await new Promise((r) => setTimeout(r, 1200)); // nginx flushes its log every second
      const cache = nginx ? cacheFigures(nginx.accessLog().slice(logBefore)) : undefined;
      return { cpu: pct(cpuTicks(server.pid!) - t0), clientCpu: pct(sum(answers) - sum(before)), answers, partsPerSecond: (p1 - p0) / WINDOW_S, cache };
    };
    const baseline = await measure();
    console.log(`baseline (no viewers): server ${baseline.cpu.toFixed(1)} % of a core; ${baseline.partsPerSecond.toFixed(2)} parts/s made`);
    for (const n of STEPS) {
      await ask((i) => String(share(n, i)));
      await new Promise((r) => setTimeout(r, 5000)); // every viewer started (2 s ramp) and settled
      const { cpu, clientCpu, answers, partsPerSecond, cache } = await measure();
      const existed: number[] = [];
      for (const a of answers) {
        for (const [part, at] of a['answers'] as [number, number][]) {
          const complete = clock.completedAt(part);
          if (complete !== undefined) existed.push(at - complete);
        }
      }
      const all = (key: string): number[] => answers.flatMap((a) => a[key] as number[]);
      const errors: Record<string, number> = {};
      for (const a of answers) for (const [k, v] of Object.entries(a['errors'] as Record<string, number>)) errors[k] = (errors[k] ?? 0) + v;
      const parts = answers.reduce((s, a) => s + (a['parts'] as number), 0);
      const waits = all('playlistWaits');
      const after = all('afterPart');
      const partDurationMs = 1000 / partsPerSecond;
      const row: Row = {
        viewers: n,
        serverCpuPct: cpu,
        perViewerPct: (cpu - baseline.cpu) / n,
        playlistWaitMs: { p50: quantile(waits, 0.5), p99: quantile(waits, 0.99) },
        afterPartMs: { p50: quantile(after, 0.5), p99: quantile(after, 0.99) },
        afterPartExistedMs: { p50: quantile(existed, 0.5), p99: quantile(existed, 0.99) },
        cache: cache && { hitPct: (cache.hits / Math.max(1, cache.requests)) * 100, originRequestsPerObject: cache.originRequests / Math.max(1, cache.objects) },
        partFetchP99Ms: quantile(all('partFetches'), 0.99),
        partsPerViewerPerSecond: parts / n / WINDOW_S,
        partsMadePerSecond: partsPerSecond,
        errors,
        viewerProcessesCpuPct: clientCpu,
        held: false,
      };
      const errorCount = Object.values(errors).reduce((a, b) => a + b, 0);
      // Through nginx the cache's own lock wait is part of the answer's delay: 100 ms more are allowed, and the
      // cache must answer ≥ 95 %. Either way every viewer must keep up with the parts made.
      row.held =
        errorCount === 0 &&
        row.partsPerViewerPerSecond >= 0.95 * partsPerSecond &&
        row.afterPartExistedMs.p99 <= partDurationMs + 50 + (row.cache ? 100 : 0) &&
        (!row.cache || row.cache.hitPct >= 95);
      rows.push(row);
      const f = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');
      console.log(
        `${n} viewers: server ${cpu.toFixed(1)} % of a core, ${row.perViewerPct.toFixed(3)} % per viewer; playlist wait p50 ${f(row.playlistWaitMs.p50)} ms, p99 ${f(row.playlistWaitMs.p99)} ms ` +
          `(part ${partDurationMs.toFixed(0)} ms); answer after its part existed p50 ${f(row.afterPartExistedMs.p50)} ms, p99 ${f(row.afterPartExistedMs.p99)} ms; part fetch p99 ${f(row.partFetchP99Ms)} ms; ` +
          (row.cache ? `nginx: ${row.cache.hitPct.toFixed(1)} % from its cache, ${row.cache.originRequestsPerObject.toFixed(2)} origin requests per object; ` : '') +
          `parts ${row.partsPerViewerPerSecond.toFixed(2)}/s per viewer of ${partsPerSecond.toFixed(2)}/s made; errors ${errorCount}${errorCount ? ` ${JSON.stringify(errors)}` : ''}; ` +
          `viewer processes ${clientCpu.toFixed(0)} % of a core; ${row.held ? 'held' : 'NOT held'}`,
      );
      if (!row.held) break;
    }
  } finally {
    await Promise.all(
      clients.map(async ({ child }) => {
        child.stdin.write('quit\n');
        await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
        child.kill('SIGKILL');
      }),
    );
    clock.stop();
    await nginx?.stop();
    await publisher?.stop();
    server.kill('SIGTERM');
    if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
  const held = rows.filter((r) => r.held).pop();
  const broke = rows.find((r) => !r.held);
  const summary = { bench: nginx ? 'llhls-load through the nginx tier' : 'llhls-load', source: 'x264 zerolatency 1280x720@30 2 s GOP, 2.5 Mb/s CBR + AAC 160 kb/s, pre-encoded, RTMP stream copy', server: 'defaults', clientProcesses: CLIENT_PROCESSES, rows, held: held?.viewers ?? 0, brokeAt: broke?.viewers };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/llhls-load${nginx ? '-nginx' : ''}.json`, JSON.stringify(summary, null, 2) + '\n');
  console.log(`largest step held: ${summary.held} viewers${broke ? `; broke at ${broke.viewers}` : ''}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
