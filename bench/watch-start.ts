/**
 * How fast the watch page starts (issue 14), at the server's defaults (ladder on), a 1280x720 30 fps x264
 * (zerolatency, 1 s GOP, 2.5 Mb/s) + AAC publisher over RTMP, Chromium (Debian's, headless):
 *
 * - **offline → live**: a watch page is open on a stream that is offline; ffmpeg is started; the figure is from
 *   ffmpeg's spawn (its own start-up included) to the first frame the page presents (requestVideoFrameCallback,
 *   wall clock). Rows: the page as shipped (the server pushes the stream's state, Server-Sent Events) and
 *   `?events=off` (the player polls the status every 2 s, as the page did before).
 * - **time to first frame**: the page opened on a live stream, from navigation to the first frame presented.
 *
 * Runs alternate between the rows; medians and maxima are printed. `--repo <dir>` runs the server (and its built
 * web app) of another checkout, e.g. the code before this change, for a "before" row.
 * Usage: npm run bench:watch-start [-- --runs 5 --repo /tmp/glasscast-before]
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import type { Page } from 'playwright-core';
import { endServer, freePort, runInLoopbackNamespace } from './bench-support.js';
import { launchChromium } from '../packages/server/test/support/browser.js';
import { runFfmpeg, type FfmpegProcess } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

runInLoopbackNamespace();

const { values: opts } = parseArgs({ options: { runs: { type: 'string', default: '5' }, repo: { type: 'string', default: '.' } } });
const RUNS = Number(opts.runs);
const REPO = resolve(opts.repo!);

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** The publisher a user would run: 720p30 x264 zerolatency, 1 s GOP, 2.5 Mb/s, with AAC. */
function publish(rtmpUrl: string): FfmpegProcess {
  return runFfmpeg([
    '-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '30', '-keyint_min', '30', '-sc_threshold', '0',
    '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '2500k', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-b:a', '128k', '-f', 'flv', rtmpUrl,
  ]);
}

/** Records the wall-clock time of the first presented frame in the page (window.__firstFrame). */
const FIRST_FRAME_PROBE = `
  window.__firstFrame = 0;
  const watch = () => {
    const video = document.querySelector('video');
    if (!video) return setTimeout(watch, 20);
    video.requestVideoFrameCallback(() => { window.__firstFrame = performance.timeOrigin + performance.now(); });
  };
  watch();
`;

async function firstFrame(page: Page): Promise<number> {
  return waitUntil('the first frame', async () => ((await page.evaluate('window.__firstFrame')) as number) || undefined, 30_000, 20);
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'glasscast-bench-watch-'));
  const [httpPort, rtmpPort, srtPort] = [await freePort(), await freePort(), await freePort()];
  const server = spawn(process.execPath, [join(REPO, 'packages/server/dist/cli.js'), '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--srt-port', String(srtPort), '--data-dir', dir, '--publish-auth', 'open', '--webrtc-bind-address', '127.0.0.1', '--log-level', 'warn'], { cwd: REPO, stdio: ['ignore', 'ignore', 'inherit'] });
  process.once('exit', () => server.kill('SIGKILL'));
  const base = `http://127.0.0.1:${httpPort}`;
  const browser = await launchChromium();
  const rows = { events: [] as number[], polling: [] as number[], ttff: [] as number[], protocols: new Set<string>() };
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    for (let run = 0; run < RUNS; run++) {
      for (const mode of ['events', 'polling'] as const) {
        const name = `start-${run}-${mode}`;
        const page = await browser.newPage();
        await page.addInitScript(FIRST_FRAME_PROBE);
        await page.goto(`${base}/watch/${name}${mode === 'polling' ? '?events=off' : ''}`);
        // The page has settled into "offline" (and, polling, into its 2 s rhythm at a random phase).
        await new Promise((r) => setTimeout(r, 1500 + Math.random() * 2000));
        const spawnedAt = Date.now();
        const publisher = publish(`rtmp://127.0.0.1:${rtmpPort}/live/${name}`);
        try {
          rows[mode].push((await firstFrame(page)) - spawnedAt);
          rows.protocols.add(String(await page.evaluate('window.glasscast.getStats().protocol')));
          // The same stream, live: a new page from navigation to its first frame.
          if (mode === 'events') {
            const viewer = await browser.newPage();
            await viewer.addInitScript(FIRST_FRAME_PROBE);
            const marks: string[] = [];
            viewer.on('request', (r) => marks.push(`${Date.now() - navigatedAt} ${r.method()} ${r.url().replace(base, '')}`));
            const navigatedAt = Date.now();
            await viewer.goto(`${base}/watch/${name}`);
            rows.ttff.push((await firstFrame(viewer)) - navigatedAt);
            if (process.env['BENCH_TRACE']) console.log(`ttff ${rows.ttff[rows.ttff.length - 1]} ms:`, marks.join(' | '));
            await viewer.close();
          }
        } finally {
          await page.close();
          await publisher.stop();
        }
      }
    }
  } finally {
    await browser.close();
    await endServer(server, dir);
  }
  const line = (label: string, xs: number[]): string => `${label}: median ${Math.round(median(xs))} ms, max ${Math.round(Math.max(...xs))} ms (${xs.length} runs: ${xs.map(Math.round).join(', ')})`;
  console.log(`watch page start (${REPO === resolve('.') ? 'this checkout' : REPO}; played ${[...rows.protocols].join(', ')})`);
  console.log(`  ${line('offline → first frame, server push (SSE)', rows.events)}`);
  console.log(`  ${line('offline → first frame, polling every 2 s (?events=off)', rows.polling)}`);
  console.log(`  ${line('time to first frame, live stream', rows.ttff)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
