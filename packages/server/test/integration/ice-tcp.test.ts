/**
 * The ICE-TCP listener (webrtc/ice-tcp.ts) against the real ICE agent: a connection-test offer is answered with a
 * passive TCP candidate; a STUN Binding request framed as RFC 4571 and signed with the answer's ice-pwd (RFC 8489
 * §14.5 MESSAGE-INTEGRITY, §14.7 FINGERPRINT) sent to that port comes back as the agent's Binding success response
 * with the connection's address in XOR-MAPPED-ADDRESS. Hostile connections (an unknown ufrag, a first frame that
 * is not STUN, silence, too many connections for a session, random bytes after a good start) are closed and
 * counted, and never disturb another session or the process.
 */
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { crc32 } from 'node:zlib';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { seededRandom } from '../support/random.js';

const CLIENT_UFRAG = 'tcpt';
const CLIENT_PWD = 'glasscast-test-password-0123';

function offer(): string {
  const fingerprint = Array.from(randomBytes(32), (b) => b.toString(16).padStart(2, '0').toUpperCase()).join(':');
  return [
    'v=0', 'o=- 1 2 IN IP4 127.0.0.1', 's=-', 't=0 0', 'a=group:BUNDLE 0', 'm=audio 9 UDP/TLS/RTP/SAVPF 111', 'c=IN IP4 0.0.0.0', 'a=mid:0', 'a=recvonly', 'a=rtcp-mux',
    `a=ice-ufrag:${CLIENT_UFRAG}`, `a=ice-pwd:${CLIENT_PWD}`, `a=fingerprint:sha-256 ${fingerprint}`, 'a=setup:actpass', 'a=rtpmap:111 opus/48000/2', '',
  ].join('\r\n');
}

/** A STUN attribute, padded to 4 bytes. */
function attribute(type: number, value: Buffer): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(value.length, 2);
  return Buffer.concat([header, value, Buffer.alloc((4 - (value.length % 4)) % 4)]);
}

/** A Binding request from the controlling agent, signed with `password` (short-term credentials, RFC 8445 §7.2.2). */
function bindingRequest(username: string, password: string): Buffer {
  const priority = Buffer.alloc(4);
  priority.writeUInt32BE(0x6e001eff, 0);
  let body = Buffer.concat([attribute(0x0006, Buffer.from(username)), attribute(0x0024, priority), attribute(0x802a, randomBytes(8))]);
  const header = Buffer.alloc(20);
  header.writeUInt16BE(0x0001, 0);
  header.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(header, 8);
  header.writeUInt16BE(body.length + 24, 2);
  const integrity = createHmac('sha1', password).update(Buffer.concat([header, body])).digest();
  body = Buffer.concat([body, attribute(0x0008, integrity)]);
  header.writeUInt16BE(body.length + 8, 2);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE((crc32(Buffer.concat([header, body])) ^ 0x5354554e) >>> 0, 0);
  return Buffer.concat([header, body, attribute(0x8028, crc)]);
}

/** `payload` with its RFC 4571 length prefix. */
function framed(payload: Buffer): Buffer {
  const length = Buffer.alloc(2);
  length.writeUInt16BE(payload.length, 0);
  return Buffer.concat([length, payload]);
}

/** Connects, sends `bytes`, and resolves with the first whole frame back, or `closed` when the server hangs up. */
async function exchange(port: number, bytes: Buffer, timeoutMs = 5000): Promise<Buffer | 'closed' | 'timeout'> {
  const socket: Socket = connect({ host: '127.0.0.1', port });
  return new Promise((resolve) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => {
      socket.destroy();
      resolve('timeout');
    }, timeoutMs);
    socket.on('data', (d: Buffer) => {
      data = Buffer.concat([data, d]);
      if (data.length >= 2 && data.length >= 2 + data.readUInt16BE(0)) {
        clearTimeout(timer);
        socket.destroy();
        resolve(data.subarray(2, 2 + data.readUInt16BE(0)));
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve('closed');
    });
    socket.on('error', () => undefined);
    socket.write(bytes);
  });
}

