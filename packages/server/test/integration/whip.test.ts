/**
 * WHIP ingest against an OBS-like non-browser publisher (libdatachannel, H.264 + Opus, Bearer token) over real
 * DTLS-SRTP on loopback: the stream plays over LL-HLS (ffprobe) and WHEP (node-datachannel viewer); wrong keys,
 * a second publisher and bad offers are refused without creating anything; lost packets are NACKed and
 * retransmitted; a joining viewer's PLI reaches the publisher; DELETE ends the stream and a vanished publisher
 * is detected. Runs in the loopback-only network namespace the test runner makes.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ffprobeJson } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { WhepTestClient } from '../support/webrtc-client.js';
import { WhipTestClient } from '../support/whip-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

interface Status {
  state: string;
  playable: boolean;
  webrtc: boolean;
}

describe('WHIP with an OBS-like publisher', { timeout: 240_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  const status = async (name = 'main'): Promise<Status> => (await (await fetch(`${server.httpUrl}/api/v1/streams/${name}`)).json()) as Status;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1', reconnectGraceMs: 3000 });
  });
  after(async () => {
    await server?.stop();
  });

  it('refuses a wrong or missing key with 401 and creates nothing', async () => {
    for (const key of ['wrong-key', undefined]) {
      const client = new WhipTestClient();
      try {
        const res = await client.publish(`${server.httpUrl}/whip/main`, key);
        assert.equal(res.status, 401);
        assert.equal(res.headers.get('www-authenticate'), 'Bearer');
        assert.equal(((await res.json()) as { code: string }).code, 'PUBLISH_KEY_INVALID');
      } finally {
        await client.close();
      }
    }
    // A valid key for another stream does not publish this one.
    const other = await server.app.store.create('other');
    const res = await fetch(`${server.httpUrl}/whip/main`, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${other.key}` }, body: 'v=0\r\n' });
    assert.equal(res.status, 401);
    assert.equal(server.app.registry.get('main'), undefined);
    assert.equal(server.app.whip.sessionCount, 0);
  });

  it('answers 415 for a wrong type, 400 for a bad SDP or an offer without H.264', async () => {
    const post = (type: string, body: string): Promise<Response> =>
      fetch(`${server.httpUrl}/whip/main`, { method: 'POST', headers: { 'content-type': type, authorization: `Bearer ${server.key}` }, body });
    assert.equal((await post('text/plain', 'v=0')).status, 415);
    const bad = await post('application/sdp', 'this is not SDP'.repeat(10));
    assert.equal(bad.status, 400);
    const vp9Only = ['v=0', 'o=- 1 1 IN IP4 127.0.0.1', 's=-', 't=0 0', 'm=video 9 UDP/TLS/RTP/SAVPF 98', 'a=mid:0', 'a=sendonly', 'a=rtpmap:98 VP9/90000', ''].join('\r\n');
    const noCodec = await post('application/sdp', vp9Only);
    assert.equal(noCodec.status, 400);
    assert.equal(((await noCodec.json()) as { code: string }).code, 'NO_COMMON_CODEC');
    assert.equal(server.app.registry.get('main'), undefined);
  });

  it('publishes H.264 + Opus that plays over LL-HLS and WHEP, recovers lost packets, forwards PLIs, refuses a second publisher, and ends on DELETE', async () => {
    const publisher = new WhipTestClient();
    const viewer = new WhepTestClient();
    try {
      const res = await publisher.publish(`${server.httpUrl}/whip/main`, server.key);
      assert.equal(res.status, 201);
      assert.match(res.headers.get('location') ?? '', /^\/whip\/main\/sessions\/[0-9a-f]{32}$/);
      assert.match(res.headers.get('etag') ?? '', /^".+"$/);
      publisher.dropFraction = 0.02; // 2 % of video packets lost on their first send
      await publisher.startMedia();
      await waitUntil('the stream to be live and playable', async () => {
        const s = await status();
        return s.state === 'live' && s.playable && s.webrtc;
      }, 20_000, 200);

      // LL-HLS: H.264 video and AAC audio (Opus transcoded) that ffprobe reads, once a segment is complete.
      await waitUntil('a complete segment', async () => /#EXTINF/.test(await (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).text()), 10_000, 200);
      const probe = (await ffprobeJson(['-show_streams', `${server.httpUrl}/hls/main/index.m3u8`])) as { streams: { codec_name: string; width?: number }[] };
      const codecs = probe.streams.map((s) => s.codec_name).sort();
      assert.deepEqual(codecs, ['aac', 'h264']);
      assert.equal(probe.streams.find((s) => s.codec_name === 'h264')?.width, 640);

      // WHEP: the viewer gets H.264 and Opus, and its join asks the publisher for a keyframe (PLI).
      const plisBefore = publisher.feedback.plis;
      assert.equal((await viewer.connect(`${server.httpUrl}/whep/main`)).status, 201);
      await waitUntil('video and audio at the viewer', () => viewer.packets.filter((p) => p.kind === 'video' && p.marker).length >= 30 && viewer.packets.some((p) => p.kind === 'audio'), 15_000);
      await waitUntil('a PLI forwarded to the publisher', () => publisher.feedback.plis > plisBefore, 5_000);

      // Loss: the server NACKed the dropped packets and the publisher retransmitted them.
      await waitUntil('NACKs for dropped packets', () => publisher.feedback.nackedSequences >= publisher.sent.dropped * 0.8 && publisher.sent.dropped > 5, 10_000);
      assert.ok(publisher.sent.retransmitted > 0);
      // Receiver Reports and REMB tell the publisher how much it may send.
      await waitUntil('receiver reports and REMB', () => publisher.feedback.receiverReports > 0 && publisher.feedback.rembBitrate !== undefined, 5_000);
      assert.ok(Math.abs(publisher.feedback.rembBitrate! - server.app.config.whipMaxBitrate) / server.app.config.whipMaxBitrate < 0.01);
      const publisherStats = server.app.registry.get('main')!.getStats().children.find((c) => c.type === 'publisher')!;
      assert.equal(publisherStats.info['protocol'], 'whip');
      const stats = publisherStats.counters as { frames: number; droppedFrames: number; lostPackets: number };
      assert.ok(stats.frames >= 60, `frames ${stats.frames}`);
      // Every dropped packet is NACKed and resent; one whose resend misses the 200 ms gap wait (this process also
      // runs the publisher, the viewer and ffprobe, so a scheduler stall of that length happens about once in ten
      // runs) costs the rest of its GOP (≤ 30 frames) until the next keyframe. More than one is a failure.
      const detail = `dropped ${stats.droppedFrames} of ${stats.frames} frames; ${stats.lostPackets} packets given up of ${publisher.sent.dropped} dropped, ${publisher.sent.retransmitted} resent`;
      assert.ok(stats.lostPackets <= 1, detail);
      assert.ok(stats.droppedFrames <= 30 + stats.frames * 0.05, detail);

      // A second publisher for the live stream is refused and disturbs nothing.
      const second = new WhipTestClient();
      try {
        const refused = await second.publish(`${server.httpUrl}/whip/main`, server.key);
        assert.equal(refused.status, 409);
      } finally {
        await second.close();
      }
      assert.equal((await status()).state, 'live');

      // DELETE ends the publish and the stream (no reconnect grace: the streamer pressed Stop).
      assert.equal(await publisher.delete(), 200);
      await waitUntil('the stream to end', async () => (await status()).state === 'offline', 5_000);
      const media = await (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).text();
      assert.match(media, /#EXT-X-ENDLIST/);
      assert.equal(server.app.whip.sessionCount, 0);
    } finally {
      await viewer.close();
      if (server.app.whip.sessionCount > 0) await publisher.delete();
      await publisher.close();
    }
  });

  it('detects a publisher that vanishes without DELETE and frees the stream for the next one', async () => {
    const publisher = new WhipTestClient();
    try {
      assert.equal((await publisher.publish(`${server.httpUrl}/whip/main`, server.key)).status, 201);
      await publisher.startMedia();
      await waitUntil('live', async () => (await status()).state === 'live', 20_000, 200);
      await publisher.close(); // no DELETE: media stops, the connection goes away
      await waitUntil('the stream to wait for its publisher', async () => (await status()).state === 'reconnecting', 10_000, 200);
      assert.equal(server.app.whip.sessionCount, 0);
    } finally {
      await publisher.close();
    }
    // Within the grace period a new publish continues the stream.
    const back = new WhipTestClient();
    try {
      assert.equal((await back.publish(`${server.httpUrl}/whip/main`, server.key)).status, 201);
      await back.startMedia();
      await waitUntil('live again', async () => (await status()).state === 'live', 20_000, 200);
      assert.equal(await back.delete(), 200);
    } finally {
      await back.close();
    }
  });
});
