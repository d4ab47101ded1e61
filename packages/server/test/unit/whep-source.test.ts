/** The WHEP source's join: a new viewer gets the current GOP's video at once, and its audio only live. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccessUnit } from '../../src/core/access-unit.js';
import type { Track } from '../../src/core/track.js';
import { type MediaKind, type RtpViewer, WhepSource } from '../../src/egress/whep/whep-source.js';
import { AUDIO_CODECS, VIDEO_CODECS } from '../../src/media/codecs/codec-table.js';
import { buildAvcConfig, splitAnnexB } from '../../src/media/codecs/h264.js';
import { readRtpPacket } from '../../src/media/rtp/rtp-packet.js';

const [SPS, PPS] = splitAnnexB(Buffer.from('000000016764001eacd940a02ff970110000030001000003003c0f162d960000000168ebe3cb22c0', 'hex'));
const RECORD = buildAvcConfig([SPS!], [PPS!]);
const VIDEO: Track = { kind: 'video', id: 1, codec: 'h264', timescale: 90_000, config: RECORD, info: VIDEO_CODECS.h264.parseConfig(RECORD) };
const OPUS_HEAD = Buffer.from('4f707573486561640102000080bb0000000000', 'hex');
const OPUS: Track = { kind: 'audio', id: 2, codec: 'opus', timescale: 48_000, config: OPUS_HEAD, info: AUDIO_CODECS.opus.parseConfig(OPUS_HEAD) };

/** Picture i (30 fps; a keyframe every 30). */
const picture = (i: number): AccessUnit => ({ trackId: 1, dts: i * 3000, pts: i * 3000, keyframe: i % 30 === 0, payload: [Buffer.from([i % 30 === 0 ? 0x65 : 0x41, i & 0xff])] });
/** Opus packet i (20 ms, TOC 0xfc: CELT FB 20 ms, stereo, one frame). */
const opus = (i: number): AccessUnit => ({ trackId: 2, dts: i * 960, pts: i * 960, keyframe: true, payload: [Buffer.from([0xfc, i & 0xff])] });

function viewer(): RtpViewer & { got: { kind: MediaKind; seq: number }[] } {
  const got: { kind: MediaKind; seq: number }[] = [];
  // RTCP (sender reports, packet type 200–204) is left out: only media packets are counted.
  return { got, payloadType: () => undefined, sendPacket: (kind, packet) => void (packet[1]! >= 192 && packet[1]! <= 223 ? undefined : got.push({ kind, seq: readRtpPacket(packet).sequenceNumber })) };
}

describe('WHEP source', () => {
  it('replays the GOP’s video to a joining viewer but not its audio (a burst of old audio reads as jitter to the browser)', () => {
    const source = new WhepSource('s');
    try {
      source.onSessionStart({ tracks: [VIDEO, OPUS], session: 1, discontinuity: false });
      // 1.5 s of stream: pictures 0..44 (keyframes at 0 and 30) with their audio.
      for (let i = 0; i < 45; i++) {
        source.onAccessUnit(picture(i));
        if (i % 2 === 0) source.onAccessUnit(opus((i * 3) / 2));
      }
      const v = viewer();
      source.addViewer(v);
      const replayedVideo = v.got.filter((p) => p.kind === 'video');
      assert.ok(replayedVideo.length >= 15, `the GOP since the keyframe at picture 30 is replayed (${replayedVideo.length} packets)`);
      assert.equal(v.got.filter((p) => p.kind === 'audio').length, 0, 'no old audio');
      // Live packets of both kinds follow.
      source.onAccessUnit(picture(45));
      source.onAccessUnit(opus(68));
      assert.deepEqual(v.got.slice(-2).map((p) => p.kind), ['video', 'audio']);
      const seqs = replayedVideo.map((p) => p.seq);
      assert.deepEqual(seqs, seqs.map((_, k) => (seqs[0]! + k) & 0xffff), 'consecutive video packets from the keyframe on');
    } finally {
      source.close();
    }
  });
});
