/**
 * The documented nginx cache tier (deploy/nginx/glasscast-llhls.conf) in front of a real Glasscast and ffmpeg
 * publisher: 200 simulated hls.js viewers (blocking delta reloads, hinted parts) through Debian's nginx cause a few
 * requests to Glasscast per object (not 200), every viewer gets every part, and a part asked for before it exists is
 * not cached as missing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import type { LoadWindow } from '../support/llhls-viewers.js';
import { cacheFigures, startNginxTier, type NginxTier } from '../support/nginx.js';
import { waitUntil } from '../support/wait.js';

const VIEWERS_PROCESS = fileURLToPath(new URL('../support/llhls-viewers-process.ts', import.meta.url));

/** A TCP port free on 127.0.0.1 right now. */
async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

describe('LL-HLS through the nginx cache tier', { timeout: 180_000 }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;
  let nginx: NginxTier;

  before(async () => {
    server = await startTestServer();
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('the first part', async () => (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).status === 200, 20_000, 200);
    nginx = await startNginxTier(Number(new URL(server.httpUrl).port), await freePort());
  });
  after(async () => {
    await nginx?.stop();
    await publisher?.stop();
    await server?.stop();
  });

  it('answers 200 viewers from its cache: about one request to Glasscast per object, every part to every viewer', async () => {
    // The viewers run in a process of their own: in this one they would share the server's event loop.
    const child = spawn(process.execPath, ['--import', 'tsx', VIEWERS_PROCESS, nginx.url, 'main'], { stdio: ['pipe', 'pipe', 'inherit'] });
    const lines: string[] = [];
    createInterface({ input: child.stdout! }).on('line', (l) => lines.push(l));
    const ask = async (cmd: string): Promise<LoadWindow & { viewers: number }> => {
      lines.length = 0;
      child.stdin!.write(cmd + '\n');
      return JSON.parse(await waitUntil(`the viewers to answer ${cmd}`, () => lines.shift(), 20_000, 20)) as LoadWindow & { viewers: number };
    };
    try {
      await ask('200');
      await new Promise((r) => setTimeout(r, 4000)); // every viewer joined
      const muxer = server.app.llhls.muxer('main')!;
      await ask('stats');
      const logFrom = nginx.accessLog().length;
      const partsFrom = muxer.nextPart;
      await new Promise((r) => setTimeout(r, 6000));
      const window = await ask('stats');
      const partsMade = muxer.nextPart - partsFrom;
      const perViewer = window.parts / 200;
      assert.deepEqual(window.errors, {}, 'no viewer saw an error');
      assert.ok(perViewer >= partsMade * 0.9, `each viewer got ${perViewer.toFixed(1)} of the ${partsMade} parts made`);
      await new Promise((r) => setTimeout(r, 1500)); // nginx flushes its log every second
      const figures = cacheFigures(nginx.accessLog().slice(logFrom));
      assert.ok(figures.requests > 200 * partsMade, `${figures.requests} LL-HLS requests went through nginx`);
      // About one request per object reaches Glasscast (a few more when a part comes later than nginx's lock
      // timeout and its waiters go on uncached): a 200-viewer load becomes a few viewers' worth.
      const perObject = figures.originRequests / figures.objects;
      assert.ok(perObject < 10, `${figures.originRequests} requests reached Glasscast for ${figures.objects} objects (${perObject.toFixed(2)} each)`);
      assert.ok(figures.hits / figures.requests > 0.9, `${((figures.hits / figures.requests) * 100).toFixed(1)} % answered from the cache`);
    } finally {
      child.stdin!.write('quit\n');
      await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
      child.kill('SIGKILL');
    }
  });

  it('does not cache a part asked for before it exists', async () => {
    const muxer = server.app.llhls.muxer('main')!;
    // Past the preload-hint window: Glasscast answers 404 at once (no-store).
    const future = `${nginx.url}/hls/main/src/${muxer.epoch}/part${muxer.nextPart + 5}.m4s`;
    const early = await fetch(future);
    assert.equal(early.status, 404);
    assert.equal(early.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    await waitUntil('that part to be made', () => muxer.part(muxer.nextPart - 1) !== undefined && muxer.nextPart > Number(/part(\d+)/.exec(future)![1]), 10_000, 50);
    const later = await fetch(future);
    assert.equal(later.status, 200, 'once made, it is served, not the stored 404');
    assert.equal(Buffer.from(await later.arrayBuffer()).toString('latin1', 4, 8), 'moof');
  });
});
