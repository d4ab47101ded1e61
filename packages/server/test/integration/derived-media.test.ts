/**
 * Derived media as supervised renditions (issue 10): an OBS-like 1280x720 x264 source with B-frames and AAC over
 * RTMP, at the default ladder, gets ONE video job (the 480p/360p rungs and the B-frame-free copy WebRTC plays,
 * from one decode) and ONE audio job (AAC → Opus): two ffmpeg processes, no more. Killing either brings its
 * renditions back within 5 s while the source plays on; stopping Glasscast leaves none.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_LADDER } from '../../src/transcode/ladder.js';
import { liveFfmpegPids } from '../../src/transcode/ffmpeg-path.js';
import { depacketizeH264 } from '../../src/media/rtp/h264-packetizer.js';
import { FFMPEG, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, waitForRenditions, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { WhepTestClient } from '../support/webrtc-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('derived media of an OBS-like B-frame source: one video job, one audio job', { timeout: 240_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess | undefined;
  let client: WhepTestClient | undefined;

  before(async () => {
    server = await startTestServer({ ladder: DEFAULT_LADDER, webrtcBindAddress: '127.0.0.1' });
    // x264 veryfast, profile high: B-frames (x264's default), 2 s GOP, 2.5 Mb/s, AAC 48 kHz — OBS's defaults.
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { size: '1280x720', gopSeconds: 2 });
    await waitForRenditions(server.httpUrl, 'main', 2, 40_000);
  });
  after(async () => {
    await client?.close();
    await publisher?.stop();
    await server?.stop();
  });

  it('runs at most two ffmpeg processes for the stream; LL-HLS has 480p and 360p; WebRTC plays the B-frame-free copy smoothly', async () => {
    const app = server.app;
    assert.equal(app.registry.get('main')?.hasBFrames, true, 'the source has B-frames');
    const pids = app.transcode.pids('main');
    assert.ok(pids.video && pids.audio, `a video and an audio job run: ${JSON.stringify(pids)}`);
    assert.deepEqual(liveFfmpegPids().sort(), [pids.video, pids.audio].sort(), 'and no other ffmpeg of the server');
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { renditions: { name: string }[]; transcode: { outputs: string[]; audio: { from: string; to: string } } };
    assert.deepEqual(status.renditions.map((r) => r.name), ['480p', '360p']);
    assert.deepEqual(status.transcode.outputs, ['webrtc', '480p', '360p'], 'the rungs and the copy come from one run');
    assert.deepEqual([status.transcode.audio.from, status.transcode.audio.to], ['aac', 'opus']);
    const multivariant = await (await fetch(`${server.httpUrl}/hls/main/index.m3u8`)).text();
    assert.deepEqual(multivariant.split('\n').filter((l) => l.endsWith('.m3u8')), ['src/media.m3u8', '480p/media.m3u8', '360p/media.m3u8'], 'the WebRTC copy is not an HLS variant');

    client = new WhepTestClient();
    assert.equal((await client.connect(`${server.httpUrl}/whep/main`)).status, 201);
    // The audio job starts beside the video job, not in step with it: wait for both.
    await waitUntil('4 s of video and 3 s of Opus', () => client!.packets.filter((p) => p.kind === 'video' && p.marker).length >= 120 && client!.packets.filter((p) => p.kind === 'audio').length > 150, 20_000);
    const video = client.packets.filter((p) => p.kind === 'video');
    // Frames in arrival order: presentation times never go back (no B-frame reordering reaches WebRTC), 30 fps,
    // and the first second aside, no frame arrives more than 250 ms after the one before.
    const frames: { timestamp: number; at: number; units: Buffer[] }[] = [];
    let current: Buffer[] = [];
    for (const p of video) {
      current.push(p.payload);
      if (p.marker) {
        frames.push({ timestamp: p.timestamp, at: p.at, units: current });
        current = [];
      }
    }
    for (let i = 1; i < frames.length; i++) {
      const step = (frames[i]!.timestamp - frames[i - 1]!.timestamp) >>> 0;
      assert.ok(step > 0 && step <= 3 * 3003, `frame ${i}: timestamp step ${step} ticks`);
    }
    const settled = frames.filter((f) => f.at - frames[0]!.at > 1000);
    const gaps = settled.slice(1).map((f, i) => f.at - settled[i]!.at);
    assert.ok(Math.max(...gaps) < 250, `longest gap between frames ${Math.max(...gaps)} ms`);
    const annexB = Buffer.concat(frames.flatMap((f) => depacketizeH264(f.units).flatMap((n) => [Buffer.from([0, 0, 0, 1]), Buffer.from(n)])));
    const probe = spawnSync(FFMPEG, ['-v', 'error', '-f', 'h264', '-i', 'pipe:0', '-f', 'null', '-'], { input: annexB });
    assert.equal(probe.status, 0, probe.stderr.toString());
    const audio = client.packets.filter((p) => p.kind === 'audio');
    assert.ok(audio.length > 150, `Opus from the audio job: ${audio.length} packets`);
  });

  it('brings each job’s renditions back within 5 s of its ffmpeg being killed, while the source keeps playing', async () => {
    const app = server.app;
    const source = app.llhls.muxer('main')!;
    for (const kind of ['video', 'audio'] as const) {
      const pid = app.transcode.pids('main')[kind]!;
      const jobStats = (): { counters: Record<string, number> } => app.transcode.stats('main').find((j) => j.info['kind'] === kind)!;
      const restartsBefore = jobStats().counters['restarts'] ?? 0;
      const outBefore = jobStats().counters['framesOut'] ?? 0;
      const sourcePartsBefore = source.nextPart;
      const rung = app.llhls.muxer('main', '480p')!;
      const rungPartsBefore = rung.nextPart;
      const audioBefore = client!.counts.audio;
      process.kill(pid, 'SIGKILL');
      const killedAt = Date.now();
      await waitUntil(`the ${kind} job to restart`, () => (jobStats().counters['restarts'] ?? 0) > restartsBefore, 5_000, 50);
      if (kind === 'video') {
        // The rungs make parts again and the copy is live again (WHEP viewers are on it).
        await waitUntil('new 480p parts and the copy live', () => rung.nextPart >= rungPartsBefore + 3 && app.registry.get('main')!.rendition('webrtc')?.stream.state === 'live', 10_000, 50);
      } else {
        await waitUntil('Opus frames again, reaching the WebRTC viewer', () => (jobStats().counters['framesOut'] ?? 0) > outBefore + 25 && client!.counts.audio > audioBefore + 25, 10_000, 50);
      }
      const restoredMs = Date.now() - killedAt;
      assert.ok(restoredMs < 5_000, `${kind} renditions back after ${restoredMs} ms`);
      assert.ok(source.nextPart > sourcePartsBefore + Math.floor(restoredMs / 1000), `the source kept making parts (${source.nextPart - sourcePartsBefore} in ${restoredMs} ms)`);
      const newPid = app.transcode.pids('main')[kind];
      assert.ok(newPid && newPid !== pid && !alive(pid), 'a new ffmpeg replaced the killed one');
      assert.equal(liveFfmpegPids().length, 2, 'still two ffmpeg processes');
    }
  });

  it('leaves no ffmpeg running once Glasscast stops', async () => {
    const pids = liveFfmpegPids();
    assert.equal(pids.length, 2);
    await client?.close();
    client = undefined;
    await server.stop();
    await waitUntil('every job’s ffmpeg to exit', () => pids.every((p) => !alive(p)) && liveFfmpegPids().length === 0, 5_000, 50);
  });
});
