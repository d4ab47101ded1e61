/**
 * WebRTC playback end to end: ffmpeg publishes over RTMP, Debian's headless Chromium opens /watch/<name>, the
 * player negotiates WHEP with the real server (node-datachannel) and decodes the stream. Runs only inside the
 * loopback-only network namespace the test runner makes (as root), so ICE cannot reach any other address.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { publishClip, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

interface WebRtcFigures {
  state: string;
  protocol: string | undefined;
  frames: number;
  luma: number;
  inbound: { framesDecoded: number; packetsLost: number; packetsReceived: number; freezeCount: number; kind: string }[];
}

async function figures(page: Page): Promise<WebRtcFigures> {
  return page.evaluate(`(async () => {
    const video = document.querySelector('video');
    const player = window.glasscast;
    const canvas = document.createElement('canvas');
    canvas.width = 64; canvas.height = 36;
    const ctx = canvas.getContext('2d', { willReadFrequently: true });
    let luma = 0;
    if (video.videoWidth > 0) {
      ctx.drawImage(video, 0, 0, 64, 36);
      const px = ctx.getImageData(0, 0, 64, 36).data;
      for (let i = 0; i < px.length; i += 4) luma += 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
      luma /= px.length / 4;
    }
    const inbound = [];
    const pc = player.whep && player.whep.pc;
    if (pc) (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp') inbound.push({ kind: r.kind, framesDecoded: r.framesDecoded || 0, packetsLost: r.packetsLost || 0, packetsReceived: r.packetsReceived || 0, freezeCount: r.freezeCount || 0 }); });
    const stats = player.getStats();
    return { state: stats.state, protocol: stats.protocol, frames: video.getVideoPlaybackQuality().totalVideoFrames, luma, inbound };
  })()`);
}

describe('WHEP playback in headless Chromium', { timeout: 180_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let browser: Browser;
  let publisher: FfmpegProcess | undefined;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1' });
    browser = await launchChromium();
  });
  after(async () => {
    await publisher?.stop();
    await browser?.close();
    await server?.stop();
  });

  it('plays an x264 + AAC RTMP source over WebRTC: frames decoded keep increasing, no freezes, Opus audio arrives', async () => {
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
    const page = await browser.newPage();
    try {
      await page.goto(`${server.httpUrl}/watch/main`);
      await waitUntil('the player to play over WebRTC', async () => {
        const f = await figures(page);
        return f.state === 'playing' && f.protocol === 'webrtc';
      }, 30_000, 250);
      const first = await figures(page);
      await new Promise((r) => setTimeout(r, 4000));
      const second = await figures(page);
      const v1 = first.inbound.find((r) => r.kind === 'video');
      const v2 = second.inbound.find((r) => r.kind === 'video');
      assert.ok(v1 && v2, 'an inbound video RTP stream');
      assert.ok(v2.framesDecoded > v1.framesDecoded + 90, `framesDecoded should keep increasing (${v1.framesDecoded} → ${v2.framesDecoded})`);
      assert.equal(v2.freezeCount, v1.freezeCount, 'no freezes');
      const a1 = first.inbound.find((r) => r.kind === 'audio');
      const a2 = second.inbound.find((r) => r.kind === 'audio');
      // Opus at 20 ms: about 50 packets a second, transcoded once per stream from the source's AAC.
      assert.ok(a1 && a2 && a2.packetsReceived > a1.packetsReceived + 150, `audio packets received (${a1?.packetsReceived} → ${a2?.packetsReceived})`);
      assert.ok(second.luma > 16, `the picture should not be black (mean luma ${second.luma.toFixed(1)})`);
      assert.match((await page.textContent('#protocol')) ?? '', /WEBRTC/);
    } finally {
      await page.close();
    }
  });

  it('plays the Big Buck Bunny clip (B-frames) over WebRTC smoothly, re-encoded once without B-frames', async () => {
    await publisher?.stop();
    const record = await server.app.store.create('bunny');
    publisher = publishClip(`${server.rtmpUrl}/${record.key}`);
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/bunny`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
    const page = await browser.newPage();
    try {
      await page.goto(`${server.httpUrl}/watch/bunny?protocol=webrtc`);
      await waitUntil('the player to play over WebRTC', async () => {
        const f = await figures(page);
        return f.state === 'playing' && f.protocol === 'webrtc';
      }, 30_000, 250);
      await new Promise((r) => setTimeout(r, 1000));
      const first = await figures(page);
      await new Promise((r) => setTimeout(r, 5000));
      const second = await figures(page);
      const v1 = first.inbound.find((r) => r.kind === 'video')!;
      const v2 = second.inbound.find((r) => r.kind === 'video')!;
      // 24 fps for 5 s: about 120 frames.
      assert.ok(v2.framesDecoded > v1.framesDecoded + 100, `framesDecoded should keep increasing (${v1.framesDecoded} → ${v2.framesDecoded})`);
      assert.equal(v2.freezeCount, v1.freezeCount, 'no freezes');
      const a1 = first.inbound.find((r) => r.kind === 'audio');
      const a2 = second.inbound.find((r) => r.kind === 'audio');
      assert.ok(a1 && a2 && a2.packetsReceived > a1.packetsReceived + 150, 'audio packets received');
      assert.equal(server.app.registry.get('bunny')?.hasBFrames, true, 'the source was detected as having B-frames');
      assert.equal(server.app.whep.streamStats('bunny').viewersByRendition['src'], 1, 'watched as the source (its B-frame-free copy)');
    } finally {
      await page.close();
    }
  });

  it('with UDP blocked by the browser’s policy, plays over WebRTC on TCP; with WebRTC over TCP off, falls back to LL-HLS by itself', async () => {
    // `disable_non_proxied_udp`: Chromium sends no UDP at all (a strict corporate policy), as a network blocking UDP.
    const blocked = await launchChromium(['--webrtc-ip-handling-policy=disable_non_proxied_udp']);
    const noTcp = await startTestServer({ webrtcBindAddress: '127.0.0.1', webrtcTcp: 'off' });
    const noTcpPublisher = publishTestPattern(`${noTcp.rtmpUrl}/${noTcp.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    try {
      const page = await blocked.newPage();
      await page.goto(`${server.httpUrl}/watch/bunny`);
      await waitUntil('the player to play over WebRTC on TCP', async () => {
        const f = await figures(page);
        return f.state === 'playing' && f.protocol === 'webrtc' && (await page.evaluate('window.glasscast.getStats().transport')) === 'tcp';
      }, 45_000, 250);
      await page.close();

      const fallback = await blocked.newPage();
      await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${noTcp.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
      await fallback.goto(`${noTcp.httpUrl}/watch/main`);
      await waitUntil('the player to play over LL-HLS', async () => {
        const f = await figures(fallback);
        return f.state === 'playing' && f.protocol === 'll-hls';
      }, 45_000, 250);
      const first = await figures(fallback);
      await new Promise((r) => setTimeout(r, 3000));
      const second = await figures(fallback);
      assert.ok(second.frames > first.frames + 40, `decoded frames should keep increasing (${first.frames} → ${second.frames})`);
      assert.match((await fallback.textContent('#protocol')) ?? '', /LL-HLS/);
      assert.equal(await fallback.getAttribute('#diagnostics-link', 'href'), '/diagnostics', 'the page links to the connection test');
    } finally {
      await noTcpPublisher.stop();
      await blocked.close();
      await noTcp.stop();
    }
  });
});
