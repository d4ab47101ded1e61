/**
 * What the web app reads besides the REST API of earlier issues: the pushed stream state (Server-Sent Events) for
 * the directory and for one stream's watch page, with private streams kept out; players' QoE beacons, aggregated
 * in the stats API and /metrics, bad ones refused with problem details; a webhook's test message delivered and
 * logged; public recordings and the publish addresses readable without a key.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { SseClient } from '../support/sse-client.js';
import { waitUntil } from '../support/wait.js';

describe('web app API: events, QoE beacons, webhook test', { timeout: 120_000 }, () => {
  let server: TestServer;
  const publishers: FfmpegProcess[] = [];
  const clients: SseClient[] = [];
  const auth = (): Record<string, string> => ({ authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' });
  const bearer = (): Record<string, string> => ({ authorization: `Bearer ${server.apiToken}` });

  before(async () => {
    server = await startTestServer({ reconnectGraceMs: 500 });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const p of publishers) await p.stop();
    await server?.stop();
  });

  it('pushes a stream going live, playable, and offline to the directory and to its watch page, never a private one to the directory', async () => {
    const created = await fetch(`${server.httpUrl}/api/v1/streams`, { method: 'POST', headers: auth(), body: JSON.stringify({ name: 'secret', visibility: 'private' }) });
    assert.equal(created.status, 201);
    const secretKey = ((await created.json()) as { key: { key: string } }).key.key;

    const directory = await SseClient.open(`${server.httpUrl}/api/v1/events`);
    clients.push(directory);
    assert.equal(directory.status, 200);
    assert.match(directory.contentType, /^text\/event-stream/);
    const first = await directory.next('the first list', (e) => e.event === 'streams');
    assert.deepEqual(first.data, { streams: [] });
    const page = await SseClient.open(`${server.httpUrl}/api/v1/streams/main/events`);
    clients.push(page);
    const offline = await page.next('the watch page state', (e) => e.event === 'stream');
    assert.equal((offline.data as { state: string }).state, 'offline');

    const refused = await fetch(`${server.httpUrl}/api/v1/streams/secret/events`);
    assert.equal(refused.status, 401);
    assert.match(refused.headers.get('content-type') ?? '', /^application\/problem\+json/);
    const token = ((await (await fetch(`${server.httpUrl}/api/v1/streams/secret/playback-tokens`, { method: 'POST', headers: auth(), body: '{}' })).json()) as { token: string }).token;
    const secretPage = await SseClient.open(`${server.httpUrl}/api/v1/streams/secret/events?token=${encodeURIComponent(token)}`);
    clients.push(secretPage);
    assert.equal(secretPage.status, 200);

    publishers.push(publishTestPattern(`${server.rtmpUrl}/${secretKey}`, { size: '320x180', gopSeconds: 1 }));
    publishers.push(publishTestPattern(`${server.rtmpUrl}/${server.key}`, { size: '320x180', gopSeconds: 1 }));
    const playable = await page.next('main playable on its page', (e) => (e.data as { playable?: boolean }).playable === true);
    await directory.next('main playable in the directory', (e) => e.event === 'stream' && (e.data as { name: string; playable: boolean }).name === 'main' && (e.data as { playable: boolean }).playable);
    await secretPage.next('the private stream live on its own page', (e) => (e.data as { state?: string }).state === 'live');
    // The status a poller would read says the same at that moment (the event was not early).
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { playable: boolean; viewers: number };
    assert.equal(status.playable, true);
    assert.equal(typeof status.viewers, 'number');
    const summary = playable.data as { name: string; state: string; title: string; startedAt: string | null; viewers: number };
    assert.equal(summary.state, 'live');
    assert.ok(summary.startedAt && Date.parse(summary.startedAt) > Date.now() - 60_000);

    await publishers[1]!.stop();
    await page.next('main offline on its page', (e) => (e.data as { state?: string }).state === 'offline', 15_000, page.events.indexOf(playable));
    await directory.next('main offline in the directory', (e) => e.event === 'stream' && (e.data as { name: string; state: string }).name === 'main' && (e.data as { state: string }).state === 'offline');
    assert.ok(!directory.events.some((e) => JSON.stringify(e.data).includes('secret')), 'the directory never heard of the private stream');
  });

  it('aggregates QoE beacons into the stats API and /metrics, and refuses bad ones with problem details', async () => {
    const post = (name: string, body: unknown): Promise<Response> => fetch(`${server.httpUrl}/api/v1/streams/${name}/qoe`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const good = { viewerId: 'page-load-0001', protocol: 'll-hls', joinMs: 900, playingMs: 9000, rebuffers: 2, rebufferMs: 1000, switches: 1, latencyMs: 1500, errors: ['hls:bufferStalledError'] };
    assert.equal((await post('main', good)).status, 204);
    assert.equal((await post('main', { ...good, viewerId: 'page-load-0002', protocol: 'webrtc', rebuffers: 0, rebufferMs: 0, joinMs: 500, latencyMs: 300, errors: [] })).status, 204);
    const bad = await post('main', { ...good, viewerId: 'x' });
    assert.equal(bad.status, 400);
    assert.match(bad.headers.get('content-type') ?? '', /^application\/problem\+json/);
    assert.equal((await post('main', { ...good, errors: ['e'.repeat(5000)] })).status, 413, 'a beacon is small');
    assert.equal((await post('nobody-here', good)).status, 404);
    assert.equal((await post('secret', good)).status, 401, 'a private stream needs its token');

    const stats = (await (await fetch(`${server.httpUrl}/api/v1/streams/main/stats`, { headers: auth() })).json()) as { qoe: { viewers: number; rebufferRatio: number; joinMs: { p50: number; p95: number }; errors: { code: string }[] } };
    assert.equal(stats.qoe.viewers, 2);
    assert.equal(stats.qoe.rebufferRatio, 1000 / (9000 + 9000 + 1000));
    assert.deepEqual(stats.qoe.joinMs, { p50: 500, p95: 900 });
    assert.deepEqual(stats.qoe.errors.map((e) => e.code), ['hls:bufferStalledError']);
    const metrics = await (await fetch(`${server.httpUrl}/metrics`, { headers: auth() })).text();
    const ratio = /^glasscast_qoe_rebuffer_ratio\{stream="main"\} (\S+)$/m.exec(metrics);
    assert.ok(ratio, 'the rebuffer ratio is a metric');
    assert.ok(Math.abs(Number(ratio[1]) - stats.qoe.rebufferRatio) < 1e-9);
    assert.match(metrics, /^glasscast_qoe_join_seconds\{stream="main",quantile="0.95"\} 0.9$/m);
  });

  it('sends a webhook a test message on request, delivered and in its log; public recordings and publish addresses need no key', async () => {
    const received: { type: string; id: string }[] = [];
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push({ type: (JSON.parse(body) as { type: string }).type, id: String(req.headers['webhook-id']) });
        res.statusCode = 204;
        res.end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const hook = (await (await fetch(`${server.httpUrl}/api/v1/webhooks`, { method: 'POST', headers: auth(), body: JSON.stringify({ url, events: ['recording.ready'] }) })).json()) as { id: string };
      const sent = await fetch(`${server.httpUrl}/api/v1/webhooks/${hook.id}/test`, { method: 'POST', headers: bearer() });
      assert.equal(sent.status, 202);
      const message = (await sent.json()) as { id: string; type: string };
      assert.equal(message.type, 'webhook.test');
      await waitUntil('the test message at the receiver', () => received.find((r) => r.id === message.id), 10_000, 50);
      const log = await waitUntil('the delivery in the log', async () => {
        const page = (await (await fetch(`${server.httpUrl}/api/v1/webhooks/${hook.id}/messages`, { headers: auth() })).json()) as { items: { id: string; state: string }[] };
        return page.items.find((m) => m.id === message.id && m.state === 'delivered');
      }, 10_000, 100);
      assert.equal(log.state, 'delivered');
      assert.equal((await fetch(`${server.httpUrl}/api/v1/webhooks/wh_nothing/test`, { method: 'POST', headers: bearer() })).status, 404);
    } finally {
      receiver.close();
    }
    const recordings = await fetch(`${server.httpUrl}/api/v1/recordings`);
    assert.equal(recordings.status, 200);
    const where = (await (await fetch(`${server.httpUrl}/api/v1/server`)).json()) as { rtmp: string };
    assert.match(where.rtmp, /^rtmp:\/\/127\.0\.0\.1:\d+\/live$/);
  });
});
