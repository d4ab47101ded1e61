/**
 * WHEP fan-out (DESIGN.md "Figures"): one 2.5 Mb/s RTMP source, N non-browser WebRTC viewers in a separate
 * process, on loopback in a private network namespace. For each step prints the server's CPU (% of one core,
 * from /proc), CPU per viewer above the no-viewer baseline, and video packet loss seen by the viewers.
 * Every viewer comes from 127.0.0.1, so the per-address offer rate limit is lifted (one address stands for many).
 * The server's CPU counts its peer host processes (WHEP viewers' connections, one per core by default), and each
 * step prints how it splits between the main process and the hosts.
 * With `--transport tcp` every viewer comes over the server's ICE-TCP candidate (RFC 6544) instead of UDP;
 * `--kbps 600` publishes a 0.6 Mb/s source; `--processes N` sets the server's `webrtcProcesses` (default: its own).
 * Usage: npm run bench:fanout [-- --steps 25,50,100,200,300 --window 10 --transport udp|tcp --kbps 2500 --processes N]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { freePort, runInLoopbackNamespace } from './bench-support.js';
import { publishClip, publishTestPattern } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';
import { childProcesses, cpuTicks } from '../packages/server/test/support/proc.js';

runInLoopbackNamespace();

const { values: opts } = parseArgs({ options: { steps: { type: 'string', default: '25,50,100,200,300' }, window: { type: 'string', default: '10' }, 'client-processes': { type: 'string', default: '2' }, transport: { type: 'string', default: 'udp' }, kbps: { type: 'string', default: '2500' }, processes: { type: 'string' } } });
const KBPS = Number(opts.kbps);
/** `tcp`: every viewer comes over the ICE-TCP port (through a client-side shim, ice-tcp-shim.ts), as behind a UDP-blocking network. */
const TRANSPORT = opts.transport === 'tcp' ? 'tcp' : 'udp';
const STEPS = opts.steps!.split(',').map(Number);
const WINDOW_S = Number(opts.window);
/** Viewers are spread over this many processes (each one decrypts its viewers' SRTP on one JS thread). */
const CLIENT_PROCESSES = Math.max(1, Number(opts['client-processes']));
const TICKS = 100; // USER_HZ

/** UDP counters of this network namespace (/proc/net/snmp): datagrams sent, and datagrams the kernel dropped on receive. */
function udpCounters(): { out: number; dropped: number } {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp: '));
  const names = lines[0]!.split(' ');
  const values = lines[1]!.split(' ').map(Number);
  const get = (name: string): number => values[names.indexOf(name)] ?? 0;
  return { out: get('OutDatagrams'), dropped: get('InErrors') };
}

