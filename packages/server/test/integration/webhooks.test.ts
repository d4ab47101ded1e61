/**
 * Webhooks against a real HTTP receiver: Standard Webhooks signatures checked with the `standardwebhooks`
 * package; a receiver down for 20 s gets every event once it is back, in order per stream; Glasscast killed with
 * SIGKILL while retrying and started again still delivers every message (at least once by `webhook-id`, so an
 * idempotent receiver processes each exactly once).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, describe, it } from 'node:test';
import { Webhook } from 'standardwebhooks';
import { publishTestPattern } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

/** An idempotent receiver on a fixed port that can be stopped and started again. */
class Receiver {
  /** Verified deliveries in arrival order (duplicates included). */
  readonly deliveries: { id: string; type: string; stream: string }[] = [];
  /** Each webhook-id processed once. */
  readonly processed = new Map<string, { type: string; stream: string }>();
  readonly rejected: string[] = [];
  private server: Server | undefined;
  port = 0;
  secret = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        try {
          const payload = new Webhook(this.secret).verify(body, req.headers as Record<string, string>) as { type: string; data: { name?: string } };
          const id = String(req.headers['webhook-id']);
          const event = { id, type: payload.type, stream: payload.data.name ?? '' };
          this.deliveries.push(event);
          if (!this.processed.has(id)) this.processed.set(id, event);
          res.statusCode = 204;
        } catch (err) {
          this.rejected.push((err as Error).message);
          res.statusCode = 400;
        }
        res.end();
      });
    });
    await new Promise<void>((r) => this.server!.listen(this.port, '127.0.0.1', r));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }

  /** The processed event types of `stream`, in the order first received. */
  typesOf(stream: string): string[] {
    return [...this.processed.values()].filter((e) => e.stream === stream).map((e) => e.type);
  }
}

async function api(base: string, token: string, method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  assert.ok(res.status < 300, `${method} ${path} → ${res.status} ${text}`);
  return text ? (JSON.parse(text) as Record<string, unknown>) : {};
}

