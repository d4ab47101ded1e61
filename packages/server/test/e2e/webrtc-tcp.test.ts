/**
 * WebRTC where UDP is blocked (hotel and office Wi-Fi): Chromium runs in a second network namespace whose firewall
 * (nftables) really drops every UDP datagram towards the server, and the watch page must still play over WebRTC —
 * over the server's passive ICE-TCP candidate (RFC 6544) — and `/broadcast` must still publish over WHIP. With
 * TCP blocked too (all but the web port), the page falls back to LL-HLS as before. Glasscast runs in the test's
 * own namespace (10.203.0.1), the browser in the linked one (10.203.0.2); no other address is used.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { checkPage } from '../support/page-checks.js';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { HERE, linkedNamespace, THERE, type LinkedNamespace } from '../support/netns.js';
import { waitUntil } from '../support/wait.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

interface Figures {
  state: string;
  protocol: string | undefined;
  frames: number;
  /** The selected candidate pair's local candidate: protocol and type (`tcp`/`host`), from getStats(). */
  pair: { protocol: string; type: string; remotePort: number } | undefined;
}

async function figures(page: Page): Promise<Figures> {
  return page.evaluate(`(async () => {
    const player = window.glasscast;
    const stats = player.getStats();
    const video = document.querySelector('video');
    let pair;
    const pc = player.whep && player.whep.pc;
    if (pc) {
      const report = await pc.getStats();
      let selected;
      report.forEach((r) => { if (r.type === 'transport' && r.selectedCandidatePairId) selected = report.get(r.selectedCandidatePairId); });
      if (selected) {
        const local = report.get(selected.localCandidateId);
        const remote = report.get(selected.remoteCandidateId);
        pair = { protocol: local.protocol, type: local.candidateType, remotePort: remote.port };
      }
    }
    return { state: stats.state, protocol: stats.protocol, frames: video ? video.getVideoPlaybackQuality().totalVideoFrames : 0, pair };
  })()`);
}

/** The /diagnostics page's verdict once its tests finished. */
async function diagnosticsVerdict(page: Page, url: string): Promise<{ level: string; text: string; rows: Record<string, string> }> {
  await page.goto(url);
  return waitUntil('the connection test to finish', async () => {
    const v = (await page.evaluate(`(() => {
      const p = document.getElementById('verdict');
      const rows = {};
      document.querySelectorAll('#results tbody tr').forEach((tr) => { rows[tr.dataset.transport] = tr.dataset.outcome; });
      return p && p.dataset.level ? { level: p.dataset.level, text: p.textContent, rows } : undefined;
    })()`)) as { level: string; text: string; rows: Record<string, string> } | undefined;
    return v;
  }, 30_000, 250);
}

interface Connection {
  kind: string;
  stream: string;
  state: string;
  path: { transport: string; remote: string } | null;
  failure: string | null;
}