/** CPU ticks of the server's main process and of each of its children, by PID. */
function serverTicks(pid: number): Map<number, number> {
  return new Map([pid, ...childProcesses(pid)].map((p) => [p, cpuTicks(p)]));
}

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-fanout-'));
  const [httpPort, rtmpPort] = [await freePort(), await freePort()];
  const server = spawn(process.execPath, ['packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--data-dir', dataDir, '--publish-auth', 'open', '--log-level', process.env['FANOUT_LOG_LEVEL'] ?? 'error', '--webrtc-bind-address', '127.0.0.1', '--webrtc-port-min', '41000', '--webrtc-port-max', '41999', '--ladder', 'none', '--rate-limit-offers', '0', ...(opts.processes !== undefined ? ['--webrtc-processes', opts.processes] : [])], { stdio: ['ignore', process.env['FANOUT_LOG_LEVEL'] ? 'inherit' : 'ignore', 'inherit'] });
  process.once('exit', () => server.kill('SIGKILL'));
  const base = `http://127.0.0.1:${httpPort}`;
  const rows: { viewers: number; connected: number; serverCpuPct: number; mainCpuPct: number; hostsCpuPct: number[]; perViewerPct: number; viewersCpuPct: number; datagramsPerViewerPerSecond: number; probeVideoPacketsPerSecond: number; serverDroppedFrames: number; deliveredPct: number; probeLossPct: number; kernelLossPct: number; lossPct: number }[] = [];
  let publisher: ReturnType<typeof publishTestPattern> | undefined;
  const clients = Array.from({ length: CLIENT_PROCESSES }, () => {
    // The viewers run at a lower priority (nice 10): they stand in for hundreds of other machines, and on this
    // one they must not take CPU from the server being measured. `nice` execs, so the PID stays the viewer's.
    const child = spawn('nice', ['-n', '10', process.execPath, '--import', 'tsx', 'bench/whep-fanout-clients.ts', `${base}/whep/fan`, '10', TRANSPORT], { stdio: ['pipe', 'pipe', 'inherit'] });
    process.once('exit', () => child.kill('SIGKILL'));
    const replies: string[] = [];
    createInterface({ input: child.stdout }).on('line', (l) => replies.push(l));
    return { child, replies };
  });
  /** Sends `cmd(i)` to client process i and sums the numeric fields of their JSON answers. */
  const ask = async (cmd: (i: number) => string): Promise<Record<string, number>> => {
    const answers = await Promise.all(
      clients.map(async ({ child, replies }, i) => {
        replies.length = 0;
        child.stdin.write(cmd(i) + '\n');
        const line = await waitUntil(`clients to answer "${cmd(i)}"`, () => replies.shift(), 300_000, 20);
        const answer = JSON.parse(line) as Record<string, number | string>;
        if (typeof answer['error'] === 'string') console.log(`viewer process ${i}: ${answer['error']}`);
        return answer as Record<string, number>;
      }),
    );
    const sum: Record<string, number> = {};
    for (const a of answers) for (const [k, v] of Object.entries(a)) sum[k] = (sum[k] ?? 0) + (typeof v === 'number' ? v : 0);
    return sum;
  };
  /** Viewer count for client process i when n viewers are wanted in all. */
  const share = (n: number, i: number): number => Math.floor(n / CLIENT_PROCESSES) + (i < n % CLIENT_PROCESSES ? 1 : 0);
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    // Encode the source once, then publish it looped and stream-copied: a live x264 encoder on the same 2 cores
    // would slow down (and send less) exactly when the viewers load the machine.
    const clip = join(dataDir, 'source.flv');
    const encode = publishTestPattern(clip, { gopSeconds: 1, zerolatency: true, size: '640x360', seconds: 30, realtime: false, videoKbps: KBPS });
    await waitUntil('the source clip to be encoded', () => encode.child.exitCode !== null || undefined, 120_000, 100);
    if (encode.child.exitCode !== 0) throw new Error(`encoding the source failed: ${encode.stderr()}`);
    publisher = publishClip(`rtmp://127.0.0.1:${rtmpPort}/live/fan`, clip);
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${base}/api/v1/streams/fan`)).json()) as { webrtc: boolean }).webrtc, 30_000, 200);
    const measure = async (): Promise<{ cpu: number; mainCpu: number; hostsCpu: number[]; clientCpu: number; stats: Record<string, number>; datagramsPerSecond: number; kernelLossPct: number; serverDroppedFrames: number }> => {
      const framesDropped = async (): Promise<number> => ((await (await fetch(`${base}/api/v1/streams/fan`)).json()) as { webrtcStats: { framesDropped: number } }).webrtcStats.framesDropped;
      const dropped0 = await framesDropped();
      const before = await ask(() => 'stats');
      const t0 = serverTicks(server.pid!);
      const udp0 = udpCounters();
      await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
      const t1 = serverTicks(server.pid!);
      const stats = await ask(() => 'stats');
      const udp1 = udpCounters();
      const serverDroppedFrames = (await framesDropped()) - dropped0;
      const pct = (ticks: number): number => (ticks / TICKS / WINDOW_S) * 100;
      const out = udp1.out - udp0.out;
      // A process that started during the window counts from 0; one that ended counts up to its last reading.
      const used = (p: number): number => Math.max(0, (t1.get(p) ?? t0.get(p) ?? 0) - (t0.get(p) ?? 0));
      const pids = [...new Set([...t0.keys(), ...t1.keys()])];
      const hostsCpu = pids.filter((p) => p !== server.pid).map((p) => pct(used(p)));
      return { serverDroppedFrames, cpu: pct(pids.reduce((sum, p) => sum + used(p), 0)), mainCpu: pct(used(server.pid!)), hostsCpu, clientCpu: pct(stats['cpuTicks']! - before['cpuTicks']!), stats, datagramsPerSecond: out / WINDOW_S, kernelLossPct: out > 0 ? ((udp1.dropped - udp0.dropped) / out) * 100 : 0 };
    };
    const baseline = await measure();
    console.log(`viewers over ${TRANSPORT.toUpperCase()}; baseline (no viewers): server ${baseline.cpu.toFixed(1)} % of a core`);
    let referenceRate: number | undefined;
    for (const n of [1, ...STEPS.filter((s) => s > 1)]) {
      await ask((i) => String(share(n, i)));
      await new Promise((r) => setTimeout(r, 3000));
      const { cpu, mainCpu, hostsCpu, clientCpu, stats, datagramsPerSecond, kernelLossPct, serverDroppedFrames } = await measure();
      const probeLoss = stats['expected'] ? Math.max(0, (1 - stats['received']! / stats['expected']) * 100) : 100;
      const row = { viewers: n, connected: stats['connected']!, serverCpuPct: cpu, mainCpuPct: mainCpu, hostsCpuPct: hostsCpu, perViewerPct: (cpu - baseline.cpu) / n, viewersCpuPct: clientCpu, datagramsPerViewerPerSecond: datagramsPerSecond / n, probeVideoPacketsPerSecond: stats['received']! / stats['probes']! / WINDOW_S, serverDroppedFrames, probeLossPct: probeLoss, kernelLossPct, lossPct: Math.max(probeLoss, kernelLossPct) };
      referenceRate ??= row.probeVideoPacketsPerSecond;
      const delivered = (row.probeVideoPacketsPerSecond / referenceRate) * 100;
      rows.push({ ...row, deliveredPct: delivered });
      console.log(
        `${n} viewers (${row.connected} connected): server ${cpu.toFixed(1)} % of a core (main ${mainCpu.toFixed(1)}${hostsCpu.length > 0 ? `, hosts ${hostsCpu.map((c) => c.toFixed(1)).join(' + ')}` : ''}), ${row.perViewerPct.toFixed(3)} % per viewer, ${row.datagramsPerViewerPerSecond.toFixed(0)} datagrams/s per viewer (probes got ${row.probeVideoPacketsPerSecond.toFixed(0)} video packets/s, ${delivered.toFixed(1)} % of the 1-viewer rate, ${serverDroppedFrames} frames dropped by the server); ` +
          `viewer processes ${clientCpu.toFixed(0)} %; loss ${probeLoss.toFixed(2)} % (probe viewers), ${kernelLossPct.toFixed(2)} % (UDP drops, all viewers)`,
      );
      if (row.lossPct > 5) break;
    }
  } finally {
    // "quit" closes every viewer and exits without a reply; give it a few seconds, then make sure.
    await Promise.all(
      clients.map(async ({ child }) => {
        child.stdin.write('quit\n');
        await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 10_000))]);
        child.kill('SIGKILL');
      }),
    );
    await publisher?.stop();
    server.kill('SIGTERM');
    if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
  // Held: every viewer connected, < 0.5 % loss, and the whole stream still sent: a server that falls behind real
  // time drops whole frames before packetizing (counted in its stats), which sequence numbers would not show.
  const held = rows.filter((r) => r.lossPct < 0.5 && r.connected === r.viewers && r.serverDroppedFrames === 0).pop();
  const summary = { bench: 'whep-fanout', transport: TRANSPORT, source: `x264 zerolatency 640x360@30 1 s GOP, ${KBPS / 1000} Mb/s CBR + AAC, pre-encoded, RTMP stream copy`, clientProcesses: CLIENT_PROCESSES, rows, heldWithUnderHalfPercentLoss: held?.viewers ?? 0 };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/whep-fanout${TRANSPORT === 'tcp' ? '-tcp' : ''}${KBPS !== 2500 ? `-${KBPS}k` : ''}.json`, JSON.stringify(summary, null, 2) + '\n');
  console.log(`largest step held with < 0.5 % loss: ${summary.heldWithUnderHalfPercentLoss} viewers`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
