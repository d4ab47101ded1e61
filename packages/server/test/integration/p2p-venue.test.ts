/**
 * Venue mode's server side against real peers: the embedded tracker (WebTorrent tracker protocol over WebSocket,
 * spoken here by a bare `ws` client as p2p-media-loader speaks it), the STUN server (a real Binding request over
 * UDP), the per-segment hashes peers check, and the per-stream kill switch. A live stream from a real ffmpeg.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import WebSocket from 'ws';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

/** A 20-character "binary" string, as WebTorrent peers send info hashes and peer ids. */
const id20 = (): string => randomBytes(20).toString('latin1');

/** A tracker connection that queues what it receives. */
async function connect(url: string): Promise<{ ws: WebSocket; next: (timeoutMs?: number) => Promise<Record<string, unknown>>; closed: Promise<number> }> {
  const ws = new WebSocket(url);
  const inbox: Record<string, unknown>[] = [];
  const waiting: ((m: Record<string, unknown>) => void)[] = [];
  ws.on('message', (data) => {
    const m = JSON.parse(String(data)) as Record<string, unknown>;
    const w = waiting.shift();
    if (w) w(m);
    else inbox.push(m);
  });
  const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = (timeoutMs = 5000): Promise<Record<string, unknown>> =>
    inbox.length > 0
      ? Promise.resolve(inbox.shift()!)
      : new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error('no tracker message in time')), timeoutMs);
          waiting.push((m) => {
            clearTimeout(timer);
            resolve(m);
          });
        });
  return { ws, next, closed };
}

/** The HTTP answer to a WebSocket upgrade that the server refuses. */
async function refusedUpgrade(url: string): Promise<{ status: number; type: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, type: res.headers['content-type'], body }));
    });
    ws.once('open', () => reject(new Error('upgrade accepted')));
    ws.once('error', () => undefined);
  });
}