describe('ICE-TCP listener', { timeout: 60_000 }, () => {
  let server: TestServer;
  let tcpPort: number;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1' });
    tcpPort = server.app.ports.webrtcTcp;
  });
  after(async () => {
    await server?.stop();
  });

  /** Starts a connection test; returns the server's ufrag and pwd from the answer, which must carry the TCP candidate. */
  async function probe(): Promise<{ ufrag: string; pwd: string; id: string }> {
    const r = await fetch(`${server.httpUrl}/api/v1/diagnostics/webrtc`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer() });
    assert.equal(r.status, 201, await r.clone().text());
    const answer = await r.text();
    assert.match(answer, new RegExp(`^a=candidate:\\S+ 1 tcp \\d+ 127\\.0\\.0\\.1 ${tcpPort} typ host tcptype passive$`, 'm'), 'the answer offers the passive TCP candidate');
    const udpPriority = Number(/^a=candidate:\S+ 1 UDP (\d+) /im.exec(answer)?.[1]);
    const tcpPriority = Number(/^a=candidate:\S+ 1 tcp (\d+) /m.exec(answer)?.[1]);
    assert.ok(tcpPriority < udpPriority, `UDP is preferred (${udpPriority} > ${tcpPriority})`);
    return { ufrag: /^a=ice-ufrag:(\S+)$/m.exec(answer)![1]!, pwd: /^a=ice-pwd:(\S+)$/m.exec(answer)![1]!, id: r.headers.get('location')!.split('/').pop()! };
  }

  it('bridges a signed Binding request to the ICE agent and frames its success response back', async () => {
    const { ufrag, pwd } = await probe();
    const reply = await exchange(tcpPort, framed(bindingRequest(`${ufrag}:${CLIENT_UFRAG}`, pwd)));
    assert.ok(Buffer.isBuffer(reply), `a response frame (got ${String(reply)})`);
    assert.equal(reply.readUInt16BE(0), 0x0101, 'Binding success response');
    assert.equal(reply.readUInt32BE(4), 0x2112a442);
    // XOR-MAPPED-ADDRESS (0x0020) names the bridge's UDP socket: the agent saw a peer-reflexive candidate.
    assert.ok(reply.includes(Buffer.from([0x00, 0x20])), 'XOR-MAPPED-ADDRESS present');
  });

  it('a request signed with the wrong password gets an error or nothing, never a success', async () => {
    const { ufrag } = await probe();
    const reply = await exchange(tcpPort, framed(bindingRequest(`${ufrag}:${CLIENT_UFRAG}`, 'not-the-password-at-all')), 1500);
    if (Buffer.isBuffer(reply)) assert.notEqual(reply.readUInt16BE(0), 0x0101);
  });

  it('closes hostile connections: unknown ufrag, not STUN, silent, too many for a session', async () => {
    assert.equal(await exchange(tcpPort, framed(bindingRequest(`nosuchufrag:${CLIENT_UFRAG}`, 'x'))), 'closed', 'an unknown ufrag');
    assert.equal(await exchange(tcpPort, framed(Buffer.from('GET / HTTP/1.1\r\n\r\n'))), 'closed', 'a first frame that is not STUN');
    assert.equal(await exchange(tcpPort, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), 1000), 'closed', 'HTTP on the ICE-TCP port, at once');
    assert.equal(await exchange(tcpPort, Buffer.alloc(0), 8000), 'closed', 'a connection that sends nothing, after 5 s');
    // Eight connections per session; the ninth is closed at once.
    const { ufrag, pwd } = await probe();
    const sockets: Socket[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const s = connect({ host: '127.0.0.1', port: tcpPort });
        s.on('error', () => undefined);
        s.write(framed(bindingRequest(`${ufrag}:${CLIENT_UFRAG}`, pwd)));
        sockets.push(s);
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(await exchange(tcpPort, framed(bindingRequest(`${ufrag}:${CLIENT_UFRAG}`, pwd))), 'closed', 'the ninth connection');
    } finally {
      for (const s of sockets) s.destroy();
    }
  });

  it('random bytes after a good first frame and fuzzed first frames neither crash nor disturb another session', async () => {
    const random = seededRandom(4571);
    const good = await probe();
    const other = await probe();
    for (let i = 0; i < 40; i++) {
      const request = bindingRequest(`${good.ufrag}:${CLIENT_UFRAG}`, good.pwd);
      // Flip bytes of the first frame (half the cases), or follow a good one with random frames of random lengths.
      const first = Buffer.from(request);
      if (i % 2 === 0) for (let k = 0; k < 4; k++) first[Math.floor(random() * first.length)] = Math.floor(random() * 256);
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(random() * 3000) }, () => Math.floor(random() * 256)));
      await exchange(tcpPort, Buffer.concat([framed(first), junk]), 300);
    }
    const reply = await exchange(tcpPort, framed(bindingRequest(`${other.ufrag}:${CLIENT_UFRAG}`, other.pwd)));
    assert.ok(Buffer.isBuffer(reply) && reply.readUInt16BE(0) === 0x0101, 'another session still answers');
    assert.equal((await fetch(`${server.httpUrl}/healthz`)).status, 200);
  });

  it('with a STUN server configured, announces the public address it learns on UDP and on TCP', async () => {
    // A STUN server of our own on loopback that tells every asker it is 192.0.2.77 (a documentation address: it
    // only appears in the answer; nothing is ever sent to it — the answer is read, not used).
    const stun = createSocket('udp4');
    stun.on('message', (msg, rinfo) => {
      if (msg.length < 20 || msg.readUInt16BE(0) !== 0x0001) return;
      const value = Buffer.alloc(8);
      value.writeUInt16BE(0x0001, 0); // family IPv4
      value.writeUInt16BE(rinfo.port ^ 0x2112, 2);
      value.writeUInt32BE((((192 << 24) | (0 << 16) | (2 << 8) | 77) ^ 0x2112a442) >>> 0, 4);
      const response = Buffer.concat([Buffer.alloc(20), attribute(0x0020, value)]);
      response.writeUInt16BE(0x0101, 0);
      response.writeUInt16BE(12, 2);
      msg.copy(response, 4, 4, 20); // cookie and transaction id
      stun.send(response, rinfo.port, rinfo.address);
    });
    await new Promise<void>((resolve) => stun.bind(0, '127.0.0.1', resolve));
    const withStun = await startTestServer({ webrtcBindAddress: '127.0.0.1', iceServers: `stun:127.0.0.1:${stun.address().port}` });
    try {
      const r = await fetch(`${withStun.httpUrl}/api/v1/diagnostics/webrtc`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer() });
      assert.equal(r.status, 201);
      const answer = await r.text();
      assert.match(answer, /^a=candidate:\S+ 1 UDP \d+ 192\.0\.2\.77 \d+ typ srflx/im, 'the server-reflexive UDP candidate');
      assert.match(answer, new RegExp(`^a=candidate:\\S+ 1 tcp \\d+ 192\\.0\\.2\\.77 ${withStun.app.ports.webrtcTcp} typ host tcptype passive$`, 'm'), 'a TCP candidate on the public address (forward the TCP port there)');
      await fetch(new URL(r.headers.get('location')!, withStun.httpUrl), { method: 'DELETE' });
    } finally {
      await withStun.stop();
      stun.close();
    }
  });

  it('answers bad connection-test requests with problem details from the catalogue', async () => {
    const post = (body: string, type = 'application/sdp'): Promise<Response> => fetch(`${server.httpUrl}/api/v1/diagnostics/webrtc`, { method: 'POST', headers: { 'content-type': type }, body });
    const cases: [string, Promise<Response>, number, string][] = [
      ['not SDP', post('hello'), 400, 'BAD_SDP'],
      ['truncated before its media section', post(offer().slice(0, 60)), 400, 'NO_COMMON_CODEC'],
      ['no audio section', post(offer().replace('m=audio 9 UDP/TLS/RTP/SAVPF 111', 'm=video 9 UDP/TLS/RTP/SAVPF 96').replace('opus/48000/2', 'VP8/90000')), 400, 'NO_COMMON_CODEC'],
      ['wrong media type', post(offer(), 'text/plain'), 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['oversized', post(offer() + 'a=x:' + 'y'.repeat(70_000) + '\r\n'), 413, 'BODY_TOO_LARGE'],
      ['unknown test', fetch(`${server.httpUrl}/api/v1/diagnostics/webrtc/nosuchtest`), 404, 'SESSION_NOT_FOUND'],
    ];
    for (const [what, response, status, code] of cases) {
      const r = await response;
      assert.equal(r.status, status, what);
      assert.match(r.headers.get('content-type') ?? '', /^application\/problem\+json/, what);
      assert.equal(((await r.json()) as { code: string }).code, code, what);
    }
    const list = await fetch(`${server.httpUrl}/api/v1/diagnostics/connections`);
    assert.equal(list.status, 401, 'the connection list needs an API key');
  });
});
