import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { depacketizeH264, packetizeH264 } from '../../src/media/rtp/h264-packetizer.js';
import { isRtcp, readRtcpFeedback, readSenderReport, writeNack, writePli, writeReceiverReport, writeRemb, writeSenderReport } from '../../src/media/rtp/rtcp.js';
import { readRtpPacket, writeRtpPacket } from '../../src/media/rtp/rtp-packet.js';
import { randomBytes, seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const h = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const SPS = hex('6764001eacd940a02ff970110000030001000003003c0f162d96');
const PPS = hex('68ebe3cb22c0');

describe('RTP header (RFC 3550 §5.1)', () => {
  it('writes and reads golden bytes', () => {
    const pkt = writeRtpPacket({ payloadType: 96, sequenceNumber: 0x1234, timestamp: 0xdeadbeef, ssrc: 0x01020304, marker: true }, hex('abcd'));
    assert.equal(h(pkt), '80e01234deadbeef01020304abcd');
    const back = readRtpPacket(pkt);
    assert.deepEqual([back.payloadType, back.sequenceNumber, back.timestamp, back.ssrc, back.marker, h(back.payload)], [96, 0x1234, 0xdeadbeef, 0x01020304, true, 'abcd']);
  });

  it('skips CSRCs, a header extension and padding on read', () => {
    const pkt = hex('b1 60 0001 00000002 00000003 0000000a bede0001 10ff0000 cafe 0002');
    assert.equal(h(readRtpPacket(pkt).payload), 'cafe');
  });
});

describe('H.264 RTP packetization (RFC 6184)', () => {
  it('sends SPS and PPS in one STAP-A before an IDR, then the slice as a single NAL unit with the marker', () => {
    const idr = hex('65888400ff');
    const out = packetizeH264([idr], [SPS, PPS]);
    assert.equal(out.length, 2);
    // STAP-A: NRI 3 (from SPS 0x67), type 24, then 16-bit sizes.
    assert.equal(h(out[0]!.payload), `78${SPS.length.toString(16).padStart(4, '0')}${h(SPS)}0006${h(PPS)}`);
    assert.deepEqual(out.map((p) => p.marker), [false, true]);
    assert.equal(h(out[1]!.payload), h(idr));
  });

  it('fragments a large NAL unit into FU-A with start/end bits, and reassembles it', () => {
    const big = Buffer.concat([hex('41'), Buffer.alloc(3000, 7)]);
    const out = packetizeH264([big], [SPS, PPS], 1200);
    assert.equal(out.length, 3);
    assert.deepEqual(out.map((p) => h(p.payload.subarray(0, 2))), ['5c81', '5c01', '5c41']);
    assert.ok(out.every((p) => p.payload.length <= 1200));
    assert.deepEqual(out.map((p) => p.marker), [false, false, true]);
    assert.equal(h(depacketizeH264(out.map((p) => p.payload))[0]!), h(big));
  });

  it('drops access unit delimiters and sends nothing extra before a non-IDR slice', () => {
    const out = packetizeH264([hex('0910'), hex('419a')], [SPS, PPS]);
    assert.deepEqual(out.map((p) => h(p.payload)), ['419a']);
  });

  it('round-trips random access units (property)', () => {
    const rand = seededRandom(5);
    for (let i = 0; i < 200; i++) {
      const nals = Array.from({ length: 1 + Math.floor(rand() * 4) }, () => Buffer.concat([Buffer.from([0x41]), randomBytes(rand, Math.floor(rand() * 5000))]));
      const back = depacketizeH264(packetizeH264(nals, [], 1 + 100 + Math.floor(rand() * 1300)).map((p) => p.payload));
      assert.deepEqual(back.map(h), nals.map(h));
    }
  });
});

describe('RTCP', () => {
  it('writes a Sender Report with NTP time for the wall clock (golden)', () => {
    const sr = writeSenderReport(0x11223344, Date.UTC(2026, 0, 1) + 500, 90000, 10, 1000);
    assert.equal(h(sr.subarray(0, 8)), '80c8000611223344');
    assert.equal(sr.readUInt32BE(8), Date.UTC(2026, 0, 1) / 1000 + 2_208_988_800);
    assert.equal(sr.readUInt32BE(12), 2 ** 31); // .5 s
    assert.deepEqual([sr.readUInt32BE(16), sr.readUInt32BE(20), sr.readUInt32BE(24)], [90000, 10, 1000]);
    assert.equal(isRtcp(sr), true);
  });

  it('reads PLI, FIR and generic NACK (with the lost-packet bitmask) from a compound packet', () => {
    const pli = hex('81ce0002 00000001 0000aaaa');
    const fir = hex('84ce0004 00000001 00000000 0000bbbb 07000000');
    const nack = hex('81cd0003 00000001 0000cccc 0064 0005'); // pid 100, blp bits 0 and 2 → 101, 103
    const rr = hex('81c90007 00000001 0000aaaa 00000000 00000000 00000000 00000000 00000000');
    const fb = readRtcpFeedback(Buffer.concat([rr, pli, fir, nack]));
    assert.deepEqual(fb.keyframeRequests, [0xaaaa, 0xbbbb]);
    assert.deepEqual(fb.nacks, [{ ssrc: 0xcccc, sequenceNumbers: [100, 101, 103] }]);
  });

  it('reads report blocks (fraction lost, jitter) and REMB from what it writes, and from golden bytes', () => {
    const rr = writeReceiverReport(1, [{ ssrc: 0xabc, fractionLost: 0.25, cumulativeLost: 3, extendedHighestSequence: 7, jitter: 90, lastSenderReport: 0, delaySinceLastSenderReport: 0 }]);
    const remb = writeRemb(1, 1_234_567, [0xabc]);
    const fb = readRtcpFeedback(Buffer.concat([rr, remb]));
    assert.deepEqual(fb.reports, [{ ssrc: 0xabc, fractionLost: 0.25, jitter: 90 }]);
    assert.ok(fb.remb !== undefined && Math.abs(fb.remb - 1_234_567) <= 8, `REMB ${fb.remb} (mantissa precision)`);
    // 6 Mb/s golden REMB from above: exponent 5, mantissa 0x16dc6c → 187500 × 32.
    assert.equal(readRtcpFeedback(hex('8fce0005 00000001 00000000 52454d42 01 16 dc6c 0a0b0c0d')).remb, 6_000_000);
    // A Sender Report's block comes after its 20-byte sender info.
    const sr = hex('81c8000c 00000001 00000000 00000000 00000000 00000000 00000000 00000def 80000000 00000000 00000000 00000000 00000000');
    assert.deepEqual(readRtcpFeedback(sr).reports, [{ ssrc: 0xdef, fractionLost: 0.5, jitter: 0 }]);
    // A REMB cut short is skipped, not misread.
    assert.equal(readRtcpFeedback(remb.subarray(0, 16)).remb, undefined);
  });

  it('never throws on random bytes (fuzz)', () => {
    const rand = seededRandom(11);
    for (let i = 0; i < 3000; i++) {
      const b = randomBytes(rand, Math.floor(rand() * 64));
      assert.doesNotThrow(() => readRtcpFeedback(b));
      assert.doesNotThrow(() => readSenderReport(b));
      assert.doesNotThrow(() => depacketizeH264([b]));
    }
  });
});

describe('RTCP a receiver sends (WHIP ingest)', () => {
  it('writes a Receiver Report block (RFC 3550 §6.4.2, golden)', () => {
    const rr = writeReceiverReport(1, [{ ssrc: 2, fractionLost: 0.25, cumulativeLost: 3, extendedHighestSequence: 0x10005, jitter: 10, lastSenderReport: 0xaabbccdd, delaySinceLastSenderReport: 65536 }]);
    assert.equal(h(rr), '81c90007' + '00000001' + '00000002' + '40000003' + '00010005' + '0000000a' + 'aabbccdd' + '00010000');
  });

  it('packs generic NACKs as PID + bitmask (RFC 4585 §6.2.1, golden) that the reader expands again', () => {
    const nack = writeNack(1, 2, [103, 100, 120, 101, 100]);
    assert.equal(h(nack), '81cd0004' + '00000001' + '00000002' + '00640005' + '00780000');
    assert.deepEqual(readRtcpFeedback(nack).nacks, [{ ssrc: 2, sequenceNumbers: [100, 101, 103, 120] }]);
    // Across the 16-bit wrap both are still asked for (as two FCIs).
    assert.deepEqual(readRtcpFeedback(writeNack(1, 2, [65535, 0])).nacks[0]!.sequenceNumbers.sort((a, b) => a - b), [0, 65535]);
  });

  it('writes a PLI (RFC 4585 §6.3.1) and a REMB (draft-alvestrand-rmcat-remb §2.2) as golden bytes', () => {
    assert.equal(h(writePli(1, 2)), '81ce0002' + '00000001' + '00000002');
    assert.deepEqual(readRtcpFeedback(writePli(1, 2)).keyframeRequests, [2]);
    // 6 000 000 bit/s = 187 500 × 2^5: exponent 5, 18-bit mantissa 0x2dc6c.
    assert.equal(h(writeRemb(1, 6_000_000, [0x0a0b0c0d])), '8fce0005' + '00000001' + '00000000' + '52454d42' + '01' + '16' + 'dc6c' + '0a0b0c0d');
  });

  it("reads a Sender Report's SSRC and the middle 32 bits of its NTP time (for LSR)", () => {
    const sr = writeSenderReport(0x11223344, Date.UTC(2026, 0, 1) + 500, 90000, 10, 1000);
    assert.deepEqual(readSenderReport(sr), { ssrc: 0x11223344, ntpMiddle: sr.readUInt32BE(10) });
    assert.equal(readSenderReport(writePli(1, 2)), undefined);
  });
});

