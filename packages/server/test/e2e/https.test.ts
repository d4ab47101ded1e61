/**
 * Glasscast over HTTPS with a certificate from a test CA (test-ca.ts), as a deployment with a real certificate has
 * it: Chromium (in a linked namespace, reaching the server on a LAN-like address, so no "localhost is secure"
 * exception applies) plays the watch page over WebRTC and over LL-HLS, publishes from /broadcast (the camera
 * needs a secure context), and runs the connection test. Then the certificate is replaced on disk: new TLS
 * connections get the new one while the stream plays on. The browser trusts only the test CA's key.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { connect } from 'node:tls';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { HERE, linkedNamespace, type LinkedNamespace } from '../support/netns.js';
import { makeTestCa, type TestCa } from '../support/test-ca.js';
import { waitUntil } from '../support/wait.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';
/** The plain-HTTP port that redirects to HTTPS (this test's own network namespace: no clash). */
const REDIRECT_PORT = 18081;

/** The SHA-256 fingerprint of the certificate a new TLS connection gets, verified against `ca`. */
async function servedFingerprint(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: HERE, port, ca, servername: undefined, checkServerIdentity: () => undefined }, () => {
      const fp = socket.getPeerCertificate().fingerprint256;
      socket.end();
      resolve(fp);
    });
    socket.once('error', reject);
  });
}

async function playing(page: Page): Promise<{ state: string; protocol: string | undefined; frames: number }> {
  return page.evaluate(`(() => {
    const s = window.glasscast.getStats();
    const v = document.querySelector('video');
    return { state: s.state, protocol: s.protocol, frames: v ? v.getVideoPlaybackQuality().totalVideoFrames : 0 };
  })()`);
}

