/**
 * Go live from the browser: headless Chromium with its fake camera and microphone opens /broadcast, enters the
 * stream key and presses Go Live (WHIP); a second page plays the stream over WebRTC (WHEP) and a third over
 * LL-HLS, and both decode frames. Also: a wrong key is explained on the page, and the browser's encoder ramps
 * up to a useful bitrate at 720p. Runs only in the loopback-only network namespace the test runner makes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

interface Playback {
  state: string;
  protocol: string | undefined;
  frames: number;
}

async function playback(page: Page): Promise<Playback> {
  return page.evaluate(`(() => {
    const video = document.querySelector('video');
    const stats = window.glasscast.getStats();
    return { state: stats.state, protocol: stats.protocol, frames: video.getVideoPlaybackQuality().totalVideoFrames };
  })()`);
}

async function framesKeepComing(page: Page, protocol: string): Promise<void> {
  await waitUntil(`the ${protocol} page to play`, async () => {
    const p = await playback(page);
    return p.state === 'playing' && p.protocol === protocol && p.frames > 0;
  }, 30_000, 250);
  const first = await playback(page);
  // 30 more frames (1.5 s of the fake camera's 20 fps) within 10 s: a player that settles after a start-up
  // hiccup passes, a stalled one does not.
  const second = await waitUntil(`${protocol} frames to keep increasing`, async () => {
    const p = await playback(page);
    return p.frames > first.frames + 30 ? p : undefined;
  }, 10_000, 250).catch(async () => playback(page));
  assert.equal(second.protocol, protocol);
  assert.ok(second.frames > first.frames + 30, `${protocol}: frames should keep increasing (${first.frames} → ${second.frames})`);
}

describe('Go live from /broadcast', { timeout: 180_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let browser: Browser;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1' });
    browser = await launchChromium(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
  });

  it('explains a wrong stream key and creates nothing', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${server.httpUrl}/broadcast?stream=main&key=not-the-key`);
      await page.click('#go');
      await waitUntil('the wrong-key message', async () => /Wrong stream key/.test((await page.textContent('#status')) ?? ''), 15_000, 200);
      assert.equal(await page.textContent('#badge'), 'Offline');
      assert.equal(server.app.registry.get('main'), undefined);
    } finally {
      await page.close();
    }
  });

  it('publishes the fake camera over WHIP; WHEP and LL-HLS pages both play it; the encoder ramps up', async () => {
    const publisher = await browser.newPage();
    const webrtc = await browser.newPage();
    const llhls = await browser.newPage();
    try {
      await publisher.goto(`${server.httpUrl}/broadcast?stream=main&key=${server.key}`);
      await publisher.selectOption('#quality', '1280x720');
      await publisher.click('#go');
      await waitUntil('the broadcast page to be live', async () => (await publisher.textContent('#badge')) === 'Live', 20_000, 200).catch(async (err: unknown) => {
        throw new Error(`${(err as Error).message}; page says "${await publisher.textContent('#status')}"`);
      });
      await webrtc.goto(`${server.httpUrl}/watch/main?protocol=webrtc`);
      await llhls.goto(`${server.httpUrl}/watch/main?protocol=ll-hls`);
      await framesKeepComing(webrtc, 'webrtc');
      await framesKeepComing(llhls, 'll-hls');
      // The page shows what it sends. REMB and the start bitrate in our answer let congestion control give the
      // encoder at least 2 Mb/s at 720p (what it spends depends on the picture: the fake camera's is simple).
      const targetKbps = await waitUntil('the encoder target to ramp up', async () => {
        const v = Number(await publisher.getAttribute('#stats', 'data-target-kbps'));
        return v >= 2000 ? v : undefined;
      }, 30_000, 500).catch(() => Number.NaN);
      const shown = (await publisher.textContent('#stats')) ?? '';
      assert.match(shown, /1280x720/);
      assert.ok(targetKbps >= 2000, `the encoder should be allowed at least 2 Mb/s at 720p (page shows "${shown}")`);
      assert.ok(Number(await publisher.getAttribute('#stats', 'data-kbps')) > 100, 'media is being sent');
      await publisher.click('#stop');
      await waitUntil('the stream to end', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { state: string }).state === 'offline', 10_000, 200);
    } finally {
      await Promise.all([publisher.close(), webrtc.close(), llhls.close()]);
    }
  });
});