describe('venue mode: tracker, STUN, segment hashes, kill switch', { timeout: 120_000 }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;
  let tracker: string;

  before(async () => {
    server = await startTestServer({ segmentTargetMs: 1000 });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '320x240', videoKbps: 300 });
    await waitUntil('the stream to play', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { playable: boolean }).playable, 20_000, 200);
    tracker = `${server.httpUrl.replace('http', 'ws')}/p2p/announce/main`;
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  it('tells players where the tracker and the STUN server are', async () => {
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { p2p: { tracker: string; stunPort: number | null; peers: number } | null };
    assert.equal(status.p2p?.tracker, '/p2p/announce/main');
    assert.ok(status.p2p.stunPort! > 0, 'a STUN port');
  });

  it('relays offers and answers between the peers of one swarm', async () => {
    const infoHash = id20();
    const a = await connect(tracker);
    const b = await connect(tracker);
    try {
      const idA = id20();
      const idB = id20();
      a.ws.send(JSON.stringify({ action: 'announce', info_hash: infoHash, peer_id: idA, numwant: 5, offers: [] }));
      const first = await a.next();
      assert.equal(first['action'], 'announce');
      assert.equal(first['info_hash'], infoHash);
      assert.ok(Number(first['interval']) > 0);
      // B announces with an offer: the tracker hands it to A, and A's answer goes back to B.
      b.ws.send(JSON.stringify({ action: 'announce', info_hash: infoHash, peer_id: idB, numwant: 1, offers: [{ offer_id: 'o1', offer: { type: 'offer', sdp: 'v=0 (B)' } }] }));
      const offered = await a.next();
      assert.equal((offered['offer'] as { sdp: string }).sdp, 'v=0 (B)');
      assert.equal(offered['peer_id'], idB);
      a.ws.send(JSON.stringify({ action: 'announce', info_hash: infoHash, peer_id: idA, to_peer_id: idB, offer_id: 'o1', answer: { type: 'answer', sdp: 'v=0 (A)' } }));
      let answered = await b.next();
      if (!answered['answer']) answered = await b.next(); // B's own announce response comes first
      assert.equal((answered['answer'] as { sdp: string }).sdp, 'v=0 (A)');
      // Public status answers are shared for 250 ms: the count shows within a moment.
      await waitUntil('two peers in the status', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { p2p: { peers: number } }).p2p.peers === 2, 3000, 100);
    } finally {
      a.ws.close();
      b.ws.close();
    }
  });

  it('refuses streams that are not live, other paths, and bad messages without harm', async () => {
    const missing = await refusedUpgrade(`${server.httpUrl.replace('http', 'ws')}/p2p/announce/nosuch`);
    assert.equal(missing.status, 404);
    assert.match(missing.type ?? '', /application\/problem\+json/);
    assert.equal((JSON.parse(missing.body) as { code: string }).code, 'STREAM_NOT_FOUND');
    const elsewhere = await refusedUpgrade(`${server.httpUrl.replace('http', 'ws')}/api/v1/streams`);
    assert.equal(elsewhere.status, 404);
    const peer = await connect(tracker);
    try {
      peer.ws.send('not json');
      assert.match(String((await peer.next())['failure reason']), /JSON|Unexpected/i);
      peer.ws.send(JSON.stringify({ action: 'announce', info_hash: 'short', peer_id: id20() }));
      assert.match(String((await peer.next())['failure reason']), /info_hash/);
      // Oversized messages close the connection (1009), the server goes on.
      peer.ws.send('x'.repeat(70 * 1024));
      assert.equal(await peer.closed, 1009);
    } finally {
      peer.ws.close();
    }
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200);
  });

  it('answers a STUN Binding request with the address it came from', async () => {
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { p2p: { stunPort: number } };
    const socket = createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    try {
      const request = Buffer.alloc(20);
      request.writeUInt16BE(0x0001, 0);
      request.writeUInt32BE(0x2112a442, 4);
      randomBytes(12).copy(request, 8);
      const answer = new Promise<Buffer>((resolve) => socket.once('message', resolve));
      socket.send(request, status.p2p.stunPort, '127.0.0.1');
      const response = await Promise.race([answer, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('no STUN answer')), 3000))]);
      assert.equal(response.readUInt16BE(0), 0x0101, 'Binding success');
      assert.deepEqual(response.subarray(8, 20), request.subarray(8, 20), 'same transaction');
      // XOR-MAPPED-ADDRESS: the first attribute.
      assert.equal(response.readUInt16BE(20), 0x0020);
      const port = response.readUInt16BE(26) ^ 0x2112;
      const ip = [...response.subarray(28, 32)].map((b, i) => b ^ [0x21, 0x12, 0xa4, 0x42][i]!).join('.');
      assert.equal(`${ip}:${port}`, `127.0.0.1:${socket.address().port}`);
    } finally {
      socket.close();
    }
  });

  it('publishes a SHA-256 for every complete segment, matching the segment served', async () => {
    const base = `${server.httpUrl}/hls/main/src`;
    let hashes: Record<string, string> = {};
    await waitUntil('two complete segments', async () => {
      hashes = ((await (await fetch(`${base}/segment-hashes.json`)).json()) as { segments: Record<string, string> }).segments;
      return Object.keys(hashes).length >= 2;
    }, 20_000, 250);
    const playlist = await (await fetch(`${base}/media.m3u8`)).text();
    const [uri, hash] = Object.entries(hashes).at(-1)!;
    assert.ok(playlist.includes(`\n${uri}\n`), 'the playlist lists the segment by the same URI');
    const bytes = Buffer.from(await (await fetch(`${base}/${uri}`)).arrayBuffer());
    assert.equal(createHash('sha256').update(bytes).digest('base64'), hash);
  });

  it('ends the swarm at once when the operator switches P2P off, and refuses new peers', async () => {
    const peer = await connect(tracker);
    const patch = await fetch(`${server.httpUrl}/api/v1/streams/main`, { method: 'PATCH', headers: { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ p2p: false }) });
    assert.equal(patch.status, 200);
    assert.equal(((await patch.json()) as { p2p: boolean }).p2p, false);
    assert.equal(await peer.closed, 1001);
    assert.equal((await refusedUpgrade(tracker)).status, 404);
    await waitUntil('no P2P in the status', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { p2p: unknown }).p2p === null, 3000, 100);
    await fetch(`${server.httpUrl}/api/v1/streams/main`, { method: 'PATCH', headers: { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ p2p: true }) });
    const again = await connect(tracker);
    again.ws.close();
  });
});