describe('Glasscast over HTTPS (test CA)', { timeout: 300_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let ca: TestCa;
  let dir: string;
  let server: TestServer;
  let ns: LinkedNamespace;
  let browser: Browser;
  let publisher: FfmpegProcess | undefined;
  let base: string;
  const certPath = (): string => join(dir, 'server.crt');
  const keyPath = (): string => join(dir, 'server.key');
  /** Writes a pair as a tool like certbot does: each file replaced whole (rename), the key first. */
  const install = (pair: { chain: string; key: string }): void => {
    writeFileSync(`${keyPath()}.new`, pair.key);
    renameSync(`${keyPath()}.new`, keyPath());
    writeFileSync(`${certPath()}.new`, pair.chain);
    renameSync(`${certPath()}.new`, certPath());
  };

  before(async () => {
    ca = await makeTestCa();
    dir = mkdtempSync(join(tmpdir(), 'glasscast-tls-'));
    install(await ca.issue(['127.0.0.1', HERE]));
    ns = await linkedNamespace();
    server = await startTestServer({ host: '0.0.0.0', webrtcBindAddress: HERE, tlsCert: certPath(), tlsKey: keyPath(), httpRedirectPort: REDIRECT_PORT });
    base = `https://${HERE}:${server.app.ports.http}`;
    browser = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream', `--ignore-certificate-errors-spki-list=${ca.spkiHash}`], { executablePath: ns.chromium() });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
  });
  after(async () => {
    await publisher?.stop();
    await browser?.close();
    await server?.stop();
    ns?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('serves the API, the watch page (WebRTC and LL-HLS), /broadcast and /diagnostics over HTTPS', async () => {
    const page = await browser.newPage();
    const hls = await browser.newPage();
    const cam = await browser.newPage();
    try {
      const health = await page.goto(`${base}/healthz`);
      assert.equal(health?.status(), 200, 'Chromium accepts the chain to the test CA');
      assert.equal(await page.evaluate('window.isSecureContext'), true);
      assert.equal(health?.headers()['strict-transport-security'], undefined, 'no HSTS unless asked for');
      const redirected = await fetch(`http://127.0.0.1:${REDIRECT_PORT}/watch/main?protocol=webrtc`, { redirect: 'manual' });
      assert.equal(redirected.status, 308);
      assert.equal(redirected.headers.get('location'), `https://127.0.0.1:${server.app.ports.http}/watch/main?protocol=webrtc`);
      await waitUntil('WebRTC to be offered', async () => ((await page.evaluate(`fetch('/api/v1/streams/main').then((r) => r.json())`)) as { webrtc: boolean }).webrtc, 20_000, 200);
      await page.goto(`${base}/watch/main?protocol=webrtc`);
      await hls.goto(`${base}/watch/main?protocol=ll-hls`);
      for (const [p, protocol] of [[page, 'webrtc'], [hls, 'll-hls']] as const) {
        await waitUntil(`the ${protocol} page to play over HTTPS`, async () => {
          const f = await playing(p);
          return f.state === 'playing' && f.protocol === protocol && f.frames > 10 ? f : undefined;
        }, 40_000, 250);
      }
      // The camera needs a secure context: on this LAN address only HTTPS gives one.
      const record = await server.app.store.create('cam');
      await cam.goto(`${base}/broadcast?stream=cam&key=${record.key}`);
      await cam.click('#go');
      await waitUntil('the broadcast page to be live', async () => (await cam.textContent('#badge')) === 'Live', 30_000, 200).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}: ${await cam.textContent('#status')}`);
      });
      await cam.click('#stop');
      const diag = await browser.newPage();
      try {
        await diag.goto(`${base}/diagnostics`);
        const level = await waitUntil('the connection test', async () => (await diag.getAttribute('#verdict', 'data-level')) || undefined, 30_000, 250);
        assert.equal(level, 'good', (await diag.textContent('#verdict')) ?? '');
        assert.match((await diag.textContent('#results')) ?? '', /HTTPS/);
      } finally {
        await diag.close();
      }
    } finally {
      await cam.close();
      await hls.close();
      await page.close();
    }
  });

  it('a certificate replaced on disk goes to new connections while the stream plays on', async () => {
    const webrtc = await browser.newPage();
    const hls = await browser.newPage();
    try {
      await webrtc.goto(`${base}/watch/main?protocol=webrtc`);
      await hls.goto(`${base}/watch/main?protocol=ll-hls`);
      for (const [p, protocol] of [[webrtc, 'webrtc'], [hls, 'll-hls']] as const) {
        await waitUntil(`the ${protocol} page to play`, async () => {
          const f = await playing(p);
          return f.state === 'playing' && f.protocol === protocol && f.frames > 10 ? f : undefined;
        }, 40_000, 250);
      }
      const before = await servedFingerprint(server.app.ports.http, ca.cert);
      const framesBefore = [(await playing(webrtc)).frames, (await playing(hls)).frames];
      install(await ca.issue(['127.0.0.1', HERE], 2));
      const after = await waitUntil('new connections to get the new certificate', async () => {
        const fp = await servedFingerprint(server.app.ports.http, ca.cert);
        return fp !== before ? fp : undefined;
      }, 15_000, 250);
      assert.equal(server.app.tls()?.fingerprint256, after, 'the server reports the certificate it serves');
      // Both pages play on: WebRTC's media never touched HTTPS; hls.js fetches parts over new and kept connections.
      for (const [i, [p, protocol]] of ([[webrtc, 'webrtc'], [hls, 'll-hls']] as const).entries()) {
        const f = await waitUntil(`${protocol} frames to keep coming after the swap`, async () => {
          const f = await playing(p);
          return f.frames > framesBefore[i]! + 60 ? f : undefined;
        }, 15_000, 250);
        assert.equal(f.state, 'playing');
        assert.equal(f.protocol, protocol);
      }
      // A page loaded now (a new connection) works with the new certificate.
      const fresh = await browser.newPage();
      try {
        assert.equal((await fresh.goto(`${base}/healthz`))?.status(), 200);
      } finally {
        await fresh.close();
      }
    } finally {
      await hls.close();
      await webrtc.close();
    }
  });
});
