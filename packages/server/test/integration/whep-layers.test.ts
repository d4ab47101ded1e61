/**
 * WebRTC ABR against a non-browser WebRTC client: a viewer moves between the source and transcoded renditions
 * on request and on its own receiver reports, and sees one continuous track (one SSRC, consecutive sequence
 * numbers, increasing timestamps, the new resolution from a keyframe on, all of it decodable).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { parseH264Sps } from '../../src/media/codecs/h264.js';
import { depacketizeH264 } from '../../src/media/rtp/h264-packetizer.js';
import { writeReceiverReport } from '../../src/media/rtp/rtcp.js';
import { FFMPEG, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, waitForRenditions, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { WhepTestClient, type ReceivedPacket } from '../support/webrtc-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

interface LayerState {
  mode: string;
  current: string;
  pending: string | undefined;
  layers: { id: string; width: number; height: number }[];
}

/** Access units (Annex B) and the picture size of each keyframe's SPS, in arrival order. */
function accessUnits(video: ReceivedPacket[]): { units: Buffer[]; sizes: string[] } {
  const units: Buffer[] = [];
  const sizes: string[] = [];
  let current: Buffer[] = [];
  for (const p of video) {
    current.push(p.payload);
    if (!p.marker) continue;
    const nals = depacketizeH264(current);
    current = [];
    const sps = nals.find((n) => (n[0]! & 0x1f) === 7);
    if (sps) {
      const info = parseH264Sps(sps);
      const size = `${info.width}x${info.height}`;
      if (sizes[sizes.length - 1] !== size) sizes.push(size);
    }
    units.push(Buffer.concat(nals.flatMap((n) => [Buffer.from([0, 0, 0, 1]), Buffer.from(n)])));
  }
  return { units, sizes };
}

describe('WebRTC ABR (WHEP layers)', { timeout: 240_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;
  let url: string;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1', ladder: '480p=1200k,240p=300k' });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '1280x720' });
    url = `${server.httpUrl}/whep/main`;
    await waitForRenditions(server.httpUrl, 'main', 2);
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  it('switches rendition on request at a keyframe, with one SSRC, consecutive sequence numbers and increasing timestamps', async () => {
    const client = new WhepTestClient();
    try {
      const res = await client.connect(url);
      assert.equal(res.status, 201);
      assert.match(res.headers.get('link') ?? '', /<\/whep\/main\/sessions\/[0-9a-f]{32}\/layer>; rel="urn:ietf:params:whep:ext:core:layer"/);
      const layerUrl = `${client.location}/layer`;
      const state = async (): Promise<LayerState> => (await (await fetch(layerUrl)).json()) as LayerState;
      const choose = async (id: string): Promise<Response> => fetch(layerUrl, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ encodingId: id }) });
      const frames = (): number => client.packets.filter((p) => p.kind === 'video' && p.marker).length;

      await waitUntil('1 s of source video', () => frames() >= 30, 15_000).catch(async (err: Error) => {
        const status = await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).text();
        throw new Error(`${err.message} (client: ${client.state}, ${JSON.stringify(client.counts)}; server: ${status})`);
      });
      const first = await state();
      assert.equal(first.current, 'src');
      assert.equal(first.mode, 'auto');
      assert.deepEqual(first.layers.map((l) => `${l.id}:${l.width}x${l.height}`), ['src:1280x720', '480p:854x480', '240p:426x240']);

      assert.equal((await choose('240p')).status, 200);
      await waitUntil('the switch to 240p', async () => (await state()).current === '240p', 5_000, 50);
      let mark = frames();
      await waitUntil('1 s of 240p', () => frames() >= mark + 30, 10_000);
      assert.equal((await state()).mode, 'manual');

      assert.equal((await choose('src')).status, 200);
      await waitUntil('the switch back to the source', async () => (await state()).current === 'src', 5_000, 50);
      mark = frames();
      await waitUntil('1 s of source again', () => frames() >= mark + 30, 10_000);

      assert.equal((await choose('1080p')).status, 400, 'an unknown layer is refused');
      // Bad requests: malformed JSON, no or wrong-typed encodingId, an oversized id, a session of another stream.
      const post = (body: string, target = layerUrl): Promise<Response> => fetch(target, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      assert.equal((await post('{"encodingId":')).status, 400);
      assert.equal((await post('{}')).status, 400);
      assert.equal((await post('{"encodingId": 480}')).status, 400);
      assert.equal((await post(JSON.stringify({ encodingId: 'x'.repeat(100_000) }))).status, 400);
      assert.equal((await post('{"encodingId":"auto"}', layerUrl.replace('/whep/main/', '/whep/other/'))).status, 404);
      assert.equal((await fetch(`${server.httpUrl}/whep/main/sessions/${'0'.repeat(32)}/layer`)).status, 404);
      assert.equal((await state()).current, 'src', 'none of them moved the viewer');
      assert.equal((await choose('auto')).status, 200);

      const video = client.packets.filter((p) => p.kind === 'video');
      assert.equal(new Set(video.map((p) => p.ssrc)).size, 1, 'one SSRC throughout');
      for (let i = 1; i < video.length; i++) {
        const gap = (video[i]!.sequenceNumber - video[i - 1]!.sequenceNumber) & 0xffff;
        assert.equal(gap, 1, `sequence ${video[i - 1]!.sequenceNumber} → ${video[i]!.sequenceNumber} at packet ${i}`);
        const dt = (video[i]!.timestamp - video[i - 1]!.timestamp) >>> 0;
        assert.ok(dt < 0x80000000 && dt <= 90_000, `timestamp step ${dt} at packet ${i}`);
      }
      const { units, sizes } = accessUnits(video);
      assert.deepEqual(sizes, ['1280x720', '426x240', '1280x720'], 'each switch starts with the new rendition’s keyframe');
      const decode = spawnSync(FFMPEG, ['-v', 'error', '-f', 'h264', '-i', 'pipe:0', '-f', 'null', '-'], { input: Buffer.concat(units) });
      assert.equal(decode.status, 0, decode.stderr.toString());
      const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { webrtcStats: { renditionSwitches: number; viewersByRendition: Record<string, number> } };
      assert.equal(status.webrtcStats.renditionSwitches, 2);
      assert.deepEqual(status.webrtcStats.viewersByRendition, { src: 1 });
    } finally {
      await client.close();
    }
  });

  it('steps down by itself when its receiver reports heavy loss', async () => {
    const client = new WhepTestClient();
    try {
      assert.equal((await client.connect(url)).status, 201);
      const layerUrl = `${client.location}/layer`;
      const state = async (): Promise<LayerState> => (await (await fetch(layerUrl)).json()) as LayerState;
      await waitUntil('video', () => client.packets.some((p) => p.kind === 'video'), 15_000);
      const ssrc = client.packets.find((p) => p.kind === 'video')!.ssrc;
      // What a browser's receiver says on a bad network: 30 % of the packets lost in the last interval.
      const report = writeReceiverReport(1, [{ ssrc, fractionLost: 0.3, cumulativeLost: 100, extendedHighestSequence: 0, jitter: 0, lastSenderReport: 0, delaySinceLastSenderReport: 0 }]);
      await waitUntil('a step down', async () => {
        client.sendVideoRtcp(report);
        const s = await state();
        return s.current !== 'src' ? s : undefined;
      }, 10_000, 500);
      const s = await state();
      assert.equal(s.mode, 'auto');
      assert.notEqual(s.current, 'src');
    } finally {
      await client.close();
    }
  });
});