describe('WebRTC with UDP blocked', { timeout: 300_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let ns: LinkedNamespace;
  let browser: Browser;
  let publisher: FfmpegProcess | undefined;
  let base: string;

  const connections = async (): Promise<Connection[]> =>
    ((await (await fetch(`${server.httpUrl}/api/v1/diagnostics/connections`, { headers: { authorization: `Bearer ${server.apiToken}` } })).json()) as { connections: Connection[] }).connections;

  before(async () => {
    ns = await linkedNamespace();
    server = await startTestServer({ host: '0.0.0.0', webrtcBindAddress: HERE });
    base = `http://${HERE}:${server.app.ports.http}`;
    // The broadcast page needs a secure context for the camera; this origin is plain HTTP on a test address.
    browser = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--unsafely-treat-insecure-origin-as-secure=${base}`], { executablePath: ns.chromium() });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await browser?.close();
    await server?.stop();
    ns?.close();
  });

  it('plays over WebRTC on the ICE-TCP candidate when every UDP datagram is dropped', async () => {
    ns.firewall({ udp: false });
    const page = await browser.newPage();
    try {
      await page.goto(`${base}/watch/main`);
      const f = await waitUntil('the player to play over WebRTC', async () => {
        const f = await figures(page);
        return f.state === 'playing' && f.protocol === 'webrtc' && f.frames > 30 ? f : undefined;
      }, 30_000, 250);
      assert.deepEqual(f.pair && { protocol: f.pair.protocol, remotePort: f.pair.remotePort }, { protocol: 'tcp', remotePort: server.app.ports.webrtcTcp }, 'the selected pair is on TCP, to the ICE-TCP port');
      const frames = f.frames;
      await waitUntil('frames to keep coming over TCP', async () => ((await figures(page)).frames > frames + 60 ? true : undefined), 10_000, 250);
      // The player says which transport it got (stats and the toolbar).
      assert.equal(await page.evaluate('window.glasscast.getStats().transport'), 'tcp');
      assert.match((await page.textContent('#protocol')) ?? '', /WEBRTC \(TCP\)/);
      // The server saw it the same way.
      const viewer = (await connections()).find((c) => c.kind === 'whep' && c.state === 'connected');
      assert.equal(viewer?.path?.transport, 'tcp', `the server's view: ${JSON.stringify(viewer)}`);
      assert.match(viewer.path.remote, new RegExp(`^${THERE.replace(/\./g, '\\.')}:`), 'the TCP peer is the browser');
    } finally {
      await page.close();
    }
  });

  it('/diagnostics says "UDP blocked, TCP works" there', async () => {
    ns.firewall({ udp: false });
    const page = await browser.newPage();
    try {
      const v = await diagnosticsVerdict(page, `${base}/diagnostics`);
      assert.equal(v.level, 'warn', v.text);
      assert.match(v.text, /UDP blocked, TCP works/);
      assert.match(v.text, /40000–400\d\d/, 'names the UDP ports to open');
      assert.deepEqual(v.rows, { http: 'connected', udp: 'failed', tcp: 'connected' });
      const probes = (await connections()).filter((c) => c.kind === 'diagnostics');
      assert.ok(probes.some((c) => c.path?.transport === 'tcp'), `the server saw the TCP test connect: ${JSON.stringify(probes)}`);
      assert.ok(probes.some((c) => c.failure && /no candidate pair worked/.test(c.failure)), `the server explains the UDP test's failure: ${JSON.stringify(probes.map((p) => p.failure))}`);
    } finally {
      await page.close();
    }
  });

  it('publishes from /broadcast over WHIP on TCP when UDP is dropped', async () => {
    ns.firewall({ udp: false });
    const cam = await server.app.store.create('cam');
    const page = await browser.newPage();
    try {
      await page.goto(`${base}/broadcast?stream=cam&key=${cam.key}`);
      await page.click('#go');
      await waitUntil('the broadcast page to be live', async () => (await page.textContent('#badge')) === 'Live', 30_000, 200).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}: ${await page.textContent('#status')}`);
      });
      const publisherPath = (await connections()).find((c) => c.kind === 'whip' && c.stream === 'cam' && c.state === 'connected')?.path;
      assert.equal(publisherPath?.transport, 'tcp', 'the WHIP publisher came over TCP');
      await waitUntil('the published stream to be playable over WebRTC', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/cam`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
      const watcher = await browser.newPage();
      try {
        await watcher.goto(`${base}/watch/cam`);
        await waitUntil('the published stream to play over WebRTC on TCP', async () => {
          const f = await figures(watcher);
          return f.state === 'playing' && f.protocol === 'webrtc' && f.frames > 20 && f.pair?.protocol === 'tcp' ? f : undefined;
        }, 30_000, 250);
      } finally {
        await watcher.close();
      }
      await page.click('#stop');
    } finally {
      await page.close();
    }
  });

  it('falls back to LL-HLS when TCP is blocked too (all but the web port), and links to /diagnostics', async () => {
    ns.firewall({ udp: false, tcpPorts: [server.app.ports.http] });
    const page = await browser.newPage();
    try {
      await page.goto(`${base}/watch/main`);
      await waitUntil('the player to play over LL-HLS', async () => {
        const f = await figures(page);
        return f.state === 'playing' && f.protocol === 'll-hls' && f.frames > 10 ? f : undefined;
      }, 40_000, 250);
      assert.equal(await page.evaluate('window.glasscast.getStats().webrtcFailed'), true);
      assert.equal(await page.getAttribute('#diagnostics-link', 'href'), '/diagnostics');
      const v = await diagnosticsVerdict(page, `${base}/diagnostics`);
      assert.equal(v.level, 'bad', v.text);
      assert.match(v.text, /WebRTC is blocked/);
      assert.match(v.text, new RegExp(`TCP ${server.app.ports.webrtcTcp}`), 'names the TCP port to open');
    } finally {
      await page.close();
      ns.firewall({ udp: true });
    }
  });
});

describe('/diagnostics on plain loopback', { timeout: 120_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  it('says "All good", and passes the accessibility audit on a desktop and a phone', async () => {
    const server = await startTestServer({ webrtcBindAddress: '127.0.0.1' });
    const browser = await launchChromium();
    try {
      const page = await browser.newPage();
      const v = await diagnosticsVerdict(page, `${server.httpUrl}/diagnostics`);
      assert.equal(v.level, 'good', v.text);
      assert.match(v.text, /All good/);
      assert.deepEqual(v.rows, { http: 'connected', udp: 'connected', tcp: 'connected' });
      // Screenshots (desktop and phone) and an accessibility audit of the page, as for every page of the web app.
      assert.deepEqual(await checkPage(page, 'diagnostics'), []);
    } finally {
      await browser.close();
      await server.stop();
    }
  });
});
