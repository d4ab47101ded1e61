/**
 * A second, independent WebRTC implementation against Glasscast: GStreamer's webrtcbin (Debian 12, 1.22, driven
 * by test/support/gst-webrtc.py) on a test host of its own (a network namespace linked by a veth pair: libnice
 * gathers no loopback candidates). Its max-bundle offers put the second m-line at port 0 with `a=bundle-only`
 * (RFC 8843 §7); Glasscast must read them in both m-line orders, play video and audio to it, take its WHIP
 * publish, and play an audio-only stream.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { runFfmpeg, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { HERE, linkedNamespace, type LinkedNamespace } from '../support/netns.js';
import { waitUntil } from '../support/wait.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';
const SCRIPT = fileURLToPath(new URL('../support/gst-webrtc.py', import.meta.url));

interface GstResult {
  videoFrames?: number;
  audioBuffers?: number;
  width?: number;
  height?: number;
  connectionState?: string;
  offer: string;
  answer?: string;
  error?: number;
  body?: string;
}

/** Runs the GStreamer client on the other host; resolves with its JSON line (bounded by `timeoutMs`). */
async function gst(ns: LinkedNamespace, args: string[], timeoutMs = 40_000): Promise<GstResult> {
  const child: ChildProcess = ns.spawn('/usr/bin/python3', [SCRIPT, ...args], { stdio: 'pipe' });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  await once(child, 'exit');
  clearTimeout(timer);
  const line = out.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as GstResult;
  } catch {
    throw new Error(`gst-webrtc.py ${args[0]} printed no result (exit ${child.exitCode}, ${child.signalCode}): ${err}`);
  }
}

describe('interop with GStreamer webrtcbin', { timeout: 240_000, skip: isolated ? false : 'needs the private network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let ns: LinkedNamespace;
  let publisher: FfmpegProcess | undefined;
  let radio: FfmpegProcess | undefined;
  let base: string;

  before(async () => {
    ns = await linkedNamespace();
    // Listen on the link too (only this test's namespaces exist here): the other host reaches us at HERE.
    server = await startTestServer({ host: '0.0.0.0' });
    base = `http://${HERE}:${server.app.ports.http}`;
    publisher = publishTestPattern(`rtmp://127.0.0.1:${server.app.ports.rtmp}/live/${server.key}`, { size: '640x360', zerolatency: true, gopSeconds: 1 });
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await radio?.stop();
    await server?.stop();
    ns?.close();
  });

  for (const order of ['video,audio', 'audio,video']) {
    it(`plays video and audio to a ${order.replace(',', '-first, ')}-bundle-only WHEP offer`, async () => {
      const result = await gst(ns, ['whep', `${base}/whep/main`, order, '6']);
      assert.equal(result.error, undefined, `WHEP refused the offer: ${result.error} ${result.body ?? ''}`);
      const second = order.split(',')[1]!;
      assert.match(result.offer, new RegExp(`m=${second} 0 [^\\r]+\\r\\n(?:[^m][^\\r]*\\r\\n)*a=bundle-only`), 'the offer really is bundle-only');
      assert.match(result.answer ?? '', /a=rtpmap:\d+ opus\/48000\/2/, 'Opus answered as opus/48000/2 (RFC 7587 §7)');
      assert.ok((result.videoFrames ?? 0) >= 60, `decoded ${result.videoFrames} video frames, ${result.audioBuffers} audio buffers; connection ${result.connectionState}`);
      assert.equal(`${result.width}x${result.height}`, '640x360');
      assert.ok((result.audioBuffers ?? 0) >= 50, `decoded ${result.audioBuffers} audio buffers`);
    });
  }

  it('takes a WHIP publish from it (bundle-only offer): the stream goes live with H.264 and Opus', async () => {
    const created = await server.app.store.create('gst');
    const done = gst(ns, ['whip', `${base}/whip/gst`, created.key, '8']);
    await waitUntil('the GStreamer publish to go live', () => server.app.registry.get('gst')?.state === 'live', 20_000, 100);
    const stream = server.app.registry.get('gst')!;
    assert.deepEqual(stream.tracks.map((t) => t.codec), ['h264', 'opus']);
    await waitUntil('frames from GStreamer', () => (stream.getStats().counters['frames'] ?? 0) > 150, 10_000, 100);
    await waitUntil('LL-HLS with AAC from the Opus', async () => {
      const r = await fetch(`${server.httpUrl}/hls/gst/index.m3u8`);
      return r.ok && /CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"/.test(await r.text());
    }, 15_000, 250);
    const result = await done;
    assert.equal(result.error, undefined, `WHIP refused the offer: ${result.body ?? ''}`);
    assert.match(result.offer, /a=bundle-only/);
  });

  it('plays an audio-only stream over WHEP', async () => {
    const created = await server.app.store.create('radio');
    radio = runFfmpeg(['-re', '-f', 'lavfi', '-i', 'sine=frequency=330:sample_rate=48000', '-c:a', 'aac', '-b:a', '128k', '-f', 'flv', `rtmp://127.0.0.1:${server.app.ports.rtmp}/live/${created.key}`]);
    await waitUntil('WebRTC for the audio-only stream', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/radio`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
    const result = await gst(ns, ['whep', `${base}/whep/radio`, 'video,audio', '4']);
    assert.equal(result.error, undefined, `WHEP refused the offer: ${result.error} ${result.body ?? ''}`);
    assert.ok((result.audioBuffers ?? 0) >= 50, `decoded ${result.audioBuffers} audio buffers`);
    assert.equal(result.videoFrames, 0, 'no video: the stream has none');
  });
});
