/**
 * WHEP against a non-browser WebRTC client (node-datachannel) over real DTLS-SRTP on loopback: H.264 and Opus
 * arrive and decode, NACKed packets are retransmitted, bad requests get clear 4xx answers, and 100 viewers
 * joining and leaving leak nothing. Runs in the loopback-only network namespace the test runner makes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { depacketizeH264 } from '../../src/media/rtp/h264-packetizer.js';
import { opusPacketSamples } from '../../src/media/formats/ogg.js';
import { FFMPEG, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { LossyUdpProxy } from '../support/lossy-udp-proxy.js';
import { WhepTestClient } from '../support/webrtc-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';
const openFds = (): number => readdirSync('/proc/self/fd').length;

describe('WHEP with a non-browser WebRTC client', { timeout: 240_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;
  let url: string;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1' });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    url = `${server.httpUrl}/whep/main`;
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  it('receives H.264 that ffmpeg decodes and Opus timed packet by packet', async () => {
    const client = new WhepTestClient();
    try {
      const res = await client.connect(url);
      assert.equal(res.status, 201);
      assert.match(res.headers.get('location') ?? '', /^\/whep\/main\/sessions\/[0-9a-f]{32}$/);
      assert.match(res.headers.get('content-type') ?? '', /application\/sdp/);
      assert.match(client.answerSdp, /a=rtpmap:102 H264\/90000/);
      assert.match(client.answerSdp, /a=rtpmap:111 opus\/48000\/2/);
      await waitUntil('3 s of media', () => client.packets.filter((p) => p.kind === 'video' && p.marker).length >= 90, 15_000);

      // Video: reassemble access units and let ffmpeg decode them.
      const video = client.packets.filter((p) => p.kind === 'video');
      const units: Buffer[] = [];
      let current: Buffer[] = [];
      for (const p of video) {
        current.push(p.payload);
        if (p.marker) {
          units.push(Buffer.concat(depacketizeH264(current).flatMap((n) => [Buffer.from([0, 0, 0, 1]), Buffer.from(n)])));
          current = [];
        }
      }
      const decode = spawnSync(FFMPEG, ['-v', 'error', '-f', 'h264', '-i', 'pipe:0', '-f', 'null', '-'], { input: Buffer.concat(units) });
      assert.equal(decode.status, 0, decode.stderr.toString());
      const count = spawnSync(FFMPEG, ['-v', 'error', '-f', 'h264', '-i', 'pipe:0', '-map', '0:v', '-f', 'framecrc', '-'], { input: Buffer.concat(units) });
      const frames = count.stdout.toString().split('\n').filter((l) => /^0,/.test(l)).length;
      assert.ok(frames >= units.length - 1 && frames >= 85, `ffmpeg decoded ${frames} of ${units.length} access units`);
      // The first access unit a viewer gets is a keyframe with SPS/PPS (fast join from the cached GOP).
      assert.equal(depacketizeH264([video[0]!.payload])[0]![0]! & 0x1f, 7);

      // Audio: Opus packets, each one's duration apart (10 ms frames from the audio job).
      const audio = client.packets.filter((p) => p.kind === 'audio');
      assert.ok(audio.length > 100, `audio packets: ${audio.length}`);
      for (let i = 1; i < Math.min(audio.length, 50); i++) {
        assert.equal((audio[i]!.timestamp - audio[i - 1]!.timestamp + 2 ** 32) % 2 ** 32, opusPacketSamples(audio[i - 1]!.payload));
      }

    } finally {
      await client.close();
    }
  });

  it('retransmits packets that were really lost on the way when the viewer NACKs them', async () => {
    // Media goes through a relay that drops every 25th video packet from the server.
    const client = new WhepTestClient();
    let proxy: LossyUdpProxy | undefined;
    // Losses start after the join burst (the cached GOP): a retransmission far behind the newest packet falls
    // outside the receiver's SRTP replay window and is discarded there.
    let dropping = false;
    try {
      const res = await client.connect(url, async (sdp) => {
        const port = Number(/a=candidate:\S+ \d \S+ \d+ 127\.0\.0\.1 (\d+) typ host/.exec(sdp)?.[1]);
        const droppedOnce = new Set<number>();
        // Each chosen packet is lost once; its retransmission gets through, as on a real lossy link.
        proxy = new LossyUdpProxy(port, (pt, seq) => {
          if (!dropping || pt !== 102 || seq % 25 !== 0 || droppedOnce.has(seq)) return false;
          droppedOnce.add(seq);
          return true;
        });
        await proxy.start();
        return proxy.rewriteAnswer(sdp);
      }, { hideCandidates: true });
      assert.equal(res.status, 201);
      await waitUntil('media through the relay', () => client.counts.video > 50, 15_000);
      await new Promise((r) => setTimeout(r, 500));
      dropping = true;
      for (let i = 0; i < 30; i++) {
        client.nackGaps();
        await new Promise((r) => setTimeout(r, 100));
      }
      dropping = false;
      for (let i = 0; i < 10; i++) {
        client.nackGaps();
        await new Promise((r) => setTimeout(r, 100));
      }
      await new Promise((r) => setTimeout(r, 500)); // let the last retransmissions land
      const lost = proxy!.dropped.filter((d) => d.payloadType === 102).map((d) => d.sequenceNumber);
      assert.ok(lost.length >= 5, `the relay dropped ${lost.length} video packets`);
      const have = new Set(client.packets.filter((p) => p.kind === 'video').map((p) => p.sequenceNumber));
      // Losses before the first packet the client got cannot be seen as gaps; count those it asked for.
      const asked = lost.filter((seq) => client.nacked.has(seq));
      const recovered = asked.filter((seq) => have.has(seq));
      assert.ok(asked.length >= lost.length - 3 && asked.length >= 5, `NACKed ${asked.length} of ${lost.length} lost packets`);
      assert.ok(recovered.length >= asked.length * 0.95, `recovered ${recovered.length} of ${asked.length} NACKed packets`);
      const session = [...(server.app.whep as unknown as { sessions: Map<string, { stats: { retransmitted: number } }> }).sessions.values()][0];
      assert.ok((session?.stats.retransmitted ?? 0) >= recovered.length, 'the server counted its retransmissions');
    } finally {
      await client.close();
      proxy?.close();
    }
  });

  it('answers bad requests with clear 4xx codes and stays healthy', async () => {
    const post = (body: string, type = 'application/sdp', target = url): Promise<Response> => fetch(target, { method: 'POST', headers: { 'content-type': type }, body });
    const malformed = await post('this is not SDP');
    assert.equal(malformed.status, 400);
    assert.equal(((await malformed.json()) as { code: string }).code, 'BAD_SDP');
    const hostile = await post(`v=0\r\n${'a=x\r\n'.repeat(20000)}`);
    assert.ok(hostile.status === 400 || hostile.status === 413, `oversized SDP: ${hostile.status}`);
    assert.equal((await post('v=0', 'text/plain')).status, 415);
    const vp8 = new WhepTestClient({ videoCodecs: 'vp8' });
    try {
      const res = await post(await vp8.offer());
      assert.equal(res.status, 400);
      assert.equal(((await res.json()) as { code: string }).code, 'NO_COMMON_CODEC');
    } finally {
      await vp8.close();
    }
    const unknown = new WhepTestClient();
    try {
      assert.equal((await unknown.connect(`${server.httpUrl}/whep/nosuchstream`)).status, 404);
    } finally {
      await unknown.close();
    }
    assert.equal((await fetch(`${url}/sessions/${'0'.repeat(32)}`, { method: 'DELETE' })).status, 404);
    // A real session cannot be deleted through another stream's path.
    const owner = new WhepTestClient();
    try {
      assert.equal((await owner.connect(url)).status, 201);
      const id = owner.location!.split('/').pop()!;
      assert.equal((await fetch(`${server.httpUrl}/whep/other/sessions/${id}`, { method: 'DELETE' })).status, 404);
      const patch = await fetch(owner.location!, { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag' }, body: 'a=ice-ufrag:zzzz\r\na=ice-pwd:yyyyyyyyyyyyyyyyyyyyyy\r\n' });
      assert.equal(patch.status, 405, 'ICE restart is refused clearly');
      assert.equal((await fetch(owner.location!, { method: 'DELETE' })).status, 200);
      owner.location = undefined;
    } finally {
      await owner.close();
    }
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200);
    assert.equal((await fetch(url, { method: 'OPTIONS' })).headers.get('accept-post'), 'application/sdp');
  });

  it('leaks nothing when 100 viewers join and leave in a loop', async () => {
    const fdsBefore = openFds();
    for (let i = 0; i < 100; i++) {
      const client = new WhepTestClient();
      client.keepPackets = false;
      try {
        const res = await client.connect(url);
        assert.equal(res.status, 201);
        if (i % 10 === 0) await waitUntil('media', () => client.counts.video > 0, 10_000, 20);
      } finally {
        // Closed on every path: an open WebRTC client would keep the test file's process alive after a failure.
        await client.close();
      }
    }
    await waitUntil('every session to be gone', () => server.app.whep.sessionCount === 0, 10_000);
    await new Promise((r) => setTimeout(r, 500));
    const fdsAfter = openFds();
    assert.ok(fdsAfter <= fdsBefore + 5, `open file descriptors ${fdsBefore} → ${fdsAfter}`);
    assert.equal(server.app.whep.source('main')?.viewerCount, 0);
  });
});
