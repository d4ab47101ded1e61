/**
 * Server CPU per REST API request: the built server (default settings, ladder off so the box is quiet) with a
 * 640x360 x264 + AAC stream live, 1000 sequential requests per endpoint from this process; the server's CPU time
 * (from /proc) less its idle streaming rate, per request. Prints one line per endpoint.
 * Usage: npm run bench:api-cost [-- --requests 1000]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort } from './bench-support.js';
import { publishTestPattern } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

const { values: opts } = parseArgs({ options: { requests: { type: 'string', default: '1000' } } });
const REQUESTS = Number(opts.requests);

async function main(): Promise<void> {
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-bench-'));
  const [httpPort, rtmpPort] = [await freePort(), await freePort()];
  const server = spawn(process.execPath, ['packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--data-dir', dataDir, '--publish-auth', 'open', '--log-level', 'warn', '--ladder', 'none', '--rate-limit-api', '0'], { stdio: ['ignore', 'pipe', 'inherit'] });
  process.once('exit', () => server.kill('SIGKILL'));
  let out = '';
  server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const base = `http://127.0.0.1:${httpPort}`;
  await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
  const publisher = publishTestPattern(`rtmp://127.0.0.1:${rtmpPort}/live/bench`, { size: '640x360', gopSeconds: 1, zerolatency: true });
  try {
    await waitUntil('the stream', async () => {
      const r = await fetch(`${base}/api/v1/streams/bench`).catch(() => undefined);
      return r?.ok && ((await r.json()) as { playable: boolean }).playable;
    }, 30_000, 200).catch((err: unknown) => {
      throw new Error(`${String(err)}\nffmpeg: ${publisher.stderr()}`);
    });
    const token = /API token:\s+(\S+)/.exec(out)?.[1] ?? '';
    const auth = { authorization: `Bearer ${token}` };
    /** The server's CPU time so far, ms (utime + stime, in clock ticks of 10 ms). */
    const cpu = (): number => {
      const f = readFileSync(`/proc/${server.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      return (Number(f[11]) + Number(f[12])) * 10;
    };
    const idle0 = cpu();
    await new Promise((r) => setTimeout(r, 5000));
    const idleRate = (cpu() - idle0) / 5000;
    const rows: [string, Record<string, string> | undefined][] = [
      ['/healthz', undefined],
      ['/api/v1/streams', undefined],
      ['/api/v1/streams/bench', undefined],
      ['/api/v1/streams/bench/stats', auth],
      ['/api/v1/streams/bench/sessions', auth],
      ['/api/v1/history?limit=20', auth],
      ['/metrics', auth],
    ];
    for (const [path, headers] of rows) {
      const c0 = cpu();
      const t0 = Date.now();
      for (let i = 0; i < REQUESTS; i++) await (await fetch(`${base}${path}`, { headers })).arrayBuffer();
      const wall = Date.now() - t0;
      console.log(`${path.padEnd(32)} ${((cpu() - c0 - idleRate * wall) / REQUESTS).toFixed(2)} ms server CPU per request (${REQUESTS} requests)`);
    }
  } finally {
    await publisher.stop();
    server.kill('SIGTERM');
    if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
