/**
 * SRT listener CPU (issue 12): N callers at once, each ffmpeg (libsrt) sending a 6 Mb/s 1280x720 x264 + AAC
 * MPEG-TS (pre-encoded once, sent with `-c copy` in a loop, so the callers cost little), 200 ms latency, to one
 * Glasscast. Prints the server's CPU (% of one core, from /proc) with the callers live — handshake, ACK/NAK,
 * reassembly, TS demux, the core and LL-HLS packaging of every stream — per caller and per Mb/s received, and
 * the SRT figures the server reports (packets received, lost, retransmitted, dropped).
 *
 * The server runs its defaults except `--ladder none`, and the source has no B-frames: ten 720p ABR ladders (or
 * B-frame-free copies for WebRTC) cannot run on two cores (they would shed, see transcode/video-job.ts) and are not
 * the listener's cost. The AAC → Opus audio bridge of each stream still runs (one small ffmpeg each).
 * Usage: npm run bench:srt-listener [-- --callers 10 --mbps 6 --window 20]
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuTicks, endServer, freePort } from './bench-support.js';
import { FFMPEG, runFfmpeg, type FfmpegProcess } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

const { values: opts } = parseArgs({ options: { callers: { type: 'string', default: '10' }, mbps: { type: 'string', default: '6' }, window: { type: 'string', default: '20' } } });
const CALLERS = Number(opts.callers);
const MBPS = Number(opts.mbps);
const WINDOW_S = Number(opts.window);
const TICKS = 100; // USER_HZ

/** Datagrams the kernel dropped because a UDP receive buffer was full (/proc/net/snmp RcvbufErrors). */
function udpReceiveBufferDrops(): number {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp: '));
  return Number(lines[1]!.split(' ')[lines[0]!.split(' ').indexOf('RcvbufErrors')]);
}


async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'glasscast-bench-srt-'));
  const clip = join(dir, 'source.ts');
  console.log(`encoding a 10 s ${MBPS} Mb/s 1280x720 source…`);
  const encode = spawnSync(FFMPEG, [
    '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '10',
    '-c:v', 'libx264', '-preset', 'veryfast', '-bf', '0', '-g', '30', '-b:v', `${MBPS}M`, '-minrate', `${MBPS}M`, '-maxrate', `${MBPS}M`, '-bufsize', `${MBPS}M`, '-x264-params', 'nal-hrd=cbr',
    '-c:a', 'aac', '-b:a', '128k', '-f', 'mpegts', clip,
  ]);
  if (encode.status !== 0) throw new Error(encode.stderr.toString());

  const [httpPort, rtmpPort, srtPort] = [await freePort(), await freePort(), await freePort()];
  const server = spawn(process.execPath, [...(process.env['BENCH_NODE_ARGS'] ?? '').split(' ').filter(Boolean), 'packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--srt-port', String(srtPort), '--data-dir', join(dir, 'data'), '--publish-auth', 'open', '--ladder', 'none', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.once('exit', () => server.kill('SIGKILL'));
  let serverOut = '';
  server.stdout!.on('data', (d: Buffer) => (serverOut += d.toString()));
  const base = `http://127.0.0.1:${httpPort}`;
  const callers: FfmpegProcess[] = [];
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    const token = /API token:\s+(\S+)/.exec(serverOut)?.[1] ?? '';
    const idleStart = cpuTicks(server.pid!);
    await new Promise((r) => setTimeout(r, 5000));
    const idlePct = ((cpuTicks(server.pid!) - idleStart) / TICKS / 5) * 100;
    for (let i = 0; i < CALLERS; i++) {
      callers.push(runFfmpeg(['-re', '-stream_loop', '-1', '-i', clip, '-c', 'copy', '-f', 'mpegts', `srt://127.0.0.1:${srtPort}?mode=caller&latency=200000&pkt_size=1316&streamid=${encodeURIComponent(`#!::r=live/cam${i},m=publish`)}`]));
    }
    /** Streams whose SRT session is up (open publishing: they are not configured streams). */
    const live = async (): Promise<number> => {
      const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      return text.match(/^glasscast_srt_latency_seconds\{stream="cam\d+"\}/gm)?.length ?? 0;
    };
    await waitUntil(`${CALLERS} live streams`, async () => (await live()) === CALLERS, 30_000, 250).catch((err: unknown) => {
      throw new Error(`${String(err)}\n${callers.map((c) => c.stderr()).join('\n').slice(0, 2000)}`);
    });
    await new Promise((r) => setTimeout(r, 5000)); // warm-up: every stream's muxer running
    const metrics = async (): Promise<Map<string, number>> => {
      const text = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${token}` } })).text();
      const sums = new Map<string, number>();
      for (const [, kind, value] of text.matchAll(/^glasscast_srt_packets_total\{stream="[^"]+",kind="(\w+)"\} (\d+)/gm)) sums.set(kind!, (sums.get(kind!) ?? 0) + Number(value));
      return sums;
    };
    const before = await metrics();
    const kernelDrops0 = udpReceiveBufferDrops();
    const t0 = performance.now();
    const c0 = cpuTicks(server.pid!);
    await new Promise((r) => setTimeout(r, WINDOW_S * 1000));
    const cpuPct = ((cpuTicks(server.pid!) - c0) / TICKS / ((performance.now() - t0) / 1000)) * 100;
    const after = await metrics();
    const kernelDrops = udpReceiveBufferDrops() - kernelDrops0;
    const delta = (k: string): number => (after.get(k) ?? 0) - (before.get(k) ?? 0);
    const stillLive = await live();
    const receivedMbps = (delta('received') * 1316 * 8) / WINDOW_S / 1e6;
    const figures = {
      bench: 'srt-listener-cpu',
      source: `${CALLERS} × ffmpeg/libsrt callers, 1280x720 x264 ${MBPS} Mb/s CBR + AAC, MPEG-TS, latency 200 ms, loopback`,
      server: 'defaults, --ladder none (LL-HLS packaging on)',
      callers: CALLERS,
      liveAtEnd: stillLive,
      receivedMbps: Number(receivedMbps.toFixed(1)),
      cpuPercentOfOneCore: Number(cpuPct.toFixed(1)),
      idleCpuPercent: Number(idlePct.toFixed(1)),
      cpuPercentPerCaller: Number(((cpuPct - idlePct) / CALLERS).toFixed(2)),
      cpuPercentPerMbps: Number(((cpuPct - idlePct) / receivedMbps).toFixed(3)),
      packets: { received: delta('received'), lost: delta('lost'), retransmitted: delta('retransmitted'), dropped: delta('dropped') },
      kernelReceiveBufferDrops: kernelDrops,
    };
    mkdirSync('bench/results', { recursive: true });
    writeFileSync('bench/results/srt-listener.json', JSON.stringify(figures, null, 2) + '\n');
    console.log(
      `SRT listener, ${CALLERS} callers × ${MBPS} Mb/s (${figures.receivedMbps} Mb/s received, ${stillLive}/${CALLERS} live at the end): ` +
        `server CPU ${figures.cpuPercentOfOneCore} % of one core (idle ${figures.idleCpuPercent} %), ${figures.cpuPercentPerCaller} % per caller, ` +
        `${figures.cpuPercentPerMbps} % per Mb/s; packets received ${figures.packets.received}, lost ${figures.packets.lost}, retransmitted ${figures.packets.retransmitted}, dropped ${figures.packets.dropped}; UDP receive-buffer drops in the kernel ${kernelDrops}`,
    );
  } finally {
    for (const c of callers) await c.stop();
    await endServer(server, dir);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
