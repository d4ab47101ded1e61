/**
 * ABR in Debian's headless Chromium through the real watch page: hls.js moves to a lower rendition without a
 * stall when its bandwidth estimate is forced down on a throttled network (DevTools protocol), and a WebRTC viewer switches rendition from the
 * quality menu with frames decoding throughout and no freeze longer than 500 ms.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { DEFAULT_LADDER } from '../../src/transcode/ladder.js';
import { launchChromium } from '../support/browser.js';
import { ladderSourceClip, publishClip, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, waitForRenditions, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { linkedNamespace, THERE } from '../support/netns.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

interface PageFigures {
  state: string;
  protocol: string | undefined;
  frames: number;
  stalls: number;
  height: number;
  quality: { mode: string; current: string | undefined; levels: { id: string; height: number }[] };
  /** Longest time between two presented frames since the last reset, ms. */
  maxGapMs: number;
  bandwidthEstimate: number | undefined;
}

/** Counts the gaps between presented frames in the page (requestVideoFrameCallback), from page load on. */
const FRAME_GAP_PROBE = `
  window.__gap = { last: 0, max: 0 };
  const watch = () => {
    const video = document.querySelector('video');
    if (!video) return setTimeout(watch, 50);
    const onFrame = (now) => {
      if (window.__gap.last > 0) window.__gap.max = Math.max(window.__gap.max, now - window.__gap.last);
      window.__gap.last = now;
      video.requestVideoFrameCallback(onFrame);
    };
    video.requestVideoFrameCallback(onFrame);
  };
  document.addEventListener('DOMContentLoaded', watch);
`;

async function figures(page: Page): Promise<PageFigures> {
  return page.evaluate(`(() => {
    const video = document.querySelector('video');
    const player = window.glasscast;
    const stats = player.getStats();
    const hls = player.hls;
    return {
      state: stats.state, protocol: stats.protocol, frames: stats.framesDecoded, stalls: stats.stalls,
      height: video.videoHeight, quality: stats.quality, maxGapMs: window.__gap.max,
      bandwidthEstimate: hls ? hls.bandwidthEstimate : undefined,
    };
  })()`);
}

const resetGap = (page: Page): Promise<unknown> => page.evaluate('window.__gap.max = 0');

/** The browser's own count of video packets it NACKed (lost on the way) and lost for good. */
async function videoLoss(page: Page): Promise<{ nackCount: number; packetsLost: number }> {
  return page.evaluate(`(async () => {
    let out = { nackCount: 0, packetsLost: 0 };
    const pc = window.glasscast.whep && window.glasscast.whep.pc;
    if (pc) (await pc.getStats()).forEach((r) => { if (r.type === 'inbound-rtp' && r.kind === 'video') out = { nackCount: r.nackCount || 0, packetsLost: r.packetsLost || 0 }; });
    return out;
  })()`);
}

