/**
 * SRT packets (draft-sharabayko-srt-01 §3) as golden bytes, both directions: data and control headers, the
 * handshake CIF with HSREQ and SID extensions (libsrt's word-reversed stream id), ACK, NAK loss lists with ranges,
 * sequence arithmetic across the 31-bit wrap, and malformed datagrams refused with a parse error (fuzz).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MediaParseError } from '../../src/media/errors.js';
import {
  CONTROL,
  EXTENSION,
  HANDSHAKE_TYPE,
  parseAck,
  parseHandshake,
  parseHsExtension,
  parseLossList,
  parseSrtPacket,
  parseStreamIdExtension,
  seqAdd,
  seqDiff,
  SRT_FLAGS,
  SRT_MAGIC,
  writeAck,
  writeHandshake,
  writeHsExtension,
  writeLossList,
  writeSrtControl,
  writeSrtData,
  writeStreamIdExtension,
} from '../../src/ingest/srt/srt-packet.js';
import { seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

describe('SRT packets (draft-sharabayko-srt §3)', () => {
  it('reads and writes a data packet header (golden bytes)', () => {
    // seq 0x12345678 · PP=11 (solo), O=1, KK=00, R=1, msg 5 · timestamp 1000 µs · socket 0xCAFEBABE · "TS"
    const golden = hex('12345678 e4000005 000003e8 cafebabe 5453');
    const p = parseSrtPacket(golden);
    assert.deepEqual({ ...p, payload: Buffer.from((p as { payload: Uint8Array }).payload).toString() }, {
      kind: 'data', sequence: 0x12345678, position: 3, inOrder: true, keyFlags: 0, retransmitted: true, messageNumber: 5, timestamp: 1000, destinationSocket: 0xcafebabe, payload: 'TS',
    });
    assert.deepEqual(writeSrtData({ sequence: 0x12345678, position: 3, inOrder: true, keyFlags: 0, retransmitted: true, messageNumber: 5, timestamp: 1000, destinationSocket: 0xcafebabe, payload: Buffer.from('TS') }), golden);
  });

  it('reads and writes a control header: ACKACK with its ACK number (golden bytes)', () => {
    const golden = hex('80060000 00000007 00000010 00000001');
    assert.deepEqual(parseSrtPacket(golden), { kind: 'control', type: CONTROL.ackack, subtype: 0, info: 7, timestamp: 16, destinationSocket: 1, cif: golden.subarray(16) });
    assert.deepEqual(writeSrtControl({ type: CONTROL.ackack, subtype: 0, info: 7, timestamp: 16, destinationSocket: 1, cif: new Uint8Array(0) }), golden);
  });

  it('reads and writes a conclusion handshake with HSREQ and a stream id (golden bytes)', () => {
    const golden = hex(`
      00000005 0000 0005 1a2b3c4d 000005dc 00002000 ffffffff 0badf00d 13572468
      0100007f 00000000 00000000 00000000
      0001 0003 00010503 000000bf 00c800c8
      0005 0003 3a3a2123 616d3d72 00006e69`);
    const h = parseHandshake(golden);
    assert.equal(h.version, 5);
    assert.equal(h.extensionField, 5);
    assert.equal(h.initialSequence, 0x1a2b3c4d);
    assert.equal(h.mtu, 1500);
    assert.equal(h.handshakeType, HANDSHAKE_TYPE.conclusion);
    assert.equal(h.socketId, 0x0badf00d);
    assert.equal(h.cookie, 0x13572468);
    assert.deepEqual(h.extensions.map((e) => e.type), [EXTENSION.hsreq, EXTENSION.sid]);
    const hs = parseHsExtension(h.extensions[0]!.data);
    assert.deepEqual(hs, { srtVersion: 0x010503, flags: 0xbf, receiverDelayMs: 200, senderDelayMs: 200 });
    assert.ok(hs.flags & SRT_FLAGS.tsbpdReceiver && hs.flags & SRT_FLAGS.tlpktDrop);
    assert.equal(parseStreamIdExtension(h.extensions[1]!.data), '#!::r=main');
    assert.deepEqual(
      writeHandshake({ ...h, extensions: [{ type: EXTENSION.hsreq, data: writeHsExtension(hs) }, { type: EXTENSION.sid, data: writeStreamIdExtension('#!::r=main') }] }),
      golden,
    );
  });

  it('pads a stream id to whole words and reads it back', () => {
    for (const id of ['a', 'ab', 'abc', 'abcd', 'abcde', '#!::r=live/Jx0bq2-Fk_9aPq7Lm3Ns5Tv8Wx1Yz4Ab,m=publish']) {
      const data = writeStreamIdExtension(id);
      assert.equal(data.length % 4, 0);
      assert.equal(parseStreamIdExtension(data), id);
    }
  });

  it('writes an induction response with the SRT magic', () => {
    const cif = writeHandshake({ version: 5, encryption: 0, extensionField: SRT_MAGIC, initialSequence: 1, mtu: 1500, flowWindow: 8192, handshakeType: HANDSHAKE_TYPE.induction, socketId: 9, cookie: 42, peerAddress: Buffer.alloc(16), extensions: [] });
    assert.equal(cif.length, 48);
    assert.equal(cif.readUInt16BE(6), 0x4a17);
  });

  it('writes a full ACK and reads it, and a light ACK', () => {
    const ack = { lastAcknowledged: 100, rtt: 20_000, rttVariance: 5_000, availableBuffer: 8000, packetsReceivingRate: 500, estimatedLinkCapacity: 10_000, receivingRate: 600_000 };
    assert.deepEqual(parseAck(writeAck(ack)), ack);
    assert.deepEqual(parseAck(hex('00000064')), { lastAcknowledged: 100, rtt: undefined, rttVariance: undefined, availableBuffer: undefined, packetsReceivingRate: undefined, estimatedLinkCapacity: undefined, receivingRate: undefined });
  });

  it('encodes NAK loss lists with single numbers and ranges (golden bytes)', () => {
    const golden = hex('00000005 8000000a 0000000c 7fffffff');
    assert.deepEqual(writeLossList([[5, 5], [10, 12], [0x7fffffff, 0x7fffffff]]), golden);
    assert.deepEqual(parseLossList(golden), [[5, 5], [10, 12], [0x7fffffff, 0x7fffffff]]);
    assert.throws(() => parseLossList(hex('8000000a')), MediaParseError);
  });

  it('does sequence arithmetic across the 31-bit wrap', () => {
    assert.equal(seqAdd(0x7fffffff, 1), 0);
    assert.equal(seqDiff(0, 0x7fffffff), 1);
    assert.equal(seqDiff(0x7fffffff, 0), -1);
    assert.equal(seqDiff(10, 5), 5);
  });

  it('refuses truncated and oversized datagrams and bad handshakes with a parse error, never another exception (fuzz)', () => {
    assert.throws(() => parseSrtPacket(Buffer.alloc(15)), MediaParseError);
    assert.throws(() => parseSrtPacket(Buffer.alloc(1501)), MediaParseError);
    assert.throws(() => parseHandshake(Buffer.alloc(47)), MediaParseError);
    assert.throws(() => parseHandshake(Buffer.concat([Buffer.alloc(48), hex('0005 00ff')])), MediaParseError);
    const rand = seededRandom(99);
    for (let i = 0; i < 2000; i++) {
      const d = Buffer.alloc(Math.floor(rand() * 200));
      for (let k = 0; k < d.length; k++) d[k] = Math.floor(rand() * 256);
      for (const parse of [parseSrtPacket, parseHandshake, parseLossList, parseAck, parseHsExtension]) {
        try {
          parse(d);
        } catch (err) {
          assert.ok(err instanceof MediaParseError, String(err));
        }
      }
      parseStreamIdExtension(d);
    }
  });
});
