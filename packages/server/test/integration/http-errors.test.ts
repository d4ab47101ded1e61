/**
 * One error catalogue over HTTP (issue 10): every 4xx/5xx of every route — API, WHIP, WHEP, LL-HLS, static
 * files, unknown routes, framework errors (body too large, malformed JSON, unsupported content type) — is
 * `application/problem+json` (RFC 9457) with a `code` from the catalogue and that code's status. A claimed stream
 * refuses a second publisher over RTMP and WHIP alike. /healthz reports what runs.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ERROR_CATALOGUE, isErrorCode } from '../../src/core/errors.js';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { RtmpTestClient } from '../support/rtmp-client.js';
import { waitUntil } from '../support/wait.js';
import { WhipTestClient } from '../support/whip-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

/** An offer with no video at all (WHIP and WHEP of a video stream refuse it). */
const AUDIO_ONLY_OFFER = 'v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:0\r\na=recvonly\r\na=rtpmap:111 opus/48000/2\r\n';

describe('HTTP errors as problem details', { timeout: 120_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess | undefined;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1' });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { size: '640x360', zerolatency: true, gopSeconds: 1 });
    await waitUntil('the stream to play', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { playable: boolean; webrtc: boolean }).webrtc && (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).ok, 20_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  it('answers every bad request on every route with problem+json and a catalogue code', async () => {
    const base = server.httpUrl;
    const sdp = { 'content-type': 'application/sdp' };
    const json = { 'content-type': 'application/json' };
    const session = `${'0'.repeat(32)}`;
    const cases: { what: string; path: string; init?: RequestInit; code: string }[] = [
      { what: 'unknown route', path: '/nope', code: 'NOT_FOUND' },
      { what: 'unknown API route', path: '/api/v1/nothing', code: 'NOT_FOUND' },
      { what: 'unknown method on an API route', path: '/api/v1/streams', init: { method: 'DELETE' }, code: 'NOT_FOUND' },
      { what: 'missing static file', path: '/assets/nope.js', code: 'NOT_FOUND' },
      { what: 'HLS of an unknown stream', path: '/hls/nope/index.m3u8', code: 'STREAM_NOT_FOUND' },
      { what: 'HLS unknown rendition', path: '/hls/main/9999p/media.m3u8', code: 'STREAM_NOT_FOUND' },
      { what: 'HLS part without msn', path: '/hls/main/src/media.m3u8?_HLS_part=1', code: 'BAD_REQUEST' },
      { what: 'HLS msn not a number', path: '/hls/main/src/media.m3u8?_HLS_msn=abc', code: 'BAD_REQUEST' },
      { what: 'HLS msn far ahead', path: '/hls/main/src/media.m3u8?_HLS_msn=999999', code: 'BAD_REQUEST' },
      { what: 'HLS object of another epoch', path: '/hls/main/src/00000000/seg1.m4s', code: 'NOT_FOUND' },
      { what: 'WHEP offer of the wrong type', path: '/whep/main', init: { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { what: 'WHEP garbage SDP', path: '/whep/main', init: { method: 'POST', headers: sdp, body: 'hello' }, code: 'BAD_SDP' },
      { what: 'WHEP of an unknown stream', path: '/whep/nope', init: { method: 'POST', headers: sdp, body: AUDIO_ONLY_OFFER }, code: 'STREAM_NOT_FOUND' },
      { what: 'WHEP offer without video', path: '/whep/main', init: { method: 'POST', headers: sdp, body: AUDIO_ONLY_OFFER }, code: 'NO_COMMON_CODEC' },
      { what: 'WHEP offer too large', path: '/whep/main', init: { method: 'POST', headers: sdp, body: `v=0\r\n${'a=x\r\n'.repeat(20_000)}` }, code: 'BODY_TOO_LARGE' },
      { what: 'WHEP trickle to an unknown session', path: `/whep/main/sessions/${session}`, init: { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag' }, body: 'a=mid:0' }, code: 'SESSION_NOT_FOUND' },
      { what: 'WHEP DELETE of an unknown session', path: `/whep/main/sessions/${session}`, init: { method: 'DELETE' }, code: 'SESSION_NOT_FOUND' },
      { what: 'WHEP layer of an unknown session', path: `/whep/main/sessions/${session}/layer`, code: 'SESSION_NOT_FOUND' },
      { what: 'WHEP layer with malformed JSON', path: `/whep/main/sessions/${session}/layer`, init: { method: 'POST', headers: json, body: '{"encodingId":' }, code: 'BAD_REQUEST' },
      { what: 'WHEP layer with a JSON body over 1 MiB', path: `/whep/main/sessions/${session}/layer`, init: { method: 'POST', headers: json, body: JSON.stringify({ encodingId: 'x'.repeat(1_100_000) }) }, code: 'BODY_TOO_LARGE' },
      { what: 'WHEP layer with an unsupported content type', path: `/whep/main/sessions/${session}/layer`, init: { method: 'POST', headers: { 'content-type': 'text/xml' }, body: '<x/>' }, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { what: 'WHIP without a key', path: '/whip/main', init: { method: 'POST', headers: sdp, body: AUDIO_ONLY_OFFER }, code: 'PUBLISH_KEY_INVALID' },
      { what: 'WHIP with a wrong key', path: '/whip/main', init: { method: 'POST', headers: { ...sdp, authorization: 'Bearer nope' }, body: AUDIO_ONLY_OFFER }, code: 'PUBLISH_KEY_INVALID' },
      { what: 'WHIP offer of the wrong type', path: '/whip/main', init: { method: 'POST', headers: { 'content-type': 'text/plain', authorization: `Bearer ${server.key}` }, body: 'x' }, code: 'UNSUPPORTED_MEDIA_TYPE' },
      { what: 'WHIP garbage SDP', path: '/whip/main', init: { method: 'POST', headers: { ...sdp, authorization: `Bearer ${server.key}` }, body: 'hello' }, code: 'BAD_SDP' },
      { what: 'WHIP offer without video', path: '/whip/main', init: { method: 'POST', headers: { ...sdp, authorization: `Bearer ${server.key}` }, body: AUDIO_ONLY_OFFER.replace('recvonly', 'sendonly') }, code: 'NO_COMMON_CODEC' },
      { what: 'WHIP trickle to an unknown session', path: `/whip/main/sessions/${session}`, init: { method: 'PATCH', headers: { 'content-type': 'application/trickle-ice-sdpfrag' }, body: 'a=mid:0' }, code: 'SESSION_NOT_FOUND' },
      { what: 'WHIP DELETE of an unknown session', path: `/whip/main/sessions/${session}`, init: { method: 'DELETE' }, code: 'SESSION_NOT_FOUND' },
    ];
    const failures: string[] = [];
    for (const c of cases) {
      const res = await fetch(`${base}${c.path}`, c.init);
      const type = res.headers.get('content-type') ?? '';
      const text = await res.text();
      let body: { type?: string; title?: string; status?: number; detail?: string; code?: string } = {};
      try {
        body = JSON.parse(text) as typeof body;
      } catch {
        // reported below
      }
      const spec = isErrorCode(body.code) ? ERROR_CATALOGUE[body.code] : undefined;
      const ok =
        type.startsWith('application/problem+json') && body.code === c.code && spec !== undefined && res.status === spec.status && body.status === res.status &&
        body.title === spec.title && typeof body.detail === 'string' && body.detail.length > 0 && body.type === `/api/v1/errors#${c.code}`;
      if (!ok) failures.push(`${c.what}: ${res.status} ${type} ${text.slice(0, 200)} (expected ${c.code})`);
    }
    assert.deepEqual(failures, []);
    // The catalogue the `type` URIs point into.
    const catalogue = (await (await fetch(`${base}/api/v1/errors`)).json()) as { errors: Record<string, { status: number; rtmp: string; srt: number; fatal: boolean }> };
    assert.equal(catalogue.errors['STREAM_ALREADY_PUBLISHING']?.status, 409);
    assert.equal(catalogue.errors['STREAM_ALREADY_PUBLISHING']?.srt, 1409);
    assert.equal((await fetch(`${base}/healthz`)).status, 200, 'the walk broke nothing');
  });

  it('refuses a second publisher of a live stream over RTMP and WHIP alike, and disturbs nothing', async () => {
    // The stream is live over RTMP: a WHIP publisher with the right key gets 409 with the catalogue's code.
    const whip = new WhipTestClient();
    try {
      const res = await whip.publish(`${server.httpUrl}/whip/main`, server.key);
      assert.equal(res.status, 409);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(((await res.json()) as { code: string }).code, 'STREAM_ALREADY_PUBLISHING');
    } finally {
      await whip.close();
    }
    // A second RTMP publisher gets the catalogue's RTMP answer.
    const rtmp = await RtmpTestClient.connect(server.app.ports.rtmp);
    await rtmp.handshake();
    const status = await rtmp.publish('live', server.key);
    assert.equal(status['code'], ERROR_CATALOGUE.STREAM_ALREADY_PUBLISHING.rtmp);
    await rtmp.waitClosed();
    assert.equal(server.app.registry.get('main')?.state, 'live', 'the first publisher is still live');

    // Now the other way round: a WHIP publisher holds a second stream; RTMP is refused on it.
    const created = await server.app.store.create('second');
    const holder = new WhipTestClient();
    try {
      assert.equal((await holder.publish(`${server.httpUrl}/whip/second`, created.key)).status, 201);
      const other = await RtmpTestClient.connect(server.app.ports.rtmp);
      await other.handshake();
      const refused = await other.publish('live', created.key);
      assert.equal(refused['code'], 'NetStream.Publish.BadName');
      assert.match(String(refused['description']), /already has a live publisher/);
      await other.waitClosed();
    } finally {
      await holder.close();
    }
  });

  it('reports on /healthz what runs: streams, the WebRTC library, jobs, RTMP internal errors', async () => {
    const res = await fetch(`${server.httpUrl}/healthz`);
    assert.equal(res.status, 200);
    const health = (await res.json()) as { status: string; streams: number; live: number; webrtc: { library: string }; jobs: { troubled: unknown[] }; rtmp: { internalErrors: number; connections: number } };
    assert.equal(health.status, 'ok');
    assert.ok(health.streams >= 1 && health.live >= 1, JSON.stringify(health));
    assert.equal(health.webrtc.library, 'ok');
    assert.deepEqual(health.jobs.troubled, []);
    assert.equal(health.rtmp.internalErrors, 0);
    assert.ok(health.rtmp.connections >= 1, 'the publisher');
  });
});
