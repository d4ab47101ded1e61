/**
 * End to end: real ffmpeg publishes over RTMP, the real server packages LL-HLS, and Debian's headless Chromium
 * plays /watch/<name> with hls.js. Asserts on decoded frames and on the picture, not on "the page loaded".
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { publishClip, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

interface PageFigures {
  state: string;
  frames: number;
  luma: number;
  currentTime: number;
}

/** Reads the player's state, presented frame count and the mean luma of the displayed picture. */
async function figures(page: Page): Promise<PageFigures> {
  return page.evaluate(() => {
    const video = document.querySelector('video')!;
    const player = (window as unknown as { glasscast: { getStats(): { state: string } } }).glasscast;
    const canvas = document.createElement('canvas');
    canvas.width = 64;
    canvas.height = 36;
    const ctx = canvas.getContext('2d', { willReadFrequently: true })!;
    let luma = 0;
    if (video.videoWidth > 0) {
      ctx.drawImage(video, 0, 0, 64, 36);
      const px = ctx.getImageData(0, 0, 64, 36).data;
      for (let i = 0; i < px.length; i += 4) luma += 0.299 * px[i]! + 0.587 * px[i + 1]! + 0.114 * px[i + 2]!;
      luma /= px.length / 4;
    }
    return { state: player.getStats().state, frames: video.getVideoPlaybackQuality().totalVideoFrames, luma, currentTime: video.currentTime };
  });
}

async function assertPlays(page: Page, url: string): Promise<void> {
  await page.goto(url);
  await waitUntil('the player to reach "playing"', async () => (await figures(page)).state === 'playing', 45_000, 250);
  const first = await figures(page);
  await new Promise((r) => setTimeout(r, 3000));
  const second = await figures(page);
  assert.ok(second.frames > first.frames + 30, `decoded frames should keep increasing (${first.frames} → ${second.frames})`);
  assert.ok(second.currentTime > first.currentTime + 2, `playback should advance (${first.currentTime} → ${second.currentTime})`);
  assert.ok(second.luma > 16, `the picture should not be black (mean luma ${second.luma.toFixed(1)})`);
}

