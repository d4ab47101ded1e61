/**
 * The STUN reading of the ICE-TCP listener (webrtc/stun.ts, RFC 8489 §5/§14.3) and its candidates (RFC 6544):
 * a Binding request's USERNAME is found among other attributes; every malformed message is a MediaParseError;
 * fuzzed input never throws anything else. The Binding answer of venue mode's STUN server. Also the start banner's
 * LAN addresses.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { lanAddresses } from '../../src/app.js';
import { MediaParseError } from '../../src/media/errors.js';
import { passiveTcpCandidates } from '../../src/webrtc/ice-tcp.js';
import { countOfferedCandidates, explainFailure, type ConnectionRecord } from '../../src/webrtc/connection-journal.js';
import { crc32 as zlibCrc32 } from 'node:zlib';
import { isStun, readBindingRequest, readBindingUsername, writeBindingSuccess } from '../../src/webrtc/stun.js';
import { seededRandom } from '../support/random.js';

function message(type: number, attributes: [number, Buffer][]): Buffer {
  const body = Buffer.concat(
    attributes.map(([t, v]) => {
      const h = Buffer.alloc(4);
      h.writeUInt16BE(t, 0);
      h.writeUInt16BE(v.length, 2);
      return Buffer.concat([h, v, Buffer.alloc((4 - (v.length % 4)) % 4)]);
    }),
  );
  const header = Buffer.alloc(20);
  header.writeUInt16BE(type, 0);
  header.writeUInt16BE(body.length, 2);
  header.writeUInt32BE(0x2112a442, 4);
  return Buffer.concat([header, body]);
}

describe('STUN Binding request USERNAME', () => {
  it('reads local and remote ufrags after other attributes (padding honoured)', () => {
    const m = message(0x0001, [[0x0024, Buffer.alloc(4)], [0x802a, Buffer.alloc(8)], [0x0006, Buffer.from('srvU:brw')]]);
    assert.equal(isStun(m), true);
    assert.deepEqual(readBindingUsername(m), { local: 'srvU', remote: 'brw' });
    const odd = message(0x0001, [[0x0006, Buffer.from('abc:de')]]); // 6 bytes, padded to 8
    assert.deepEqual(readBindingUsername(odd), { local: 'abc', remote: 'de' });
  });

  it('refuses what is not a Binding request with a USERNAME, with a MediaParseError', () => {
    const cases: [string, Buffer][] = [
      ['empty', Buffer.alloc(0)],
      ['short', Buffer.alloc(19)],
      ['RTP-like', Buffer.from([0x80, 0x60, ...Buffer.alloc(30)])],
      ['no cookie', (() => { const m = message(0x0001, [[0x0006, Buffer.from('a:b')]]); m.writeUInt32BE(0, 4); return m; })()],
      ['a response', message(0x0101, [[0x0006, Buffer.from('a:b')]])],
      ['no USERNAME', message(0x0001, [[0x0024, Buffer.alloc(4)]])],
      ['USERNAME without colon', message(0x0001, [[0x0006, Buffer.from('abc')]])],
      ['USERNAME ":b"', message(0x0001, [[0x0006, Buffer.from(':b')]])],
      ['USERNAME too long', message(0x0001, [[0x0006, Buffer.alloc(600, 0x61)]])],
      ['attribute overruns', (() => { const m = message(0x0001, [[0x0006, Buffer.from('a:b0')]]); m.writeUInt16BE(200, 22); return m; })()],
      ['length beyond the buffer', (() => { const m = message(0x0001, [[0x0006, Buffer.from('a:b0')]]); m.writeUInt16BE(400, 2); return m; })()],
    ];
    for (const [what, m] of cases) assert.throws(() => readBindingUsername(m), MediaParseError, what);
  });

  it('fuzz: 20,000 mutated and random messages throw only MediaParseError', () => {
    const random = seededRandom(8489);
    const base = message(0x0001, [[0x0006, Buffer.from('localufrag:remoteufrag')], [0x0024, Buffer.alloc(4)], [0x0008, Buffer.alloc(20)], [0x8028, Buffer.alloc(4)]]);
    for (let i = 0; i < 20_000; i++) {
      let m: Buffer;
      if (i % 3 === 0) {
        m = Buffer.from(Array.from({ length: Math.floor(random() * 120) }, () => Math.floor(random() * 256)));
      } else {
        m = Buffer.from(base.subarray(0, i % 5 === 0 ? Math.floor(random() * base.length) : base.length));
        for (let k = 0; k < 1 + Math.floor(random() * 4); k++) if (m.length > 0) m[Math.floor(random() * m.length)] = Math.floor(random() * 256);
      }
      try {
        readBindingUsername(m);
      } catch (err) {
        assert.ok(err instanceof MediaParseError, `case ${i}: ${(err as Error).message}`);
      }
    }
  });
});

describe('STUN Binding answer (venue mode\'s STUN server)', () => {
  /** The XOR-MAPPED-ADDRESS of a response as `ip:port` (RFC 8489 §14.2), decoded independently of the writer. */
  function mapped(response: Buffer): string {
    assert.equal(response.readUInt16BE(20), 0x0020);
    const family = response[25];
    const port = response.readUInt16BE(26) ^ 0x2112;
    const key = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), response.subarray(8, 20)]);
    const raw = Buffer.from(response.subarray(28, 28 + (family === 1 ? 4 : 16)).map((b, i) => b ^ key[i]!));
    const ip = family === 1 ? [...raw].join('.') : Array.from({ length: 8 }, (_, i) => raw.readUInt16BE(i * 2).toString(16)).join(':');
    return `${ip}:${port}`;
  }

  it('answers with the source address (IPv4, IPv4-mapped, IPv6) and a correct FINGERPRINT', () => {
    const request = message(0x0001, [[0x8028, Buffer.alloc(4)]]);
    Buffer.from('0123456789ab').copy(request, 8);
    const tx = readBindingRequest(request);
    assert.equal(tx.toString(), '0123456789ab');
    for (const [address, expected] of [['192.0.2.7', '192.0.2.7:50001'], ['::ffff:10.1.2.3', '10.1.2.3:50001'], ['2001:db8::5', '2001:db8:0:0:0:0:0:5:50001']] as const) {
      const response = writeBindingSuccess(tx, address, 50001);
      assert.equal(isStun(response), true);
      assert.equal(response.readUInt16BE(0), 0x0101);
      assert.equal(response.subarray(8, 20).toString(), '0123456789ab');
      assert.equal(mapped(response), expected);
      const at = response.length - 8;
      assert.equal(response.readUInt16BE(at), 0x8028);
      if (typeof zlibCrc32 === 'function') assert.equal(response.readUInt32BE(at + 4), (zlibCrc32(response.subarray(0, at)) ^ 0x5354554e) >>> 0);
    }
    assert.throws(() => writeBindingSuccess(tx, 'not an address', 1));
  });

  it('fuzz: 20,000 mutated and random datagrams give a transaction or a MediaParseError, never more', () => {
    const random = seededRandom(5389);
    const base = message(0x0001, [[0x0006, Buffer.from('a:b')], [0x8028, Buffer.alloc(4)]]);
    for (let i = 0; i < 20_000; i++) {
      const m = i % 2 === 0 ? Buffer.from(Array.from({ length: Math.floor(random() * 80) }, () => Math.floor(random() * 256))) : Buffer.from(base);
      if (i % 2 === 1) for (let k = 0; k < 1 + Math.floor(random() * 4); k++) m[Math.floor(random() * m.length)] = Math.floor(random() * 256);
      try {
        assert.equal(readBindingRequest(m).length, 12);
      } catch (err) {
        assert.ok(err instanceof MediaParseError, `case ${i}: ${(err as Error).message}`);
      }
    }
  });
});