describe('webhooks', { timeout: 240_000 }, () => {
  const receivers: Receiver[] = [];
  let server: TestServer | undefined;
  after(async () => {
    for (const r of receivers) await r.stop();
    await server?.stop();
  });

  it('delivers every event, signed and in order per stream, after the receiver was down for 20 s', async () => {
    const receiver = new Receiver();
    receivers.push(receiver);
    await receiver.start();
    await receiver.stop(); // keep its port; it is down from now on
    server = await startTestServer({ webhookRetryMaxMs: 4000, reconnectGraceMs: 1000 });
    const base = server.httpUrl;
    const hook = await api(base, server.apiToken, 'POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${receiver.port}/hooks`, events: ['*'] });
    receiver.secret = String(hook['secret']);
    assert.match(receiver.secret, /^whsec_/);
    const downAt = Date.now();

    const s1 = await api(base, server.apiToken, 'POST', '/api/v1/streams', { name: 'one' });
    await api(base, server.apiToken, 'POST', '/api/v1/streams', { name: 'two' });
    await api(base, server.apiToken, 'PATCH', '/api/v1/streams/one', { title: 'Stream one' });
    await api(base, server.apiToken, 'DELETE', '/api/v1/streams/two');
    const publisher = publishTestPattern(`${server.rtmpUrl}/${(s1['key'] as { key: string }).key}`, { size: '320x180', gopSeconds: 1 });
    await waitUntil('stream one live', () => server!.app.registry.get('one')?.state === 'live', 20_000);
    await new Promise((r) => setTimeout(r, 2000));
    await publisher.stop();
    await waitUntil('stream one to end', () => server!.app.registry.get('one') === undefined, 15_000);
    // The end is recorded (history + stream.ended) on the monitor's next tick, within a second.
    await waitUntil('the broadcast to be history', async () => ((await api(base, server!.apiToken, 'GET', '/api/v1/streams/one/history'))['items'] as { endedAt: string | null }[])[0]?.endedAt ?? undefined, 5000, 200);
    await api(base, server.apiToken, 'POST', '/api/v1/streams/one/key/rotate', { graceSeconds: 0 });

    await waitUntil('20 s of downtime', () => Date.now() - downAt >= 20_000, 30_000, 250);
    const messages = await api(base, server.apiToken, 'GET', `/api/v1/webhooks/${String(hook['id'])}/messages`);
    const retried = (messages['items'] as { attempts: number; state: string }[]).filter((m) => m.attempts >= 2);
    assert.ok(retried.length > 0, 'messages were retried while the receiver was down');
    assert.equal(receiver.deliveries.length, 0);
    await receiver.start();

    await waitUntil('every message delivered', async () => {
      const page = await api(base, server!.apiToken, 'GET', `/api/v1/webhooks/${String(hook['id'])}/messages?limit=100`);
      const items = page['items'] as { state: string }[];
      return items.length >= 7 && items.every((m) => m.state === 'delivered');
    }, 30_000, 500);
    assert.deepEqual(receiver.rejected, [], 'every signature verifies');
    assert.deepEqual(receiver.typesOf('one'), ['stream.created', 'stream.updated', 'stream.started', 'stream.ended', 'stream.key_rotated']);
    assert.deepEqual(receiver.typesOf('two'), ['stream.created', 'stream.deleted']);

    // The delivery log shows the failed attempts and the success; a message can be sent again by hand.
    const page = await api(base, server.apiToken, 'GET', `/api/v1/webhooks/${String(hook['id'])}/messages?limit=100`);
    const first = (page['items'] as { id: string; attempts: number }[]).at(-1)!;
    const attempts = await api(base, server.apiToken, 'GET', `/api/v1/webhooks/${String(hook['id'])}/messages/${first.id}/attempts`);
    const list = attempts['items'] as { status: number | null; error: string | null }[];
    assert.ok(list.length >= 2 && list.at(-1)!.status === 204 && list[0]!.error, JSON.stringify(list));
    const before = receiver.deliveries.filter((d) => d.id === first.id).length;
    await api(base, server.apiToken, 'POST', `/api/v1/webhooks/${String(hook['id'])}/messages/${first.id}/redeliver`);
    await waitUntil('the redelivery', () => receiver.deliveries.filter((d) => d.id === first.id).length === before + 1, 10_000);
    await server.stop();
    server = undefined;
  });

  it('delivers every message after Glasscast is killed with SIGKILL mid-retry and started again', async () => {
    const receiver = new Receiver();
    receivers.push(receiver);
    await receiver.start();
    await receiver.stop();
    const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-webhooks-'));
    let child: ChildProcess | undefined;
    const start = async (): Promise<{ base: string; token: string | undefined }> => {
      child = spawn(process.execPath, ['--import', 'tsx', CLI, '--host', '127.0.0.1', '--http-port', '0', '--webrtc-tcp-port', '0', '--rtmp-port', '0', '--srt-port', '0', '--data-dir', dataDir, '--log-level', 'warn', '--ladder', 'none', '--webhook-retry-max-ms', '3000'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      await waitUntil('the server to start', () => out.includes('Glasscast is running') && /Watch:\s+http/.test(out), 30_000);
      return { base: /(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!, token: /API token:\s+(\S+)/.exec(out)?.[1] };
    };
    try {
      const first = await start();
      const token = first.token!;
      const hook = await api(first.base, token, 'POST', '/api/v1/webhooks', { url: `http://127.0.0.1:${receiver.port}/hooks`, events: ['stream.created', 'stream.updated', 'stream.deleted'] });
      receiver.secret = String(hook['secret']);
      for (const name of ['a', 'b', 'c']) await api(first.base, token, 'POST', '/api/v1/streams', { name });
      await api(first.base, token, 'PATCH', '/api/v1/streams/a', { title: 'A' });
      await api(first.base, token, 'DELETE', '/api/v1/streams/b');
      await waitUntil('retries under way', async () => {
        const page = await api(first.base, token, 'GET', `/api/v1/webhooks/${String(hook['id'])}/messages`);
        return (page['items'] as { attempts: number }[]).some((m) => m.attempts >= 2);
      }, 20_000, 250);
      const ids = ((await api(first.base, token, 'GET', `/api/v1/webhooks/${String(hook['id'])}/messages`))['items'] as { id: string }[]).map((m) => m.id);
      assert.equal(ids.length, 5);
      child!.kill('SIGKILL');
      await once(child!, 'exit');

      await receiver.start();
      const second = await start();
      assert.equal(second.token, undefined, 'the admin token is printed only on the first start');
      await waitUntil('every message processed', () => ids.every((id) => receiver.processed.has(id)), 30_000, 250);
      assert.deepEqual(receiver.rejected, []);
      assert.equal(receiver.processed.size, 5, 'each webhook-id processed once');
      assert.deepEqual(receiver.typesOf('a'), ['stream.created', 'stream.updated']);
      assert.deepEqual(receiver.typesOf('b'), ['stream.created', 'stream.deleted']);
      child!.kill('SIGTERM');
      await once(child!, 'exit');
    } finally {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await once(child, 'exit');
      }
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