describe('watch page in headless Chromium', { timeout: 180_000 }, () => {
  let server: TestServer;
  let browser: Browser;
  let publisher: FfmpegProcess | undefined;

  before(async () => {
    server = await startTestServer();
    browser = await launchChromium();
  });
  after(async () => {
    await publisher?.stop();
    await browser?.close();
    await server?.stop();
  });

  it('plays the Big Buck Bunny clip (B-frames, 10 s keyframe gaps) published over RTMP', async () => {
    publisher = publishClip(`${server.rtmpUrl}/${server.key}`);
    const page = await browser.newPage();
    try {
      await assertPlays(page, `${server.httpUrl}/watch/main`);
    } finally {
      await page.close();
      await publisher.stop();
      publisher = undefined;
    }
  });

  it('shows the offline state first, then plays an OBS-style x264 test pattern when it goes live', async () => {
    const page = await browser.newPage();
    try {
      await page.goto(`${server.httpUrl}/watch/obs`);
      // The previous test's stream may still be in its grace period on "main"; this one uses its own name.
      assert.equal((await figures(page)).state, 'offline');
      assert.match((await page.textContent('#badge')) ?? '', /Offline/);
      const store = server.app.store;
      const record = await store.create('obs');
      publisher = publishTestPattern(`${server.rtmpUrl}/${record.key}`, { gopSeconds: 2 });
      await waitUntil('the player to reach "playing"', async () => (await figures(page)).state === 'playing', 45_000, 250);
      const first = await figures(page);
      await new Promise((r) => setTimeout(r, 3000));
      const second = await figures(page);
      assert.ok(second.frames > first.frames + 45, `decoded frames should keep increasing (${first.frames} → ${second.frames})`);
      assert.ok(second.luma > 16, `the picture should not be black (mean luma ${second.luma.toFixed(1)})`);
      assert.match((await page.textContent('#badge')) ?? '', /Live/);
    } finally {
      await page.close();
    }
  });

  it('keeps playing across a publisher that dies and returns within the grace period', async () => {
    const record = await server.app.store.create('comeback');
    const url = `${server.rtmpUrl}/${record.key}`;
    publisher = publishTestPattern(url, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    const page = await browser.newPage();
    try {
      await page.goto(`${server.httpUrl}/watch/comeback`);
      await waitUntil('the player to reach "playing"', async () => (await figures(page)).state === 'playing', 45_000, 250);
      await new Promise((r) => setTimeout(r, 2000));
      await publisher.stop('SIGKILL');
      await waitUntil('the stream to wait for its publisher', () => server.app.registry.get('comeback')?.state === 'reconnecting', 10_000);
      publisher = publishTestPattern(url, { gopSeconds: 1, zerolatency: true, size: '640x360' });
      await waitUntil('the stream to be live again', () => server.app.registry.get('comeback')?.state === 'live', 15_000);
      const atReturn = await figures(page);
      await waitUntil(
        'frames of the second session to be decoded',
        async () => {
          const now = await figures(page);
          return now.frames > atReturn.frames + 90 && now.currentTime > atReturn.currentTime + 3;
        },
        30_000,
        500,
      );
      const end = await figures(page);
      assert.equal(end.state, 'playing');
      assert.ok(end.luma > 16, `the picture should not be black (mean luma ${end.luma.toFixed(1)})`);
      const text = await (await fetch(`${server.httpUrl}/hls/comeback/src/media.m3u8`)).text();
      assert.match(text, /#EXT-X-DISCONTINUITY/);
    } finally {
      await page.close();
    }
  });

  it('plays a private stream in hls.js with ?token= and serves nothing to a page without one', async () => {
    const record = await server.app.store.create('private-show', { visibility: 'private' });
    publisher = publishTestPattern(`${server.rtmpUrl}/${record.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('the stream to play', () => server.app.llhls.muxer('private-show')?.ready === true, 30_000, 200);
    const minted = await fetch(`${server.httpUrl}/api/v1/streams/private-show/playback-tokens`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ ttlSeconds: 600, viewerId: 'e2e' }),
    });
    assert.equal(minted.status, 201);
    const { token } = (await minted.json()) as { token: string };
    const refusedPage = await browser.newPage();
    const served: string[] = [];
    refusedPage.on('response', (r) => {
      if (r.url().includes('/hls/') && r.status() === 200) served.push(r.url());
    });
    const page = await browser.newPage();
    const hlsRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/hls/')) hlsRequests.push(r.url());
    });
    try {
      await refusedPage.goto(`${server.httpUrl}/watch/private-show?protocol=ll-hls`);
      await waitUntil('the page to explain the refusal', async () => /token/i.test((await refusedPage.textContent('#message')) ?? ''), 15_000, 250);
      assert.equal((await figures(refusedPage)).frames, 0);
      // hls.js of its own, pointed at the playlist without a token, gets nothing either.
      const status = await refusedPage.evaluate(async (u) => (await fetch(u)).status, `${server.httpUrl}/hls/private-show/index.m3u8`);
      assert.equal(status, 401);
      assert.deepEqual(served, [], 'nothing of the stream was served without a token');

      await assertPlays(page, `${server.httpUrl}/watch/private-show?protocol=ll-hls&token=${encodeURIComponent(token)}`);
      const media = hlsRequests.filter((u) => /\.(m4s|mp4)\?/.test(u));
      assert.ok(media.length > 5, `parts and segments were requested (${media.length})`);
      assert.ok(hlsRequests.every((u) => u.includes(`token=${token}`)), 'hls.js carried the token on every playlist, part and segment');
    } finally {
      await page.close();
      await refusedPage.close();
      await publisher.stop();
      publisher = undefined;
    }
  });
});
