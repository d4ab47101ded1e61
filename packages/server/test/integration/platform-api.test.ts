/**
 * The platform over real HTTP with real publishers and viewers: stream CRUD with API keys and scopes, key
 * rotation with a grace period (RTMP and WHIP), private streams over WHEP and LL-HLS with playback tokens,
 * kicking one WHEP viewer, the admission hook refusing RTMP, WHIP and WHEP, /metrics parsed as Prometheus text,
 * the OpenAPI document validated, and 429s with Retry-After.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import SwaggerParser from '@apidevtools/swagger-parser';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { RtmpTestClient } from '../support/rtmp-client.js';
import { waitUntil } from '../support/wait.js';
import { WhepTestClient } from '../support/webrtc-client.js';
import { WhipTestClient } from '../support/whip-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

/** A JSON request to the API; returns status, headers and body. */
async function call(server: TestServer, method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<{ status: number; headers: Headers; body: Record<string, unknown> }> {
  const headers: Record<string, string> = {};
  if (options.token) headers['authorization'] = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`${server.httpUrl}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await res.text();
  let body: Record<string, unknown>;
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    body = { text };
  }
  return { status: res.status, headers: res.headers, body };
}

/** RTMP publish status code for `key` (publish, read onStatus, hang up). */
async function rtmpPublishCode(server: TestServer, key: string): Promise<string> {
  const client = await RtmpTestClient.connect(server.app.ports.rtmp);
  try {
    await client.handshake();
    const status = await client.publish('live', key);
    return String(status['code']);
  } finally {
    client.close();
  }
}

describe('stream management API', { timeout: 120_000 }, () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
  });

  it('creates, reads, lists, changes and deletes streams with an API key; refuses without one or without the scope', async () => {
    const admin = server.apiToken;
    assert.match(admin, /^gcs_[0-9a-f]{12}_/);
    const refused = await call(server, 'POST', '/api/v1/streams', { body: { name: 'talk' } });
    assert.equal(refused.status, 401);
    assert.equal(refused.headers.get('content-type'), 'application/problem+json; charset=utf-8');
    assert.equal(refused.body['code'], 'API_KEY_REQUIRED');
    assert.equal((await call(server, 'POST', '/api/v1/streams', { token: 'gcs_000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', body: { name: 'talk' } })).body['code'], 'API_KEY_INVALID');

    const created = await call(server, 'POST', '/api/v1/streams', { token: admin, body: { name: 'talk', visibility: 'private', title: 'Keynote' } });
    assert.equal(created.status, 201);
    assert.equal(created.body['name'], 'talk');
    assert.equal(created.body['visibility'], 'private');
    const key = (created.body['key'] as { key: string }).key;
    assert.equal(key.length, 32);
    assert.equal((await call(server, 'POST', '/api/v1/streams', { token: admin, body: { name: 'talk' } })).status, 409);
    assert.equal((await call(server, 'POST', '/api/v1/streams', { token: admin, body: { name: '../x' } })).body['code'], 'BAD_REQUEST');
    await call(server, 'POST', '/api/v1/streams', { token: admin, body: { name: 'backstage', visibility: 'unlisted' } });
    await call(server, 'POST', '/api/v1/streams', { token: admin, body: { name: 'lobby' } });

    // The public list shows public streams only and never a key; an API key with streams:read sees all.
    const publicList = await call(server, 'GET', '/api/v1/streams');
    const publicNames = (publicList.body['streams'] as { name: string }[]).map((s) => s.name);
    assert.deepEqual(publicNames.sort(), ['lobby', 'main']);
    assert.doesNotMatch(JSON.stringify(publicList.body), new RegExp(key));
    const all = await call(server, 'GET', '/api/v1/streams?limit=2', { token: admin });
    assert.equal((all.body['streams'] as unknown[]).length, 2);
    assert.ok(all.body['nextCursor'], 'a cursor to the next page');
    const next = await call(server, 'GET', `/api/v1/streams?limit=2&cursor=${String(all.body['nextCursor'])}`, { token: admin });
    assert.deepEqual([...(all.body['streams'] as { name: string }[]), ...(next.body['streams'] as { name: string }[])].map((s) => s.name), ['backstage', 'lobby', 'main', 'talk']);
    assert.equal((await call(server, 'GET', '/api/v1/streams/backstage')).status, 200, 'unlisted plays by name');
    assert.equal((await call(server, 'GET', '/api/v1/streams/talk')).status, 401, 'private needs a token');

    // A key with only streams:read cannot write.
    const reader = await call(server, 'POST', '/api/v1/api-keys', { token: admin, body: { name: 'dashboard', scopes: ['streams:read'] } });
    assert.equal(reader.status, 201);
    const readerToken = String(reader.body['token']);
    assert.equal((await call(server, 'GET', '/api/v1/streams/talk/key', { token: readerToken })).body['key'], key);
    const denied = await call(server, 'PATCH', '/api/v1/streams/talk', { token: readerToken, body: { title: 'x' } });
    assert.equal(denied.status, 403);
    assert.equal(denied.body['code'], 'SCOPE_MISSING');

    const patched = await call(server, 'PATCH', '/api/v1/streams/talk', { token: admin, body: { title: 'Keynote 2', visibility: 'unlisted' } });
    assert.equal(patched.status, 200);
    assert.equal(patched.body['title'], 'Keynote 2');
    assert.equal((await call(server, 'GET', '/api/v1/streams/talk')).status, 200, 'now unlisted');

    const keys = await call(server, 'GET', '/api/v1/api-keys', { token: admin });
    assert.equal((keys.body['items'] as unknown[]).length, 2);
    assert.doesNotMatch(JSON.stringify(keys.body), /gcs_[0-9a-f]{12}_[A-Za-z0-9_-]{32}/, 'tokens are never listed');
    assert.equal((await call(server, 'DELETE', `/api/v1/api-keys/${String(reader.body['id'])}`, { token: admin })).status, 204);
    assert.equal((await call(server, 'GET', '/api/v1/streams/talk/key', { token: readerToken })).body['code'], 'API_KEY_INVALID', 'a revoked key stops at once');

    assert.equal((await call(server, 'DELETE', '/api/v1/streams/lobby', { token: admin })).status, 204);
    assert.equal((await call(server, 'GET', '/api/v1/streams/lobby/admin', { token: admin })).status, 404);
    assert.equal((await call(server, 'DELETE', '/api/v1/streams/lobby', { token: admin })).status, 404);
  });

  it('rotates a key: the old one publishes (RTMP, WHIP) during the grace period only; a live publisher on it is not cut', async () => {
    const admin = server.apiToken;
    const created = await call(server, 'POST', '/api/v1/streams', { token: admin, body: { name: 'rotating' } });
    const oldKey = (created.body['key'] as { key: string }).key;
    // A publisher live on the old key stays live through a rotation with no grace.
    const live = publishTestPattern(`${server.rtmpUrl}/${oldKey}`, { size: '320x180', gopSeconds: 1 });
    try {
      await waitUntil('the publisher to be live', () => server.app.registry.get('rotating')?.state === 'live', 20_000);
      const rotated = await call(server, 'POST', '/api/v1/streams/rotating/key/rotate', { token: admin, body: { graceSeconds: 3 } });
      assert.equal(rotated.status, 200);
      const newKey = String(rotated.body['key']);
      assert.notEqual(newKey, oldKey);
      assert.ok(rotated.body['previousKeyExpiresAt']);
      await new Promise((r) => setTimeout(r, 500));
      assert.equal(server.app.registry.get('rotating')?.state, 'live', 'the live publisher is not cut');
      await live.stop();
      await waitUntil('the stream to end', () => server.app.registry.get('rotating') === undefined || server.app.registry.get('rotating')?.state !== 'live', 15_000);
      server.app.registry.get('rotating')?.close('test');

      // Within the grace period the old key still publishes over RTMP …
      assert.equal(await rtmpPublishCode(server, oldKey), 'NetStream.Publish.Start');
      await waitUntil('the unstarted stream to be released', () => server.app.registry.get('rotating') === undefined, 5000);
      // … and after it, neither RTMP nor WHIP takes it; the new key works.
      await waitUntil('the grace period to end', () => Date.parse(String(rotated.body['previousKeyExpiresAt'])) < Date.now() - 100, 6000);
      assert.equal(await rtmpPublishCode(server, oldKey), 'NetStream.Publish.BadName');
      const whip = await fetch(`${server.httpUrl}/whip/rotating`, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${oldKey}` }, body: 'v=0\r\n' });
      assert.equal(whip.status, 401);
      assert.equal(await rtmpPublishCode(server, newKey), 'NetStream.Publish.Start');
    } finally {
      await live.stop();
    }
  });

  it('publishes an OpenAPI 3.1 document that validates and lists every /api/v1 route', async () => {
    const doc = (await (await fetch(`${server.httpUrl}/api/docs/json`)).json()) as { openapi: string; paths: Record<string, Record<string, unknown>> };
    assert.equal(doc.openapi, '3.1.0');
    await SwaggerParser.validate(structuredClone(doc) as never);
    const documented = new Set(Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path.replace(/\{(\w+)\}/g, ':$1')}`)));
    const apiRoutes = server.app.routes.filter((r) => r.split(' ')[1]!.startsWith('/api/v1/') && !r.endsWith('/api/v1/errors'));
    assert.ok(apiRoutes.length >= 20, `${apiRoutes.length} routes`);
    for (const route of apiRoutes) assert.ok(documented.has(route), `${route} is in the OpenAPI document`);
    assert.equal((await fetch(`${server.httpUrl}/api/docs`)).status, 200, 'the UI is served');
  });

  it("accepts ES256 playback tokens from an external issuer's JWKS, bound to their stream", async () => {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' };
    const jwks = createServer((_req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys: [jwk] }));
    });
    await new Promise<void>((r) => jwks.listen(0, '127.0.0.1', r));
    const external = await startTestServer({ playbackJwksUrl: `http://127.0.0.1:${(jwks.address() as AddressInfo).port}/.well-known/jwks.json`, playbackJwtIssuer: 'https://auth.example' });
    try {
      await call(external, 'PATCH', '/api/v1/streams/main', { token: external.apiToken, body: { visibility: 'private' } });
      const sign = (claims: Record<string, unknown>, issuer = 'https://auth.example'): Promise<string> =>
        new SignJWT(claims).setProtectedHeader({ alg: 'ES256', kid: 'k1' }).setIssuer(issuer).setExpirationTime('5m').sign(privateKey);
      assert.equal((await call(external, 'GET', `/api/v1/streams/main?token=${await sign({ stream: 'main', sub: 'v1' })}`)).status, 200);
      assert.equal((await call(external, 'GET', `/api/v1/streams/main?token=${await sign({ stream: 'other' })}`)).status, 403);
      assert.equal((await call(external, 'GET', `/api/v1/streams/main?token=${await sign({ stream: 'main' }, 'https://evil.example')}`)).body['code'], 'PLAYBACK_TOKEN_INVALID');
    } finally {
      await external.stop();
      await new Promise((r) => jwks.close(r));
    }
  });

  it('answers 429 with Retry-After past the rate limit', async () => {
    const limited = await startTestServer({ rateLimitApi: 5, rateLimitAuthFailures: 3 });
    try {
      const statuses: number[] = [];
      let retryAfter: string | null = null;
      for (let i = 0; i < 8; i++) {
        const r = await fetch(`${limited.httpUrl}/api/v1/streams`);
        statuses.push(r.status);
        if (r.status === 429) retryAfter = r.headers.get('retry-after');
      }
      assert.deepEqual(statuses.slice(0, 5), [200, 200, 200, 200, 200]);
      assert.equal(statuses[7], 429);
      assert.ok(Number(retryAfter) >= 1, `Retry-After ${retryAfter}`);
      // Failed authentications per address: past 3, even a right key waits.
      const bad = async (): Promise<number> => (await fetch(`${limited.httpUrl}/whip/main`, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: 'Bearer wrong' }, body: 'v=0\r\n' })).status;
      assert.deepEqual([await bad(), await bad(), await bad(), await bad()], [401, 401, 401, 429]);
    } finally {
      await limited.stop();
    }
  });
});

