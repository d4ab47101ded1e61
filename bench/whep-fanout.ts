/**
 * WHEP fan-out (DESIGN.md "Figures"): one 2.5 Mb/s RTMP source, N non-browser WebRTC viewers in a separate
 * process, on loopback in a private network namespace. For each step prints the server's CPU (% of one core,
 * from /proc), CPU per viewer above the no-viewer baseline, and video packet loss seen by the viewers.
 * Usage: npm run bench:fanout [-- --steps 25,50,100,200,300 --window 10]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { freePort, runInLoopbackNamespace } from './bench-support.js';
import { publishTestPattern } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

runInLoopbackNamespace();

const { values: opts } = parseArgs({ options: { steps: { type: 'string', default: '25,50,100,200,300' }, window: { type: 'string', default: '10' } } });
const STEPS = opts.steps!.split(',').map(Number);
const WINDOW_S = Number(opts.window);
const TICKS = 100; // USER_HZ

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-fanout-'));
  const [httpPort, rtmpPort] = [await freePort(), await freePort()];
  const server = spawn(process.execPath, ['packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--data-dir', dataDir, '--publish-auth', 'open', '--log-level', 'error', '--webrtc-bind-address', '127.0.0.1', '--webrtc-port-min', '41000', '--webrtc-port-max', '41999'], { stdio: ['ignore', 'ignore', 'inherit'] });
  process.once('exit', () => server.kill('SIGKILL'));
  const base = `http://127.0.0.1:${httpPort}`;
  const rows: { viewers: number; connected: number; serverCpuPct: number; perViewerPct: number; lossPct: number }[] = [];
  let publisher: ReturnType<typeof publishTestPattern> | undefined;
  const clients = spawn(process.execPath, ['--import', 'tsx', 'bench/whep-fanout-clients.ts', `${base}/whep/fan`], { stdio: ['pipe', 'pipe', 'inherit'] });
  process.once('exit', () => clients.kill('SIGKILL'));
  const lines = createInterface({ input: clients.stdout });
  const replies: string[] = [];
  lines.on('line', (l) => replies.push(l));
  const ask = async (cmd: string): Promise<Record<string, number>> => {
    replies.length = 0;
    clients.stdin.write(cmd + '\n');
    const line = await waitUntil(`clients to answer "${cmd}"`, () => replies.shift(), 300_000, 20);
    return JSON.parse(line) as Record<string, number>;
  };
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    publisher = publishTestPattern(`rtmp://127.0.0.1:${rtmpPort}/live/fan`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${base}/api/v1/streams/fan`)).json()) as { webrtc: boolean }).webrtc, 30_000, 200);
    const measure = async (): Promise<{ cpu: number; stats: Record<string, number> }> => {
      await ask('stats');
      const t0 = cpuTicks(server.pid!);
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      const stats = await ask('stats');
      return { cpu: ((cpuTicks(server.pid!) - t0) / TICKS / WINDOW_S) * 100, stats };
    };
    const baseline = await measure();
    console.log(`baseline (no viewers): server ${baseline.cpu.toFixed(1)} % of a core`);
    for (const n of STEPS) {
      await ask(String(n));
      await new Promise((r) => setTimeout(r, 3000));
      const { cpu, stats } = await measure();
      const loss = stats['expected'] ? (1 - stats['received']! / stats['expected']) * 100 : 100;
      const row = { viewers: n, connected: stats['connected']!, serverCpuPct: cpu, perViewerPct: (cpu - baseline.cpu) / n, lossPct: Math.max(0, loss) };
      rows.push(row);
      console.log(`${n} viewers (${row.connected} connected): server ${cpu.toFixed(1)} % of a core, ${row.perViewerPct.toFixed(3)} % per viewer, loss ${row.lossPct.toFixed(2)} %`);
      if (row.lossPct > 5) break;
    }
  } finally {
    // "quit" closes every viewer and exits without a reply; give it a few seconds, then make sure.
    clients.stdin.write('quit\n');
    await Promise.race([new Promise((r) => clients.once('exit', r)), new Promise((r) => setTimeout(r, 10_000))]);
    clients.kill('SIGKILL');
    await publisher?.stop();
    server.kill('SIGTERM');
    if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
  const held = rows.filter((r) => r.lossPct < 0.5 && r.connected === r.viewers).pop();
  const summary = { bench: 'whep-fanout', source: 'x264 zerolatency 640x360@30, 2.5 Mb/s CBR, RTMP', rows, heldWithUnderHalfPercentLoss: held?.viewers ?? 0 };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync('bench/results/whep-fanout.json', JSON.stringify(summary, null, 2) + '\n');
  console.log(`largest step held with < 0.5 % loss: ${summary.heldWithUnderHalfPercentLoss} viewers`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
