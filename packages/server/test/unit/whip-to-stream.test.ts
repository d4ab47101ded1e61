import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { AccessUnit } from '../../src/core/access-unit.js';
import { silentLogger } from '../../src/core/logger.js';
import { Stream } from '../../src/core/stream.js';
import { WhipToStream } from '../../src/ingest/whip/whip-to-stream.js';
import { packetizeH264 } from '../../src/media/rtp/h264-packetizer.js';
import { readRtcpFeedback } from '../../src/media/rtp/rtcp.js';
import { writeRtpPacket } from '../../src/media/rtp/rtp-packet.js';
import { randomBytes, seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s, 'hex');
const SPS = hex('6764001eacd940a02ff970110000030001000003003c0f162d96');
const PPS = hex('68ebe3cb22c0');
const PT = 96;
const SSRC = 0x5555;

/** Frame i at 30 fps: an IDR every `gop` frames, else a P slice; 300 bytes so it needs FU-A at a 100-byte MTU. */
function framePackets(i: number, firstSeq: number, gop = 10): { packets: Buffer[]; nal: Buffer } {
  const nal = Buffer.alloc(300, i & 0xff);
  nal[0] = i % gop === 0 ? 0x65 : 0x41;
  const payloads = packetizeH264([nal], i % gop === 0 ? [SPS, PPS] : [], 100);
  const packets = payloads.map((p, k) => writeRtpPacket({ payloadType: PT, sequenceNumber: (firstSeq + k) & 0xffff, timestamp: 1000 + i * 3000, ssrc: SSRC, marker: p.marker }, p.payload));
  return { packets, nal };
}

function setup() {
  const stream = new Stream('t', { reconnectGraceMs: 1000, log: silentLogger, onEnded: () => undefined });
  const got: AccessUnit[] = [];
  stream.subscribe({ onSessionStart: () => undefined, onAccessUnit: (au) => got.push(au), onPublisherLost: () => undefined, onEnd: () => undefined });
  const rtcp: Buffer[] = [];
  const mapper = new WhipToStream(stream.claim({ protocol: 'whip' }), silentLogger, { payloadTypes: { video: PT }, opusChannels: 2, ssrc: 1, maxBitrate: 6_000_000, keyframeIntervalMs: 60_000, sendRtcp: (_kind, p) => rtcp.push(p) });
  return { stream, got, rtcp, mapper };
}

describe('WHIP RTP → core stream', () => {
  it('reassembles access units from reordered packets, keeps SPS/PPS in the track, and times them in 90 kHz', async () => {
    const { stream, got, mapper } = setup();
    const rand = seededRandom(5);
    let seq = 65_500; // crosses the 16-bit wrap
    const nals: Buffer[] = [];
    for (let i = 0; i < 20; i++) {
      const { packets, nal } = framePackets(i, seq);
      seq += packets.length;
      nals.push(nal);
      // Swap neighbours now and then: reordering within a few packets, as a network does.
      for (let k = 0; k + 1 < packets.length; k++) if (rand() < 0.3) [packets[k], packets[k + 1]] = [packets[k + 1]!, packets[k]!];
      for (const p of packets) mapper.onRtp('video', p, 1000 + i * 33);
    }
    await nextTurn();
    assert.equal(stream.state, 'live');
    const video = stream.tracks[0];
    assert.equal(video?.kind === 'video' ? video.info.width : 0, 640);
    assert.deepEqual(got.map((a) => a.dts - got[0]!.dts), nals.map((_, i) => i * 3000));
    assert.deepEqual(got.map((a) => Buffer.concat(a.payload.map((n) => Buffer.from(n))).toString('hex')), nals.map((n) => n.toString('hex')));
    assert.deepEqual(got.map((a) => a.keyframe), nals.map((_, i) => i % 10 === 0));
    assert.equal(mapper.stats.droppedFrames, 0);
  });

  it('NACKs a gap, delivers the frame when the retransmission comes, and gives up after 200 ms with a PLI', async () => {
    const { got, rtcp, mapper } = setup();
    let seq = 1;
    const send = (i: number, now: number, drop?: number): Buffer[] => {
      const { packets } = framePackets(i, seq);
      seq += packets.length;
      packets.forEach((p, k) => k !== drop && mapper.onRtp('video', p, now));
      return packets;
    };
    send(0, 0);
    const lostOnce = send(1, 33, 1);
    mapper.tick(40);
    const nacked = rtcp.flatMap((p) => readRtcpFeedback(p).nacks.flatMap((n) => n.sequenceNumbers));
    assert.deepEqual(nacked, [lostOnce[1]!.readUInt16BE(2)]);
    mapper.onRtp('video', lostOnce[1]!, 60); // the retransmission
    send(2, 66, 2); // lost for good
    send(3, 100);
    mapper.tick(400);
    send(4, 433);
    send(10, 450); // next keyframe
    await nextTurn();
    assert.deepEqual(got.map((a) => a.dts / 3000 - got[0]!.dts / 3000), [0, 1, 10]);
    assert.ok(mapper.stats.droppedFrames >= 3, `dropped ${mapper.stats.droppedFrames}`);
    assert.ok(rtcp.some((p) => readRtcpFeedback(p).keyframeRequests.includes(SSRC)), 'a PLI asked for a keyframe');
  });

  it('skips garbage, wrong payload types, other SSRCs and wild sequence jumps without throwing, then plays the next keyframe', async () => {
    const { mapper } = setup();
    const rand = seededRandom(21);
    for (let i = 0; i < 2000; i++) assert.doesNotThrow(() => mapper.onRtp('video', randomBytes(rand, Math.floor(rand() * 80)), i));
    // Garbage may have set the SSRC: a real publish on a fresh mapper with junk mixed in.
    const { got: got2, mapper: m2 } = setup();
    let seq = 100;
    for (let i = 0; i < 12; i++) {
      const { packets } = framePackets(i, i === 5 ? seq + 30_000 : seq); // one wild jump
      seq = (i === 5 ? seq + 30_000 : seq) + packets.length;
      for (const p of packets) {
        m2.onRtp('video', p, i * 33);
        m2.onRtp('video', Buffer.concat([p.subarray(0, 1), Buffer.from([PT + 1]), p.subarray(2)]), i * 33); // wrong PT
        m2.onRtp('video', p.subarray(0, 7), i * 33); // truncated
      }
      m2.tick(i * 33 + 300);
    }
    await nextTurn();
    assert.ok(got2.length >= 5 && got2[0]!.keyframe, `${got2.length} frames`);
    assert.ok(got2.some((a) => a.keyframe && a.dts > got2[0]!.dts), 'plays again from the keyframe after the jump');
  });
});