describe('private streams, kicking a viewer, admission and metrics', { timeout: 180_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;
  let admission: Server;
  let admissionUrl: string;
  /** What the admission hook was asked, and its answer for the next ones. */
  const asked: { action: string; protocol: string; stream: string }[] = [];
  let deny = false;

  before(async () => {
    admission = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        asked.push(JSON.parse(body) as { action: string; protocol: string; stream: string });
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(deny ? { allow: false, reason: 'not on the guest list' } : { allow: true }));
      });
    });
    await new Promise<void>((r) => admission.listen(0, '127.0.0.1', r));
    admissionUrl = `http://127.0.0.1:${(admission.address() as AddressInfo).port}/admit`;
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1', admissionUrl });
    await call(server, 'PATCH', '/api/v1/streams/main', { token: server.apiToken, body: { visibility: 'private' } });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('the stream to play', () => server.app.llhls.muxer('main')?.ready === true && server.app.whep.playable('main'), 30_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
    await new Promise((r) => admission?.close(r));
  });

  it('refuses WHEP and LL-HLS (playlist, part) without a token, plays with one, refuses after it expires', async () => {
    // No token: nothing served, whatever the request.
    for (const path of ['/hls/main/index.m3u8', '/hls/main/src/media.m3u8']) {
      const r = await fetch(`${server.httpUrl}${path}`);
      assert.equal(r.status, 401, path);
      assert.equal(r.headers.get('content-type'), 'application/problem+json; charset=utf-8');
      assert.equal(((await r.json()) as { code: string }).code, 'PLAYBACK_TOKEN_REQUIRED');
    }
    const noToken = new WhepTestClient();
    try {
      assert.equal((await noToken.connect(`${server.httpUrl}/whep/main`)).status, 401);
    } finally {
      await noToken.close();
    }
    const forged = await fetch(`${server.httpUrl}/hls/main/index.m3u8?token=eyJhbGciOiJIUzI1NiJ9.eyJzdHJlYW0iOiJtYWluIn0.AAAA`);
    assert.equal(((await forged.json()) as { code: string }).code, 'PLAYBACK_TOKEN_INVALID');

    const minted = await call(server, 'POST', '/api/v1/streams/main/playback-tokens', { token: server.apiToken, body: { ttlSeconds: 4, viewerId: 'alice' } });
    assert.equal(minted.status, 201);
    const token = String(minted.body['token']);
    // LL-HLS: the token is carried into every URI of every playlist.
    const multivariant = await (await fetch(`${server.httpUrl}/hls/main/index.m3u8?token=${token}`)).text();
    assert.match(multivariant, new RegExp(`src/media\\.m3u8\\?token=${token.replace(/\./g, '\\.')}`));
    const media = await fetch(`${server.httpUrl}/hls/main/src/media.m3u8?token=${token}`);
    assert.equal(media.status, 200);
    const playlist = await media.text();
    const part = /#EXT-X-PART:[^\n]*URI="([^"]+)"/.exec(playlist)?.[1];
    assert.ok(part && part.endsWith(`?token=${token}`), `part URI carries the token: ${part}`);
    assert.match(/#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)?.[1] ?? '', /\?token=/);
    assert.equal((await fetch(`${server.httpUrl}/hls/main/src/${part}`)).status, 200, 'a part with the token');
    assert.equal((await fetch(`${server.httpUrl}/hls/main/src/${part!.split('?')[0]}`)).status, 401, 'the same part without it');
    const other = await call(server, 'POST', '/api/v1/streams', { token: server.apiToken, body: { name: 'other', visibility: 'private' } });
    assert.equal(other.status, 201);
    const otherToken = String((await call(server, 'POST', '/api/v1/streams/other/playback-tokens', { token: server.apiToken })).body['token']);
    assert.equal((await fetch(`${server.httpUrl}/hls/main/index.m3u8?token=${otherToken}`)).status, 403, "another stream's token");

    const viewer = new WhepTestClient();
    try {
      assert.equal((await viewer.connect(`${server.httpUrl}/whep/main`, undefined, { token })).status, 201);
      await waitUntil('video over WebRTC', () => viewer.packets.some((p) => p.kind === 'video'), 15_000);
      const sessions = await call(server, 'GET', '/api/v1/streams/main/sessions', { token: server.apiToken });
      const items = sessions.body['items'] as { role: string; protocol: string; viewerId: string | null }[];
      assert.ok(items.some((s) => s.role === 'publisher' && s.protocol === 'rtmp'));
      assert.ok(items.some((s) => s.protocol === 'whep' && s.viewerId === 'alice'));
      assert.ok(items.some((s) => s.protocol === 'llhls' && s.viewerId === 'alice'));
    } finally {
      await viewer.close();
    }
    await waitUntil('the token to expire', () => Date.parse(String(minted.body['expiresAt'])) < Date.now() - 200, 6000);
    const expired = await fetch(`${server.httpUrl}/hls/main/src/media.m3u8?token=${token}`);
    assert.equal(expired.status, 401);
    assert.equal(((await expired.json()) as { code: string }).code, 'PLAYBACK_TOKEN_EXPIRED');
    const late = new WhepTestClient();
    try {
      assert.equal((await late.connect(`${server.httpUrl}/whep/main`, undefined, { token })).status, 401);
    } finally {
      await late.close();
    }
    assert.ok(asked.some((a) => a.action === 'play' && a.protocol === 'whep') && asked.some((a) => a.action === 'play' && a.protocol === 'llhls'), 'the admission hook was asked for plays');
  });

  it('kicks one WHEP viewer; the other keeps playing; metrics follow viewers joining and leaving', async () => {
    const token = String((await call(server, 'POST', '/api/v1/streams/main/playback-tokens', { token: server.apiToken, body: { viewerId: 'bob' } })).body['token']);
    const token2 = String((await call(server, 'POST', '/api/v1/streams/main/playback-tokens', { token: server.apiToken, body: { viewerId: 'carol' } })).body['token']);
    const metric = async (): Promise<number> => {
      const r = await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.apiToken}` } });
      assert.equal(r.status, 200);
      const families = parsePrometheusTextFormat(await r.text());
      const viewers = families.find((f) => f.name === 'glasscast_viewers');
      assert.ok(families.some((f) => f.name === 'process_cpu_user_seconds_total'), 'process metrics');
      assert.ok(families.some((f) => f.name === 'glasscast_ingest_bits_per_second'));
      const sample = viewers?.metrics.find((m) => m.labels?.['stream'] === 'main' && m.labels['protocol'] === 'whep');
      return Number(sample?.value ?? 0);
    };
    assert.equal((await fetch(`${server.httpUrl}/metrics`)).status, 401, '/metrics needs a token');
    const bob = new WhepTestClient();
    const carol = new WhepTestClient();
    try {
      assert.equal((await bob.connect(`${server.httpUrl}/whep/main`, undefined, { token })).status, 201);
      assert.equal((await carol.connect(`${server.httpUrl}/whep/main`, undefined, { token: token2 })).status, 201);
      await waitUntil('both to receive video', () => bob.packets.some((p) => p.kind === 'video') && carol.packets.some((p) => p.kind === 'video'), 15_000);
      assert.equal(await metric(), 2);
      const sessions = (await call(server, 'GET', '/api/v1/streams/main/sessions', { token: server.apiToken })).body['items'] as { id: string; protocol: string; viewerId: string | null }[];
      const bobSession = sessions.find((s) => s.protocol === 'whep' && s.viewerId === 'bob');
      assert.ok(bobSession);
      assert.equal((await call(server, 'DELETE', `/api/v1/streams/main/sessions/${bobSession.id}`, { token: server.apiToken })).status, 204);
      await waitUntil('one viewer left', async () => (await metric()) === 1, 5000);
      const carolBefore = carol.packets.length;
      const bobBefore = bob.packets.length;
      await new Promise((r) => setTimeout(r, 1500));
      assert.ok(carol.packets.length > carolBefore + 30, 'carol still receives media');
      assert.ok(bob.packets.length - bobBefore < 10, 'bob receives nothing more');
      // Bob's token was revoked with the kick: his player cannot come straight back.
      const again = new WhepTestClient();
      try {
        assert.equal((await again.connect(`${server.httpUrl}/whep/main`, undefined, { token })).status, 403);
      } finally {
        await again.close();
      }
    } finally {
      await bob.close();
      await carol.close();
    }
    await waitUntil('no viewers', async () => (await metric()) === 0, 5000);
  });

  it('refuses an RTMP publisher with its error, a WHIP publisher and a WHEP viewer with 403 when admission denies', async () => {
    deny = true;
    try {
      const created = await call(server, 'POST', '/api/v1/streams', { token: server.apiToken, body: { name: 'gated' } });
      const key = (created.body['key'] as { key: string }).key;
      assert.equal(await rtmpPublishCode(server, key), 'NetStream.Publish.BadName');
      const whip = new WhipTestClient();
      try {
        const res = await whip.publish(`${server.httpUrl}/whip/gated`, key);
        assert.equal(res.status, 403);
        const problem = (await res.json()) as { code: string; detail: string };
        assert.equal(problem.code, 'ADMISSION_DENIED');
        assert.match(problem.detail, /guest list/);
      } finally {
        await whip.close();
      }
      const token = String((await call(server, 'POST', '/api/v1/streams/main/playback-tokens', { token: server.apiToken })).body['token']);
      const viewer = new WhepTestClient();
      try {
        assert.equal((await viewer.connect(`${server.httpUrl}/whep/main`, undefined, { token })).status, 403);
      } finally {
        await viewer.close();
      }
      assert.ok(asked.some((a) => a.action === 'publish' && a.protocol === 'rtmp' && a.stream === 'gated'));
      assert.ok(asked.some((a) => a.action === 'publish' && a.protocol === 'whip' && a.stream === 'gated'));
      assert.equal(server.app.registry.get('gated'), undefined, 'nothing was created');
    } finally {
      deny = false;
    }
  });
});