describe('ICE-TCP candidates and connection diagnostics', () => {
  it('passive TCP host candidates rank below UDP host ones, in address order', () => {
    const [a, b] = passiveTcpCandidates(['192.0.2.1', '2001:db8::1'], 8189);
    assert.match(a!, /^candidate:tcp0 1 tcp (\d+) 192\.0\.2\.1 8189 typ host tcptype passive$/);
    assert.match(b!, /^candidate:tcp1 1 tcp \d+ 2001:db8::1 8189 typ host tcptype passive$/);
    const pa = Number(a!.split(' ')[3]);
    const pb = Number(b!.split(' ')[3]);
    assert.ok(pa > pb, 'the first address is preferred');
    assert.ok(pa < 126 * 2 ** 24, 'below every UDP host candidate (type preference 126)');
  });

  it('counts an offer’s candidates and explains a failure in a sentence', () => {
    const offered = countOfferedCandidates(['a=candidate:1 1 udp 2122260223 10.0.0.2 50000 typ host', 'a=candidate:2 1 tcp 1518280447 10.0.0.2 9 typ host tcptype active', 'a=candidate:3 1 udp 2122260223 8c1f.local 50001 typ host'].join('\r\n'));
    assert.deepEqual(offered, { udp: 2, tcp: 1, mdns: 1 });
    const record = { offered, tcpConnections: 0 } as ConnectionRecord;
    assert.match(explainFailure(record, '40000–40099', 8189), /no candidate pair worked \(UDP ports 40000–40099, TCP 8189\): no TCP connection reached port 8189/);
    assert.match(explainFailure({ ...record, tcpConnections: 1 }, '40000–40099', 8189), /a TCP connection reached port 8189 but ICE did not complete/);
    assert.match(explainFailure({ ...record, offered: { udp: 0, tcp: 0, mdns: 0 } }, '40000–40099', undefined), /no ICE candidates/);
  });

  it('LAN addresses: IPv4 first, no loopback or link-local', () => {
    const addresses = lanAddresses({
      lo: [{ address: '127.0.0.1', family: 'IPv4', internal: true, netmask: '', mac: '', cidr: null }],
      eth0: [
        { address: 'fe80::1', family: 'IPv6', internal: false, netmask: '', mac: '', cidr: null, scopeid: 2 },
        { address: '2001:db8::5', family: 'IPv6', internal: false, netmask: '', mac: '', cidr: null, scopeid: 0 },
        { address: '192.168.1.20', family: 'IPv4', internal: false, netmask: '', mac: '', cidr: null },
      ],
    });
    assert.deepEqual(addresses, ['192.168.1.20', '2001:db8::5']);
  });
});
