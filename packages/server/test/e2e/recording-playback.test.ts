/**
 * End to end (issue 13): while a broadcast is recorded, hls.js in Debian's headless Chromium plays the
 * recording's EVENT playlist from its first second, and the playlist's end moves on while it plays; a WHIP
 * publisher's broadcast is recorded too (its Opus bridged to AAC in the recorded segments).
 */
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { after, describe, it } from 'node:test';
import type { Browser } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { ffprobeJson, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { WhipTestClient } from '../support/whip-client.js';

const HLS_JS = createRequire(import.meta.url).resolve('hls.js/dist/hls.min.js');

interface Recording {
  id: string;
  state: string;
  durationMs: number;
  playback: { hls: string };
}

async function recordings(server: TestServer): Promise<Recording[]> {
  const res = await fetch(`${server.httpUrl}/api/v1/recordings`, { headers: { authorization: `Bearer ${server.apiToken}` } });
  return ((await res.json()) as { items: Recording[] }).items;
}

describe('recording playback', { timeout: 240_000 }, () => {
  const servers: TestServer[] = [];
  const publishers: FfmpegProcess[] = [];
  let browser: Browser | undefined;
  after(async () => {
    await browser?.close();
    for (const p of publishers) await p.stop();
    for (const s of servers) await s.stop();
  });

  it('plays the EVENT playlist of a recording in progress from its start in hls.js while its end moves on', async () => {
    const server = await startTestServer({ record: 'all', reconnectGraceMs: 1000 });
    servers.push(server);
    const publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(publisher);
    await waitUntil('a recording with 6 s', async () => ((await recordings(server))[0]?.durationMs ?? 0) >= 6000, 30_000, 250);
    const [r] = await recordings(server);

    browser = await launchChromium();
    const page = await browser.newPage();
    await page.goto(`${server.httpUrl}/healthz`); // same origin as the playlist
    await page.addScriptTag({ path: HLS_JS });
    await page.evaluate(`(() => {
      const video = document.createElement('video');
      video.muted = true;
      document.body.appendChild(video);
      // A recording is watched from its beginning: startPosition 0 (hls.js would start an EVENT playlist near its end).
      const hls = new Hls({ startPosition: 0 });
      window.rec = { hls, video, durations: [], errors: [] };
      hls.on(Hls.Events.LEVEL_UPDATED, (_e, data) => window.rec.durations.push(data.details.totalduration));
      hls.on(Hls.Events.ERROR, (_e, data) => { if (data.fatal) window.rec.errors.push(data.details); });
      hls.loadSource(${JSON.stringify(r!.playback.hls)});
      hls.attachMedia(video);
      video.play();
    })()`);
    const state = (): Promise<{ time: number; frames: number; durations: number[]; errors: string[]; type: string | undefined }> =>
      page.evaluate(`({ time: window.rec.video.currentTime, frames: window.rec.video.getVideoPlaybackQuality().totalVideoFrames, durations: window.rec.durations, errors: window.rec.errors, type: window.rec.hls.levels[0]?.details?.type })`);
    await waitUntil('playback', async () => (await state()).frames > 10, 30_000, 250);
    const start = await state();
    assert.ok(start.time < 3, `playback starts at the recording's beginning (at ${start.time} s)`);
    assert.equal(start.type, 'EVENT');
    await waitUntil('the playlist to grow while playing', async () => {
      const s = await state();
      return s.durations.length >= 2 && s.durations[s.durations.length - 1]! > s.durations[0]! + 2 && s.time > start.time + 2;
    }, 30_000, 500);
    assert.deepEqual((await state()).errors, []);
    await page.close();
  });

  it('records a WHIP broadcast with its audio', async () => {
    const server = await startTestServer({ record: 'all', reconnectGraceMs: 500 });
    servers.push(server);
    const client = new WhipTestClient();
    try {
      assert.equal((await client.publish(`${server.httpUrl}/whip/main`, server.key)).status, 201);
      await client.startMedia();
      await waitUntil('a recording with 6 s', async () => ((await recordings(server))[0]?.durationMs ?? 0) >= 6000, 30_000, 250);
      await client.delete();
    } finally {
      await client.close();
    }
    await waitUntil('the recording ready', async () => (await recordings(server))[0]?.state === 'ready', 20_000, 250);
    const [r] = await recordings(server);
    const probed = (await ffprobeJson(['-show_entries', 'format=duration:stream=codec_name', r!.playback.hls])) as { format: { duration: string }; streams: { codec_name: string }[] };
    assert.deepEqual(probed.streams.map((s) => s.codec_name).sort(), ['aac', 'h264']);
    assert.ok(Math.abs(Number(probed.format.duration) - r!.durationMs / 1000) < 1, `${probed.format.duration} s vs ${r!.durationMs} ms`);
  });
});
