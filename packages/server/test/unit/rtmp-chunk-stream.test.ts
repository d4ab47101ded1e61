import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { encodeRtmpMessage, RtmpChunkDecoder, type RtmpMessage } from '../../src/ingest/rtmp/rtmp-chunk-stream.js';
import { MediaParseError } from '../../src/media/errors.js';
import { randomBytes, seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const pay = (n: number, fill = 0xab): Buffer => Buffer.alloc(n, fill);

const simplify = (m: RtmpMessage): object => ({
  csid: m.chunkStreamId,
  type: m.typeId,
  stream: m.messageStreamId,
  ts: m.timestamp,
  payload: m.payload.toString('hex'),
});

// Annotated golden chunk stream (RTMP spec §5.3.1): every chunk type, a continuation, an extended timestamp,
// 2- and 3-byte basic headers, and a Set Chunk Size that changes how the next message is split.
const GOLDEN_STREAM = Buffer.concat([
  hex('03 000000 00000a 14 00000000'), pay(10, 0x01), //     fmt0 csid 3: ts 0, len 10, type 20, stream 0
  hex('43 000021 000004 09'), pay(4, 0x02), //               fmt1: delta 33, len 4, type 9 (same stream)
  hex('83 000021'), pay(4, 0x03), //                          fmt2: delta 33 (same len/type)
  hex('c3'), pay(4, 0x04), //                                 fmt3 new message: delta 33 again
  hex('04 ffffff 000002 08 01000000 01000000'), pay(2, 0x05), // fmt0 csid 4 with extended timestamp 0x01000000
  hex('00 24 000005 000003 12 01000000'), pay(3, 0x06), //   fmt0 csid 100 (2-byte basic header)
  hex('01 0000 000007 000001 12 01000000'), pay(1, 0x07), // fmt0 csid 64 (3-byte basic header)
  hex('05 000000 0000c8 09 01000000'), pay(128, 0x08), //    fmt0 csid 5: 200 bytes in two chunks of 128
  hex('c5'), pay(72, 0x08), //                                fmt3 continuation
  hex('02 000000 000004 01 00000000 00000100'), //            Set Chunk Size 256 on csid 2
  hex('06 000000 0000c8 09 01000000'), pay(200, 0x09), //    now 200 bytes fit one chunk
]);

const GOLDEN_MESSAGES = [
  { csid: 3, type: 20, stream: 0, ts: 0, payload: pay(10, 0x01).toString('hex') },
  { csid: 3, type: 9, stream: 0, ts: 33, payload: pay(4, 0x02).toString('hex') },
  { csid: 3, type: 9, stream: 0, ts: 66, payload: pay(4, 0x03).toString('hex') },
  { csid: 3, type: 9, stream: 0, ts: 99, payload: pay(4, 0x04).toString('hex') },
  { csid: 4, type: 8, stream: 1, ts: 0x01000000, payload: pay(2, 0x05).toString('hex') },
  { csid: 100, type: 18, stream: 1, ts: 5, payload: pay(3, 0x06).toString('hex') },
  { csid: 64, type: 18, stream: 1, ts: 7, payload: pay(1, 0x07).toString('hex') },
  { csid: 5, type: 9, stream: 1, ts: 0, payload: pay(200, 0x08).toString('hex') },
  { csid: 2, type: 1, stream: 0, ts: 0, payload: '00000100' },
  { csid: 6, type: 9, stream: 1, ts: 0, payload: pay(200, 0x09).toString('hex') },
];

describe('RTMP chunk stream', () => {
  it('decodes every chunk type of the golden stream', () => {
    const d = new RtmpChunkDecoder();
    assert.deepEqual(d.push(GOLDEN_STREAM).map(simplify), GOLDEN_MESSAGES);
    assert.equal(d.inChunkSize, 256);
  });

  it('decodes the golden stream fed one byte at a time', () => {
    const d = new RtmpChunkDecoder();
    const out: RtmpMessage[] = [];
    for (const byte of GOLDEN_STREAM) out.push(...d.push(Buffer.from([byte])));
    assert.deepEqual(out.map(simplify), GOLDEN_MESSAGES);
  });

  it('encodes type-0 and continuation chunks to the golden bytes', () => {
    const first = encodeRtmpMessage({ chunkStreamId: 3, typeId: 20, messageStreamId: 0, timestamp: 0, payload: pay(10, 0x01) }, 128);
    assert.deepEqual(first, GOLDEN_STREAM.subarray(0, 22));
    const split = encodeRtmpMessage({ chunkStreamId: 5, typeId: 9, messageStreamId: 1, timestamp: 0, payload: pay(200, 0x08) }, 128);
    assert.deepEqual(split, Buffer.concat([hex('05 000000 0000c8 09 01000000'), pay(128, 0x08), hex('c5'), pay(72, 0x08)]));
    const ext = encodeRtmpMessage({ chunkStreamId: 4, typeId: 8, messageStreamId: 1, timestamp: 0x01000000, payload: pay(2, 0x05) }, 128);
    assert.deepEqual(ext, Buffer.concat([hex('04 ffffff 000002 08 01000000 01000000'), pay(2, 0x05)]));
  });

  it('round-trips random messages at random chunk sizes and split points (property)', () => {
    const rand = seededRandom(42);
    for (let round = 0; round < 200; round++) {
      const chunkSize = 1 + Math.floor(rand() * 300);
      const d = new RtmpChunkDecoder();
      d.push(encodeRtmpMessage({ chunkStreamId: 2, typeId: 1, messageStreamId: 0, timestamp: 0, payload: hex((chunkSize >>> 0).toString(16).padStart(8, '0')) }, 128));
      const sent = Array.from({ length: 1 + Math.floor(rand() * 5) }, () => ({
        chunkStreamId: 3 + Math.floor(rand() * 400),
        typeId: [8, 9, 18, 20][Math.floor(rand() * 4)]!,
        messageStreamId: Math.floor(rand() * 3),
        timestamp: Math.floor(rand() * 0x1ffffff),
        payload: randomBytes(rand, Math.floor(rand() * 1000)),
      }));
      const wire = Buffer.concat(sent.map((m) => encodeRtmpMessage(m, chunkSize)));
      const got: RtmpMessage[] = [];
      for (let pos = 0; pos < wire.length; ) {
        const n = 1 + Math.floor(rand() * 200);
        got.push(...d.push(wire.subarray(pos, pos + n)));
        pos += n;
      }
      assert.deepEqual(
        got.map((m) => [m.chunkStreamId, m.typeId, m.messageStreamId, m.timestamp, m.payload.toString('hex')]),
        sent.map((m) => [m.chunkStreamId, m.typeId, m.messageStreamId, m.timestamp, m.payload.toString('hex')]),
      );
    }
  });

  it('refuses a message larger than the limit before buffering it', () => {
    const d = new RtmpChunkDecoder({ maxMessageSize: 1000 });
    assert.throws(() => d.push(hex('03 000000 0003e9 09 01000000')), (e: unknown) => e instanceof MediaParseError && e.code === 'RTMP_MESSAGE_TOO_LARGE');
  });

  it('refuses a chunk stream that starts without a type-0 header', () => {
    assert.throws(() => new RtmpChunkDecoder().push(hex('c7 00')), (e: unknown) => e instanceof MediaParseError && e.code === 'RTMP_BAD_CHUNK');
  });

  it('refuses more chunk streams than the limit', () => {
    const d = new RtmpChunkDecoder({ maxChunkStreams: 4 });
    const headers = [3, 4, 5, 6, 7].map((csid) => Buffer.concat([hex(`${csid.toString(16).padStart(2, '0')} 000000 000010 09 01000000`), pay(16)]));
    assert.throws(() => d.push(Buffer.concat(headers)), (e: unknown) => e instanceof MediaParseError && e.code === 'RTMP_TOO_MANY_CHUNK_STREAMS');
  });

  it('honours Abort Message by dropping the partial message', () => {
    const d = new RtmpChunkDecoder();
    const out = d.push(
      Buffer.concat([
        hex('05 000000 0000c8 09 01000000'), pay(128),
        hex('02 000000 000004 02 00000000 00000005'), // Abort csid 5
        hex('05 000000 000002 09 01000000'), pay(2, 0x0c),
      ]),
    );
    assert.deepEqual(out.map((m) => [m.chunkStreamId, m.typeId, m.payload.length]), [[2, 2, 4], [5, 9, 2]]);
  });

  it('throws only MediaParseError, and holds bounded memory, on 3,000 random streams (fuzz)', () => {
    const rand = seededRandom(7);
    for (let i = 0; i < 3000; i++) {
      const d = new RtmpChunkDecoder({ maxMessageSize: 64 * 1024, maxChunkStreams: 8 });
      try {
        for (let j = 0; j < 4; j++) d.push(randomBytes(rand, Math.floor(rand() * 300)));
      } catch (err) {
        assert.ok(err instanceof MediaParseError, `threw ${String(err)}`);
      }
    }
  });
});
