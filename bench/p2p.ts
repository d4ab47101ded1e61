/**
 * Venue mode (peer-assisted delivery, DESIGN.md "Figures"): N headless Chromium viewers, each in its own network
 * namespace on one bridge (phones on one Wi-Fi; made by the benchmark, torn down after), play
 * `/watch/<name>?mode=venue` from Glasscast on its defaults (ladder on) while ffmpeg publishes a 640x360 x264 +
 * AAC test pattern (1 s GOP, 800 kb/s) over RTMP. After the viewers joined (one a second), it measures for
 * `--seconds` and prints per viewer and overall: offload (segment bytes from peers ÷ all segment bytes the
 * players received, as they count them), time to playing, latency (the player's distance from the live edge),
 * stalls, segments rejected by the hash check. The last line reads `offload <N> %`.
 *
 * `--isolate` keeps the viewers apart (a Wi-Fi access point's client isolation, nftables on the bridge): every
 * segment comes over HTTP. The box's 2 cores run the server, the publisher and every viewer: at 8 viewers the
 * browsers' decoding dominates (see the stalls and latency columns).
 *
 * Usage: npm run bench:p2p [-- --viewers 4 --seconds 60 --isolate]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { Browser, Page } from 'playwright-core';
import { freePort, runInLoopbackNamespace } from './bench-support.js';
import { launchChromium } from '../packages/server/test/support/browser.js';
import { publishTestPattern } from '../packages/server/test/support/ffmpeg.js';
import { SERVER, venueLan } from '../packages/server/test/support/venue-lan.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

runInLoopbackNamespace();

const { values: opts } = parseArgs({
  options: {
    viewers: { type: 'string', default: '4' },
    seconds: { type: 'string', default: '60' },
    isolate: { type: 'boolean', default: false },
  },
});
const VIEWERS = Math.max(1, Math.min(50, Number(opts.viewers)));
const SECONDS = Math.max(5, Number(opts.seconds));

interface Figures {
  state: string;
  stalls: number;
  latency: number | undefined;
  venue: { peerBytes: number; httpBytes: number; uploadedBytes: number; peers: number; rejected: number } | undefined;
}

const read = (page: Page): Promise<Figures> => page.evaluate('(() => { const s = window.glasscast.getStats(); return { state: s.state, stalls: s.stalls, latency: s.latency, venue: s.venue }; })()') as Promise<Figures>;

async function main(): Promise<void> {
  const lan = await venueLan(VIEWERS);
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-p2p-'));
  const [httpPort, rtmpPort] = [await freePort(), await freePort()];
  const server = spawn(
    process.execPath,
    ['packages/server/dist/cli.js', '--host', SERVER, '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--srt-port', String(await freePort()), '--webrtc-tcp-port', '0', '--stun-port', '0', '--data-dir', dataDir, '--publish-auth', 'open', '--log-level', 'error'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  process.once('exit', () => server.kill('SIGKILL'));
  const base = `http://${SERVER}:${httpPort}`;
  const browsers: Browser[] = [];
  let publisher: ReturnType<typeof publishTestPattern> | undefined;
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    publisher = publishTestPattern(`rtmp://${SERVER}:${rtmpPort}/live/bench`, { gopSeconds: 1, size: '640x360', videoKbps: 800 });
    await waitUntil('the stream', async () => ((await (await fetch(`${base}/api/v1/streams/bench`)).json()) as { playable: boolean }).playable, 30_000, 250);
    if (opts.isolate) lan.isolateViewers();
    const pages: Page[] = [];
    const joins: number[] = [];
    for (let i = 0; i < VIEWERS; i++) {
      browsers.push(await launchChromium([], { executablePath: lan.chromium(i) }));
      const page = await browsers[i]!.newPage();
      const started = Date.now();
      await page.goto(`${base}/watch/bench?mode=venue`);
      pages.push(page);
      void waitUntil(`viewer ${i} playing`, async () => (await read(page)).state === 'playing', 60_000, 100).then(
        () => (joins[i] = Date.now() - started),
        () => (joins[i] = NaN),
      );
      await new Promise((r) => setTimeout(r, 1000));
    }
    await waitUntil('every viewer playing', async () => joins.filter((j) => j !== undefined).length === VIEWERS, 60_000, 250);
    const before = await Promise.all(pages.map(read));
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const after = await Promise.all(pages.map(read));
    let peer = 0;
    let http = 0;
    after.forEach((f, i) => {
      const b = before[i]!.venue!;
      const v = f.venue!;
      const p = v.peerBytes - b.peerBytes;
      const h = v.httpBytes - b.httpBytes;
      peer += p;
      http += h;
      console.log(
        `viewer ${i}: offload ${p + h > 0 ? ((100 * p) / (p + h)).toFixed(1) : '–'} %, join ${joins[i]} ms, latency ${f.latency?.toFixed(2) ?? '–'} s, stalls ${f.stalls - before[i]!.stalls}, peers ${v.peers}, uploaded ${((v.uploadedBytes - b.uploadedBytes) / 1e6).toFixed(1)} MB, rejected ${v.rejected}, state ${f.state}`,
      );
    });
    const latencies = after.map((f) => f.latency ?? NaN).sort((a, b) => a - b);
    console.log(`${VIEWERS} viewers${opts.isolate ? ' (kept apart)' : ''}, ${SECONDS} s: from peers ${(peer / 1e6).toFixed(1)} MB, over HTTP ${(http / 1e6).toFixed(1)} MB (ceiling ${((100 * (VIEWERS - 1)) / VIEWERS).toFixed(1)} %); latency median ${latencies[Math.floor(latencies.length / 2)]!.toFixed(2)} s; stalls ${after.reduce((n, f, i) => n + f.stalls - before[i]!.stalls, 0)}`);
    console.log(`offload ${peer + http > 0 ? ((100 * peer) / (peer + http)).toFixed(1) : '0'} %`);
  } finally {
    for (const b of browsers) await b.close().catch(() => undefined);
    await publisher?.stop();
    server.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 500));
    server.kill('SIGKILL');
    lan.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
