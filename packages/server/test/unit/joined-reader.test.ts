/** The joined reader: a variant's video with the group's one audio, each sample just before the picture it plays with. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { AccessUnit } from '../../src/core/access-unit.js';
import { JoinedReader } from '../../src/core/joined-reader.js';
import { silentLogger } from '../../src/core/logger.js';
import { StreamRegistry } from '../../src/core/stream-registry.js';
import type { SessionStart, StreamSink } from '../../src/core/subscriber.js';
import type { Track } from '../../src/core/track.js';
import { buildAvcConfig, splitAnnexB } from '../../src/media/codecs/h264.js';
import { AUDIO_CODECS, VIDEO_CODECS } from '../../src/media/codecs/codec-table.js';

const [SPS, PPS] = splitAnnexB(Buffer.from('000000016764001eacd940a02ff970110000030001000003003c0f162d960000000168ebe3cb22c0', 'hex'));
const RECORD = buildAvcConfig([SPS!], [PPS!]);
const VIDEO: Track = { kind: 'video', id: 1, codec: 'h264', timescale: 90_000, config: RECORD, info: VIDEO_CODECS.h264.parseConfig(RECORD) };
const OPUS_HEAD = Buffer.from('4f707573486561640102000080bb0000000000', 'hex');
const OPUS: Track = { kind: 'audio', id: 2, codec: 'opus', timescale: 48_000, config: OPUS_HEAD, info: AUDIO_CODECS.opus.parseConfig(OPUS_HEAD) };
const AAC_CONFIG = Buffer.from([0x11, 0x90]);
const AAC: Track = { kind: 'audio', id: 1, codec: 'aac', timescale: 48_000, config: AAC_CONFIG, info: AUDIO_CODECS.aac.parseConfig(AAC_CONFIG) };

const video = (i: number): AccessUnit => ({ trackId: 1, dts: i * 3000, pts: i * 3000, keyframe: i % 30 === 0, payload: [Buffer.from([i % 30 === 0 ? 0x65 : 0x41])] });
const audio = (i: number, trackId: number): AccessUnit => ({ trackId, dts: i * 960, pts: i * 960, keyframe: true, payload: [Buffer.from([i & 0xff])] });
const tick = async (n = 3): Promise<void> => {
  for (let i = 0; i < n; i++) await new Promise((r) => setImmediate(r));
};

function recorder(): StreamSink & { starts: SessionStart[]; units: AccessUnit[] } {
  const starts: SessionStart[] = [];
  const units: AccessUnit[] = [];
  return { starts, units, onSessionStart: (s) => starts.push(s), onAccessUnit: (au) => units.push(au), onPublisherLost: () => undefined, onEnd: () => undefined };
}

describe('joined reader', () => {
  it('joins a source’s video with the AAC rendition: one session with both tracks, audio just before the picture after it', async () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const source = registry.claimForPublish('s', { protocol: 'whip' });
    source.start([VIDEO, OPUS]);
    const aacStream = source.stream.addRendition({ name: 'aac', role: 'audio', kind: 'audio', codec: 'aac', width: 0, height: 0, bitrate: 128_000, maxFrameRate: undefined });
    const aac = aacStream.claim({ protocol: 'transcoder' });
    aac.start([AAC]);
    const sink = recorder();
    const reader = new JoinedReader(source.stream, () => source.stream.audioFor('aac'), sink);
    await tick();
    // The AAC arrives early (the video is late, as a rung's is), and the source's own Opus is ignored.
    for (let i = 0; i < 20; i++) aac.publish(audio(i, 1));
    for (let i = 0; i < 20; i++) source.publish(audio(i, 2));
    await tick();
    for (let i = 0; i < 6; i++) source.publish(video(i));
    await tick();
    assert.equal(sink.starts.length, 1);
    assert.deepEqual(sink.starts[0]!.tracks.map((t) => `${t.id}:${t.codec}`), ['1:h264', '2:aac'], 'the AAC track gets an id of its own');
    // 20 ms audio frames against 33 ms pictures: every audio frame that starts before a picture precedes it.
    const order = sink.units.map((u) => (u.trackId === 1 ? `v${u.pts / 3000}` : `a${u.dts / 960}`));
    assert.deepEqual(order, ['v0', 'a0', 'a1', 'v1', 'a2', 'a3', 'v2', 'a4', 'v3', 'a5', 'a6', 'v4', 'a7', 'a8', 'v5']);
    assert.ok(sink.units.filter((u) => u.trackId === 2).every((u) => u.payload[0]!.length === 1), 'only the rendition’s frames');
    reader.close();
    registry.close();
  });

  it('passes a stream through untouched when it carries the wanted audio itself', async () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const source = registry.claimForPublish('s', { protocol: 'rtmp' });
    const aacOwn: Track = { ...AAC, id: 2 };
    source.start([VIDEO, aacOwn]);
    const sink = recorder();
    const reader = new JoinedReader(source.stream, () => source.stream.audioFor('aac'), sink);
    await tick();
    source.publish(audio(5, 2)); // arrival order is kept: the muxer sorts out timing
    source.publish(video(0));
    await tick();
    assert.deepEqual(sink.starts[0]!.tracks, [VIDEO, aacOwn]);
    assert.deepEqual(sink.units.map((u) => u.trackId), [2, 1]);
    reader.close();
    registry.close();
  });

  it('gives video only when the group has no audio in the codec (an Opus source without its AAC rendition)', async () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const source = registry.claimForPublish('s', { protocol: 'whip' });
    source.start([VIDEO, OPUS]);
    const sink = recorder();
    const reader = new JoinedReader(source.stream, () => source.stream.audioFor('aac'), sink);
    await tick();
    source.publish(audio(0, 2));
    source.publish(video(0));
    await tick();
    assert.deepEqual(sink.starts[0]!.tracks.map((t) => t.codec), ['h264']);
    assert.deepEqual(sink.units.map((u) => u.trackId), [1]);
    reader.close();
    registry.close();
  });
});