describe('ABR in headless Chromium', { timeout: 300_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let browser: Browser;

  before(async () => {
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
  });

  describe('LL-HLS (hls.js)', () => {
    let server: TestServer;
    let publisher: FfmpegProcess;
    before(async () => {
      server = await startTestServer({ ladder: DEFAULT_LADDER });
      publisher = publishClip(`${server.rtmpUrl}/${server.key}`, await ladderSourceClip());
    });
    after(async () => {
      await publisher?.stop();
      await server?.stop();
    });

    it('moves to a lower rendition when its bandwidth estimate is forced down on a throttled network, without a stall', async () => {
      const page = await browser.newPage();
      try {
        await page.addInitScript(FRAME_GAP_PROBE);
        await page.goto(`${server.httpUrl}/watch/main?protocol=ll-hls`);
        const playing = await waitUntil('LL-HLS playing with the whole ladder', async () => {
          const f = await figures(page);
          return f.state === 'playing' && f.quality.levels.length === 4 && f.frames > 30 ? f : undefined;
        }, 40_000, 250);
        assert.deepEqual(playing.quality.levels.map((l) => l.id), ['src', '720p', '480p', '360p']);
        assert.equal(await page.locator('#quality option').count(), 5, 'the menu has Auto and four levels');
        // Start from the top: the source, chosen in the menu, then back to Auto with the network as it is.
        await page.selectOption('#quality', 'src');
        await waitUntil('the source playing', async () => ((await figures(page)).quality.current === 'src' ? true : undefined), 20_000, 250);
        await page.selectOption('#quality', 'auto');
        await new Promise((r) => setTimeout(r, 3000));
        const before = await figures(page);
        assert.equal(before.quality.mode, 'auto');
        const startLevel = before.quality.current;
        const startHeight = before.quality.levels.find((l) => l.id === startLevel)?.height ?? 0;

        // The network is throttled to 8 Mb/s (DevTools protocol) and hls.js's bandwidth estimate is forced down to
        // 3 Mb/s, as after a slow stretch: the source (~6.2 Mb/s with audio) no longer fits the estimate, 720p does.
        // (A sudden drop of the network itself below the playing level stalls hls.js once with a 1 s LL-HLS buffer:
        // it finishes the slow parts in flight and reloads the new level's segment from its first keyframe.)
        const cdp = await page.context().newCDPSession(page);
        await cdp.send('Network.enable');
        await resetGap(page);
        await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 20, downloadThroughput: 8_000_000 / 8, uploadThroughput: 1_000_000 / 8 });
        await page.evaluate('window.glasscast.hls.bandwidthEstimate = 3000000');
        const after = await waitUntil('hls.js to pick a lower rendition', async () => {
          const f = await figures(page);
          const h = f.quality.levels.find((l) => l.id === f.quality.current)?.height ?? Infinity;
          return h < startHeight && f.height < startHeight ? f : undefined;
        }, 30_000, 250);
        const settled = await waitUntil('3 s more', async () => {
          const f = await figures(page);
          return f.frames >= after.frames + 90 ? f : undefined;
        }, 20_000, 250);
        assert.equal(settled.stalls, before.stalls, `no stall (estimate ${Math.round((settled.bandwidthEstimate ?? 0) / 1000)} kb/s, level ${startLevel} → ${settled.quality.current})`);
        // The video element re-configures its decoder for the new level (size and profile change): one longer
        // frame interval, not a stall.
        assert.ok(settled.maxGapMs < 1000, `longest gap between frames ${Math.round(settled.maxGapMs)} ms`);
        assert.ok(settled.frames > before.frames + 90, 'frames kept coming');
        console.log(`# LL-HLS ABR: ${startLevel} → ${settled.quality.current}, longest frame gap ${Math.round(settled.maxGapMs)} ms, stalls ${settled.stalls - before.stalls}`);
      } finally {
        await page.close();
      }
    });
  });

  describe('WebRTC (WHEP)', () => {
    let server: TestServer;
    let publisher: FfmpegProcess;
    before(async () => {
      server = await startTestServer({ webrtcBindAddress: '127.0.0.1', ladder: '480p=1200k,360p=600k' });
      publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '1280x720' });
      await waitForRenditions(server.httpUrl, 'main', 2);
    });
    after(async () => {
      await publisher?.stop();
      await server?.stop();
    });

    it('switches rendition from the quality menu with frames decoding throughout and no freeze over 500 ms', async () => {
      const page = await browser.newPage();
      try {
        await page.addInitScript(FRAME_GAP_PROBE);
        await page.goto(`${server.httpUrl}/watch/main`);
        const start = await waitUntil('WebRTC playing with the menu filled', async () => {
          const f = await figures(page);
          return f.state === 'playing' && f.protocol === 'webrtc' && f.quality.levels.length === 3 && f.frames > 30 ? f : undefined;
        }, 30_000, 250);
        assert.equal(start.quality.current, 'src');
        assert.equal(start.height, 720);
        await resetGap(page);
        for (const [id, height] of [['360p', 360], ['480p', 480], ['src', 720]] as const) {
          await page.selectOption('#quality', id);
          const switched = await waitUntil(`the picture at ${height} lines`, async () => {
            const f = await figures(page);
            return f.height === height && f.quality.current === id ? f : undefined;
          }, 10_000, 100);
          assert.equal(switched.quality.mode, 'manual');
          await waitUntil('the page to show the level', async () => (await page.locator('#rendition').getAttribute('data-level')) === id, 2_000, 100);
          const later = await waitUntil('1 s more of frames', async () => {
            const f = await figures(page);
            return f.frames >= switched.frames + 25 ? f : undefined;
          }, 5_000, 100);
          assert.ok(later.maxGapMs < 500, `longest gap between frames around the switch to ${id}: ${Math.round(later.maxGapMs)} ms`);
        }
      } finally {
        await page.close();
      }
    });
  });

  describe('WebRTC (WHEP) on a network that gets worse', () => {
    it('steps down by itself when the viewer’s link becomes a lossy bottleneck, with no freeze over 500 ms', async () => {
      // Glasscast and its publisher run in a second namespace; only the link from there to the browser gets the
      // bottleneck, so the publisher's own upload is untouched.
      const ns = await linkedNamespace();
      const dir = mkdtempSync(join(tmpdir(), 'glasscast-abr-'));
      const page = await browser.newPage();
      let log = '';
      try {
        const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
        const server = ns.spawn(process.execPath, ['--import', 'tsx', cli, '--host', '0.0.0.0', '--http-port', '18080', '--rtmp-port', '11935', '--data-dir', dir, '--publish-auth', 'open', '--ladder', '480p=1200k,240p=300k', '--webrtc-bind-address', THERE, '--log-level', 'info'], { stdio: 'pipe' });
        server.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-200_000)));
        server.stderr!.resume(); // never let a full pipe block the server
        const base = `http://${THERE}:18080`;
        await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 30_000, 200);
        ns.spawn('ffmpeg', [
          '-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-f', 'lavfi', '-i', 'testsrc2=size=1280x720:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
          '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '2500k', '-g', '30', '-keyint_min', '30', '-sc_threshold', '0', '-pix_fmt', 'yuv420p',
          '-c:a', 'aac', '-b:a', '128k', '-f', 'flv', 'rtmp://127.0.0.1:11935/live/abr',
        ]);
        await waitForRenditions(base, 'abr', 2);
        await page.addInitScript(FRAME_GAP_PROBE);
        await page.goto(`${base}/watch/abr`);
        await waitUntil('WebRTC playing the source', async () => {
          const f = await figures(page);
          return f.state === 'playing' && f.protocol === 'webrtc' && f.quality.current === 'src' && f.frames > 90 ? f : undefined;
        }, 30_000, 250);
        await new Promise((r) => setTimeout(r, 4000)); // past the start-up settling of the automatic choice
        const before = await figures(page);
        assert.equal(before.quality.current, 'src', 'a clean link keeps the source');
        await resetGap(page);
        // 1.9 Mb/s with a 30-packet queue: the source (~2.6 Mb/s) queues, then loses packets; 480p (1.2 Mb/s) fits.
        const lossBefore = await videoLoss(page);
        ns.bottleneck(1900, 30);
        const switched = await waitUntil('an automatic step down', async () => {
          const f = await figures(page);
          return f.quality.current !== 'src' && f.height < 720 ? f : undefined;
        }, 20_000, 100);
        assert.equal(switched.quality.mode, 'auto');
        await resetGap(page);
        const later = await waitUntil('3 s more of frames', async () => {
          const f = await figures(page);
          return f.frames >= switched.frames + 75 ? f : undefined;
        }, 15_000, 100);
        const loss = await videoLoss(page);
        console.log(`# WHEP auto: src → ${later.quality.current} under a 1.9 Mb/s bottleneck; ${loss.nackCount - lossBefore.nackCount} NACKs; longest frame gap before the switch ${Math.round(switched.maxGapMs)} ms, after it ${Math.round(later.maxGapMs)} ms`);
        assert.ok(loss.nackCount > lossBefore.nackCount, 'the bottleneck really lost packets (the browser NACKed them)');
        assert.ok(switched.maxGapMs < 500, `longest gap between frames from the bottleneck to the switch: ${Math.round(switched.maxGapMs)} ms`);
        assert.ok(later.maxGapMs < 500, `longest gap between frames after the switch: ${Math.round(later.maxGapMs)} ms`);
        assert.match(log, /WHEP viewer adapting rendition/);
      } finally {
        await page.close();
        ns.close();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  });
});
