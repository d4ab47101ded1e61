/**
 * Recording (issue 13) with real parts: ffmpeg publishes over RTMP, the recording is read back over HTTP by
 * ffprobe (its HLS playlist and its MP4 download), and a server killed with SIGKILL mid-broadcast leaves a
 * playable recording of what it had synced.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, it } from 'node:test';
import { ffprobeJson, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

async function api(base: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? (JSON.parse(text) as Record<string, unknown>) : {} };
}

interface Recording {
  id: string;
  state: string;
  durationMs: number;
  sizeBytes: number;
  playback: { hls: string; mp4: string };
}

async function recordings(base: string, token: string): Promise<Recording[]> {
  const r = await api(base, token, 'GET', '/api/v1/recordings');
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body['items'] as Recording[];
}

/** Format duration (s) and per-stream facts ffprobe reads from `input`. */
async function probe(input: string): Promise<{ duration: number; streams: { codec_type: string; start_time?: string; duration?: string }[] }> {
  const j = (await ffprobeJson(['-show_entries', 'format=duration:stream=codec_type,start_time,duration', input], 60_000)) as { format: { duration: string }; streams: { codec_type: string; start_time?: string; duration?: string }[] };
  return { duration: Number(j.format.duration), streams: j.streams };
}

describe('recording', { timeout: 300_000 }, () => {
  const servers: TestServer[] = [];
  const publishers: FfmpegProcess[] = [];
  // Each test's publishers (live x264 encoders) and servers (with their ladder jobs) end with it: left running
  // until the file ends they saturated the 2 cores, and later tests' thumbnails and server starts timed out.
  afterEach(async () => {
    for (const p of publishers.splice(0)) await p.stop();
    for (const s of servers.splice(0)) await s.stop();
  });

  it('records a 30 s RTMP broadcast: an EVENT playlist while live, then VOD and an MP4 of 30 s with audio and video in sync', async () => {
    const server = await startTestServer({ record: 'all', reconnectGraceMs: 1000 });
    servers.push(server);
    const publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, seconds: 30, size: '640x360' });
    publishers.push(publisher);

    // While live: one recording, its playlist an EVENT one whose end moves on.
    await waitUntil('a recording in progress with segments', async () => {
      const [r] = await recordings(server.httpUrl, server.apiToken);
      return r?.state === 'recording' && r.durationMs >= 4000;
    }, 30_000, 250);
    const [live] = await recordings(server.httpUrl, server.apiToken);
    const first = await (await fetch(live!.playback.hls)).text();
    assert.match(first, /#EXT-X-PLAYLIST-TYPE:EVENT/);
    assert.doesNotMatch(first, /#EXT-X-ENDLIST/);
    assert.match(first, /#EXT-X-MAP:URI="src\/init1\.mp4"/);
    const count = (t: string): number => (t.match(/^src\/seg\d+\.m4s$/gm) ?? []).length;
    await waitUntil('the live edge to move', async () => count(await (await fetch(live!.playback.hls)).text()) > count(first), 15_000, 500);
    const seg = await fetch(`${server.httpUrl}/vod/${live!.id}/src/seg0.m4s`);
    assert.equal(seg.status, 200);
    assert.equal(seg.headers.get('content-type'), 'video/iso.segment');

    await once(publisher.child, 'exit');
    await waitUntil('the recording to be ready', async () => (await recordings(server.httpUrl, server.apiToken))[0]?.state === 'ready', 30_000, 250);
    const [done] = await recordings(server.httpUrl, server.apiToken);
    const text = await (await fetch(done!.playback.hls)).text();
    assert.match(text, /#EXT-X-PLAYLIST-TYPE:VOD/);
    assert.match(text, /#EXT-X-ENDLIST/);
    assert.ok(Math.abs(done!.durationMs - 30_000) <= 1000, `recorded ${done!.durationMs} ms`);

    const hls = await probe(done!.playback.hls);
    assert.ok(Math.abs(hls.duration - 30) <= 1, `the playlist lasts ${hls.duration} s`);
    assert.deepEqual(hls.streams.map((s) => s.codec_type).sort(), ['audio', 'video']);

    const thumb = await fetch(`${server.httpUrl}/vod/${done!.id}/thumbnail.jpg`);
    assert.equal(thumb.status, 200);
    assert.equal(thumb.headers.get('content-type'), 'image/jpeg');
    assert.deepEqual([...Buffer.from(await thumb.arrayBuffer()).subarray(0, 2)], [0xff, 0xd8]);

    const mp4 = await fetch(done!.playback.mp4);
    assert.equal(mp4.status, 200);
    assert.equal(mp4.headers.get('content-type'), 'video/mp4');
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-mp4-'));
    try {
      const file = join(dir, 'download.mp4');
      writeFileSync(file, Buffer.from(await mp4.arrayBuffer()));
      const m = await probe(file);
      assert.ok(Math.abs(m.duration - 30) <= 1, `the MP4 lasts ${m.duration} s`);
      const video = m.streams.find((s) => s.codec_type === 'video')!;
      const audio = m.streams.find((s) => s.codec_type === 'audio')!;
      // In sync: both start together and last as long as each other.
      assert.ok(Math.abs(Number(video.start_time) - Number(audio.start_time)) < 0.1, `starts ${video.start_time} / ${audio.start_time}`);
      assert.ok(Math.abs(Number(video.duration) - Number(audio.duration)) < 0.25, `durations ${video.duration} / ${audio.duration}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('starts and stops on request, keeps a private stream private, and deletes a recording with its files', async () => {
    const server = await startTestServer({ reconnectGraceMs: 1000 });
    servers.push(server);
    const token = server.apiToken;
    assert.equal((await api(server.httpUrl, token, 'PATCH', '/api/v1/streams/main', { visibility: 'private' })).status, 200);
    const publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(publisher);
    await waitUntil('the stream to be live', async () => server.app.registry.get('main')?.state === 'live', 20_000, 100);
    await new Promise((r) => setTimeout(r, 3000));
    assert.deepEqual(await recordings(server.httpUrl, token), [], 'nothing is recorded by default');

    const started = await api(server.httpUrl, token, 'POST', '/api/v1/streams/main/recording');
    assert.equal(started.status, 202, JSON.stringify(started.body));
    await waitUntil('a recording with 3 s', async () => ((await recordings(server.httpUrl, token))[0]?.durationMs ?? 0) >= 3000, 20_000, 250);
    const stopped = await api(server.httpUrl, token, 'DELETE', '/api/v1/streams/main/recording');
    assert.equal(stopped.status, 200, JSON.stringify(stopped.body));
    assert.equal(stopped.body['state'], 'ready');
    const id = String(stopped.body['id']);

    // Private: no token → 401 problem; with a playback token → the playlist, every URI carrying the token.
    const refused = await fetch(`${server.httpUrl}/vod/${id}/index.m3u8`);
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    const minted = await api(server.httpUrl, token, 'POST', '/api/v1/streams/main/playback-tokens', { ttlSeconds: 60 });
    assert.equal(minted.status, 201, JSON.stringify(minted.body));
    const q = `token=${encodeURIComponent(String(minted.body['token']))}`;
    const playlist = await (await fetch(`${server.httpUrl}/vod/${id}/index.m3u8?${q}`)).text();
    assert.match(playlist, /#EXT-X-ENDLIST/);
    for (const uri of playlist.split('\n').filter((l) => l && !l.startsWith('#'))) assert.ok(uri.endsWith(q), uri);
    assert.equal((await fetch(`${server.httpUrl}/vod/${id}/src/seg0.m4s`)).status, 401);
    assert.equal((await fetch(`${server.httpUrl}/vod/${id}/src/seg0.m4s?${q}`)).status, 200);

    assert.equal((await api(server.httpUrl, token, 'DELETE', `/api/v1/recordings/${id}`)).status, 204);
    assert.equal((await api(server.httpUrl, token, 'GET', `/api/v1/recordings/${id}`)).status, 404);
    assert.equal((await fetch(`${server.httpUrl}/vod/${id}/src/seg0.m4s?${q}`)).status, 404);
    assert.equal((await fetch(`${server.httpUrl}/vod/rec_..%2F..%2Fetc/src/seg0.m4s`)).status, 404);
  });

  it('deletes the oldest ended recording past the disk quota, never the one in progress', async () => {
    // 640x360 at 2.5 Mb/s: ~0.3 MB a second. A 6 s recording is ~2 MB; the quota is 3 MB.
    const server = await startTestServer({ record: 'all', reconnectGraceMs: 500, recordingQuotaMb: 3 });
    servers.push(server);
    const token = server.apiToken;
    const one = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, seconds: 6, size: '640x360' });
    publishers.push(one);
    await once(one.child, 'exit');
    await waitUntil('the first recording ready', async () => (await recordings(server.httpUrl, token))[0]?.state === 'ready', 20_000, 250);
    const [first] = await recordings(server.httpUrl, token);
    assert.ok(first!.sizeBytes > 1_000_000 && first!.sizeBytes < 3_000_000, `first recording ${first!.sizeBytes} bytes`);

    const two = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(two);
    await waitUntil('the first recording deleted for the quota', async () => {
      const all = await recordings(server.httpUrl, token);
      return all.length === 1 && all[0]!.id !== first!.id;
    }, 40_000, 500);
    assert.equal((await fetch(`${server.httpUrl}/vod/${first!.id}/index.m3u8`)).status, 404);
    // The one in progress outgrows the quota alone and is kept.
    await waitUntil('the live recording past the quota', async () => ((await recordings(server.httpUrl, token))[0]?.sizeBytes ?? 0) > 3_200_000, 40_000, 500);
    const [live] = await recordings(server.httpUrl, token);
    assert.equal(live!.state, 'recording');
    await two.stop();
    await waitUntil('it ends ready and stays (the newest ended one)', async () => (await recordings(server.httpUrl, token))[0]?.state === 'ready', 20_000, 250);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal((await recordings(server.httpUrl, token)).length, 1);
  });

  it('stops recording, never the live stream, when the disk has too little free space', async () => {
    const server = await startTestServer({ record: 'all', reconnectGraceMs: 500, recordingMinFreeMb: 1e12 });
    servers.push(server);
    const publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(publisher);
    await waitUntil('the recording stopped', async () => (await recordings(server.httpUrl, server.apiToken))[0]?.state === 'failed', 20_000, 250);
    const [r] = (await api(server.httpUrl, server.apiToken, 'GET', '/api/v1/recordings')).body['items'] as { error: string }[];
    assert.match(r!.error, /free/);
    assert.equal(server.app.recorder.counters.stoppedForDiskSpace, 1);
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { state: string; playable: boolean };
    assert.equal(status.state, 'live');
    assert.equal(status.playable, true);
    const before = (await (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).text()).match(/#EXTINF/g)?.length ?? 0;
    await waitUntil('the live playlist going on', async () => ((await (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).text()).match(/#EXTINF/g)?.length ?? 0) > before, 10_000, 250);
  });

  it('keeps a publisher\'s reconnect within the grace period in one recording, with a discontinuity', async () => {
    const server = await startTestServer({ record: 'all', reconnectGraceMs: 8000 });
    servers.push(server);
    const one = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(one);
    await waitUntil('4 s recorded', async () => ((await recordings(server.httpUrl, server.apiToken))[0]?.durationMs ?? 0) >= 4000, 20_000, 250);
    await one.stop();
    const two = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(two);
    const [r] = await recordings(server.httpUrl, server.apiToken);
    await waitUntil('the second session recorded', async () => /#EXT-X-DISCONTINUITY\n(#EXT-X-MAP[^\n]*\n)?#EXT-X-PROGRAM-DATE-TIME[^\n]*\n#EXTINF[^\n]*\nsrc\/seg\d+\.m4s\n#EXT-X-PROGRAM-DATE-TIME/.test(await (await fetch(r!.playback.hls)).text()), 20_000, 250);
    await two.stop();
    await waitUntil('one ready recording', async () => (await recordings(server.httpUrl, server.apiToken))[0]?.state === 'ready', 20_000, 250);
    const all = await recordings(server.httpUrl, server.apiToken);
    assert.equal(all.length, 1, 'one recording for the broadcast');
    const p = await probe(all[0]!.playback.hls);
    assert.ok(Math.abs(p.duration - all[0]!.durationMs / 1000) < 1.5, `${p.duration} s vs ${all[0]!.durationMs} ms`);
    // Recorder figures in /metrics.
    const metrics = await (await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.apiToken}` } })).text();
    assert.match(metrics, /^glasscast_recorder_events_total\{kind="segmentsWritten"\} [1-9]\d*$/m);
    assert.match(metrics, /^glasscast_recordings_active 0$/m);
  });

  it('records ladder renditions asked for, served under a multivariant playlist', async () => {
    const server = await startTestServer({ ladder: '240p=300k', reconnectGraceMs: 500 });
    servers.push(server);
    const publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '640x360' });
    publishers.push(publisher);
    await waitUntil('the 240p rendition', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { renditions: unknown[] }).renditions.length === 1, 40_000, 250);
    assert.equal((await api(server.httpUrl, server.apiToken, 'POST', '/api/v1/streams/main/recording', { renditions: ['240p'] })).status, 202);
    await waitUntil('4 s recorded', async () => ((await recordings(server.httpUrl, server.apiToken))[0]?.durationMs ?? 0) >= 4000, 20_000, 250);
    const stopped = await api(server.httpUrl, server.apiToken, 'DELETE', '/api/v1/streams/main/recording');
    assert.deepEqual(stopped.body['renditions'], ['src', '240p']);
    const id = String(stopped.body['id']);
    const index = await (await fetch(`${server.httpUrl}/vod/${id}/index.m3u8`)).text();
    assert.deepEqual(index.match(/^(src|240p)\/media\.m3u8$/gm), ['src/media.m3u8', '240p/media.m3u8']);
    const low = (await ffprobeJson(['-show_entries', 'stream=codec_type,height', `${server.httpUrl}/vod/${id}/240p/media.m3u8`])) as { streams: { codec_type: string; height?: number }[] };
    assert.equal(low.streams.find((s) => s.codec_type === 'video')?.height, 240);
  });

  it('renews a live stream\'s thumbnail, a JPEG that decodes, every few seconds', async () => {
    const server = await startTestServer({ reconnectGraceMs: 500 });
    servers.push(server);
    const publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, size: '1280x720' });
    publishers.push(publisher);
    const url = `${server.httpUrl}/thumbnails/main.jpg`;
    await waitUntil('a thumbnail', async () => (await fetch(url)).status === 200, 20_000, 250);
    const first = await fetch(url);
    assert.equal(first.headers.get('content-type'), 'image/jpeg');
    const a = Buffer.from(await first.arrayBuffer());
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-thumb-'));
    try {
      writeFileSync(join(dir, 'a.jpg'), a);
      const probed = (await ffprobeJson(['-show_entries', 'stream=codec_name,width,height', join(dir, 'a.jpg')])) as { streams: { codec_name: string; width: number; height: number }[] };
      assert.deepEqual(probed.streams[0], { codec_name: 'mjpeg', width: 640, height: 360 });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    let b = a;
    await waitUntil('a newer thumbnail', async () => {
      b = Buffer.from(await (await fetch(url)).arrayBuffer());
      return !b.equals(a);
    }, 15_000, 500);
    assert.deepEqual([...b.subarray(0, 2)], [0xff, 0xd8]);
    assert.equal((await fetch(`${server.httpUrl}/thumbnails/nothing.jpg`)).status, 404);
  });

  it('keeps what was synced when the server is killed with SIGKILL 20 s into a broadcast', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-record-crash-'));
    let child: ChildProcess | undefined;
    let publisher: FfmpegProcess | undefined;
    const start = async (): Promise<{ base: string; rtmp: string; token: string | undefined; key: string | undefined }> => {
      child = spawn(process.execPath, ['--import', 'tsx', CLI, '--host', '127.0.0.1', '--http-port', '0', '--webrtc-tcp-port', '0', '--rtmp-port', '0', '--srt-port', '0', '--data-dir', dataDir, '--log-level', 'warn', '--ladder', 'none', '--record', 'all'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitUntil('the server to start', () => out.includes('Glasscast is running') && /Watch:\s+http/.test(out), 30_000);
      return { base: /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!, rtmp: /(rtmp:\/\/127\.0\.0\.1:\d+\/live)/.exec(out)?.[1] ?? '', token: /API token:\s+(\S+)/.exec(out)?.[1], key: /[Kk]ey:\s+(\S+)/.exec(out)?.[1] };
    };
    try {
      const first = await start();
      assert.ok(first.token && first.key && first.rtmp, 'the first start prints the API token, the RTMP server and the key');
      publisher = publishTestPattern(`${first.rtmp}/${first.key}`, { gopSeconds: 1, size: '640x360' });
      await waitUntil('a recording', async () => (await recordings(first.base, first.token!)).length === 1, 20_000, 250);
      const began = Date.now();
      await new Promise((r) => setTimeout(r, 20_000 - (Date.now() - began)));
      child!.kill('SIGKILL');
      await once(child!, 'exit');
      await publisher.stop();

      const second = await start();
      const [r] = await recordings(second.base, first.token!);
      assert.equal(r?.state, 'ready', JSON.stringify(r));
      assert.ok(r!.durationMs >= 18_000, `recorded ${r!.durationMs} ms`);
      const p = await probe(`${second.base}/vod/${r!.id}/index.m3u8`);
      assert.ok(p.duration >= 18, `plays ${p.duration} s`);
      assert.deepEqual(p.streams.map((s) => s.codec_type).sort(), ['audio', 'video']);
      child!.kill('SIGTERM');
      await once(child!, 'exit');
    } finally {
      await publisher?.stop();
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
