/**
 * Venue mode end to end: a real ffmpeg publishes, and headless Chromium viewers — each in its own network
 * namespace on one bridge, as phones on one Wi-Fi — play `/watch/<name>?mode=venue`. Their segments come from
 * each other (WebRTC data channels, signalled through Glasscast's tracker, checked against its hashes) or over
 * HTTP. Asserts on what the players report (bytes from peers and over HTTP, frames presented, stalls), that the
 * operator's kill switch stops the sharing at once, and that with the viewers kept apart (a Wi-Fi access point's
 * client isolation, made with nftables) everybody still plays, over HTTP.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { SERVER, venueLan, type VenueLan } from '../support/venue-lan.js';
import { waitUntil } from '../support/wait.js';

const VIEWERS = 4;

interface Figures {
  state: string;
  frames: number;
  stalls: number;
  venue: { peerBytes: number; httpBytes: number; uploadedBytes: number; peers: number; rejected: number } | undefined;
}

const figures = (page: Page): Promise<Figures> =>
  page.evaluate(() => {
    const s = (window as unknown as { glasscast: { getStats(): Figures } }).glasscast.getStats();
    return { state: s.state, frames: document.querySelector('video')!.getVideoPlaybackQuality().totalVideoFrames, stalls: s.stalls, venue: s.venue };
  });

describe('venue mode: viewers on one LAN share segments', { timeout: 300_000 }, () => {
  let lan: VenueLan;
  let server: TestServer;
  let publisher: FfmpegProcess;
  let base: string;
  const browsers: Browser[] = [];

  before(async () => {
    lan = await venueLan(VIEWERS);
    server = await startTestServer({ host: SERVER });
    base = `http://${SERVER}:${server.app.ports.http}`;
    publisher = publishTestPattern(`rtmp://${SERVER}:${server.app.ports.rtmp}/live/${server.key}`, { gopSeconds: 1, size: '640x360', videoKbps: 800 });
    await waitUntil('the stream to play', async () => ((await (await fetch(`${base}/api/v1/streams/main`)).json()) as { playable: boolean }).playable, 30_000, 250);
  });
  after(async () => {
    for (const b of browsers) await b.close().catch(() => undefined);
    await publisher?.stop();
    await server?.stop();
    lan?.close();
  });

  /** Opens the venue-mode watch page in each viewer's namespace, a second apart; returns the pages. */
  async function join(): Promise<Page[]> {
    const pages: Page[] = [];
    for (let i = 0; i < VIEWERS; i++) {
      browsers[i] ??= await launchChromium([], { executablePath: lan.chromium(i) });
      const page = await browsers[i]!.newPage();
      page.on('pageerror', (err) => console.error(`viewer ${i}: ${err.message}`));
      await page.goto(`${base}/watch/main?mode=venue`);
      pages.push(page);
      await new Promise((r) => setTimeout(r, 1000));
    }
    return pages;
  }

  it('serves most segment bytes from peers, every viewer playing', async () => {
    const pages = await join();
    await waitUntil('every viewer playing', async () => (await Promise.all(pages.map(figures))).every((f) => f.state === 'playing'), 60_000, 500);
    await new Promise((r) => setTimeout(r, 45_000));
    const all = await Promise.all(pages.map(figures));
    const peer = all.reduce((n, f) => n + (f.venue?.peerBytes ?? 0), 0);
    const http = all.reduce((n, f) => n + (f.venue?.httpBytes ?? 0), 0);
    const offload = peer / (peer + http);
    const latency = (await Promise.all(pages.map((p) => p.evaluate('window.glasscast.getStats().latency')))) as number[];
    console.log(`venue: latency ${latency.map((l) => l.toFixed(1)).join('/')} s; ${VIEWERS} viewers, offload ${(100 * offload).toFixed(1)} % (peer ${peer} B, http ${http} B), per viewer ${all.map((f) => `${Math.round((100 * (f.venue?.peerBytes ?? 0)) / Math.max(1, (f.venue?.peerBytes ?? 0) + (f.venue?.httpBytes ?? 0)))} %/${f.stalls} stalls`).join(', ')}`);
    for (const f of all) {
      assert.equal(f.state, 'playing');
      assert.ok(f.frames > 30 * 30, `frames presented: ${f.frames}`);
      assert.equal(f.venue?.rejected, 0, 'no segment from a peer failed its hash');
    }
    // The ceiling is 3/4 (one copy over HTTP per segment). Measured 41–63 % over five runs on this 2-core box
    // (four browsers decoding beside the server and the publisher); without sharing it is 0.
    assert.ok(offload >= 0.25, `offload ${offload}`);
    const status = (await (await fetch(`${base}/api/v1/streams/main`)).json()) as { p2p: { peers: number } };
    assert.equal(status.p2p.peers, VIEWERS);
    // The players' beacons carry the same bytes: the operator sees the offload in the stats and /metrics.
    for (const p of pages) await p.evaluate('window.glasscast.reportQoe()');
    let qoe: { p2p: { viewers: number; offload: number } | null } | null = null;
    await waitUntil('the offload in the stream stats', async () => {
      qoe = ((await (await fetch(`${base}/api/v1/streams/main/stats`, { headers: { authorization: `Bearer ${server.apiToken}` } })).json()) as { qoe: typeof qoe }).qoe;
      return qoe?.p2p?.viewers === VIEWERS;
    }, 5000, 200);
    assert.ok(Math.abs(qoe!.p2p!.offload - offload) < 0.1, `server ${qoe!.p2p!.offload} vs players ${offload}`);
    const metrics = await (await fetch(`${base}/metrics`, { headers: { authorization: `Bearer ${server.apiToken}` } })).text();
    assert.match(metrics, /^glasscast_p2p_offload_ratio\{stream="main"\} 0\.\d+/m);
    // The kill switch: the server's event tells the players, they stop sharing at once and play on over HTTP.
    const api = { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' };
    assert.equal((await fetch(`${base}/api/v1/streams/main`, { method: 'PATCH', headers: api, body: JSON.stringify({ p2p: false }) })).status, 200);
    await new Promise((r) => setTimeout(r, 3000));
    const off = await Promise.all(pages.map(figures));
    await new Promise((r) => setTimeout(r, 10_000));
    const later = await Promise.all(pages.map(figures));
    later.forEach((f, i) => {
      assert.equal(f.state, 'playing');
      assert.equal(f.venue?.peerBytes, off[i]!.venue?.peerBytes, `viewer ${i} got nothing from peers after the switch`);
      assert.ok(f.venue!.httpBytes > off[i]!.venue!.httpBytes, `viewer ${i} goes on over HTTP`);
    });
    await fetch(`${base}/api/v1/streams/main`, { method: 'PATCH', headers: api, body: JSON.stringify({ p2p: true }) });
    for (const p of pages) await p.close();
  });

  it('plays over HTTP when the network keeps viewers apart (client isolation)', async () => {
    lan.isolateViewers();
    const pages = await join();
    await waitUntil('every viewer playing', async () => (await Promise.all(pages.map(figures))).every((f) => f.state === 'playing'), 60_000, 500);
    await new Promise((r) => setTimeout(r, 20_000));
    const all = await Promise.all(pages.map(figures));
    for (const f of all) {
      assert.equal(f.state, 'playing');
      assert.equal(f.venue?.peerBytes, 0);
      assert.ok((f.venue?.httpBytes ?? 0) > 0);
      assert.ok(f.frames > 15 * 30, `frames presented: ${f.frames}`);
    }
  });
});
