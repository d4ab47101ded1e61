import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RenditionSwitch } from '../../src/egress/whep/whep-rendition-switch.js';
import type { RtpViewer, WhepSource } from '../../src/egress/whep/whep-source.js';
import { readRtpPacket, writeRtpPacket } from '../../src/media/rtp/rtp-packet.js';

/** A stand-in for a WhepSource: only what RenditionSwitch reads (its SSRC, its newest video timestamp, viewers). */
function fakeSource(ssrc: number): WhepSource & { lastTs: number } {
  const s = {
    lastTs: 0,
    listeners: 0,
    videoSsrc: ssrc,
    get lastVideoTimestamp() {
      return s.lastTs;
    },
    addViewer() {
      s.listeners++;
    },
    removeViewer() {
      s.listeners--;
    },
    retransmission: () => undefined,
  };
  return s as unknown as WhepSource & { lastTs: number };
}

const packet = (ssrc: number, seq: number, timestamp: number): Buffer => writeRtpPacket({ marker: true, payloadType: 102, sequenceNumber: seq, timestamp, ssrc }, Buffer.from([0x65, ssrc]));

describe('WHEP rendition switch', () => {
  it('holds the source at its keyframe until the lagging rendition sends the same one, then continues it seamlessly', () => {
    const src = fakeSource(1);
    const low = fakeSource(2);
    const out: Buffer[] = [];
    const sw = new RenditionSwitch(src, src, {} as RtpViewer, (p: Buffer) => out.push(p), () => undefined);
    sw.onPacket(packet(1, 100, 3000), src, false);
    low.lastTs = 0; // the rendition lags
    sw.request(low);
    sw.onPacket(packet(1, 101, 6000), src, true); // the source's keyframe K: held
    sw.onPacket(packet(1, 102, 9000), src, false);
    assert.equal(out.length, 1, 'nothing after K goes out while held');
    sw.onPacket(packet(2, 500, 3000), low, false);
    sw.onPacket(packet(2, 501, 6000), low, true); // the rendition's K: the cut-over
    const sent = out.map((p) => readRtpPacket(p));
    assert.deepEqual(sent.map((p) => [p.ssrc, p.sequenceNumber, p.timestamp, p.payload[1]]), [[1, 100, 3000, 1], [1, 101, 6000, 2]], 'the rendition’s K follows the source’s last picture before K: one SSRC, consecutive numbers');
    assert.equal(sw.source, low);
    assert.equal(sw.switches, 1);
  });

  it('lets the held packets go, in order, when the rendition does not reach the keyframe within the hold limit', async () => {
    const src = fakeSource(1);
    const low = fakeSource(2);
    const out: Buffer[] = [];
    const sw = new RenditionSwitch(src, src, {} as RtpViewer, (p: Buffer) => out.push(p), () => undefined);
    sw.onPacket(packet(1, 100, 3000), src, false);
    sw.request(low);
    sw.onPacket(packet(1, 101, 6000), src, true);
    sw.onPacket(packet(1, 102, 9000), src, false);
    await new Promise((r) => setTimeout(r, 550));
    sw.onPacket(packet(1, 103, 12000), src, false);
    assert.deepEqual(out.map((p) => readRtpPacket(p).sequenceNumber), [100, 101, 102, 103], 'the keyframe is not lost');
    assert.equal(sw.source, src);
  });
});
