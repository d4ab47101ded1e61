/** Ownership in the core: publisher-session handles, one claim per stream, cascading close, one stats shape. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GlasscastError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { StreamRegistry } from '../../src/core/stream-registry.js';
import type { StreamSink } from '../../src/core/subscriber.js';
import type { Track } from '../../src/core/track.js';
import { AUDIO_CODECS } from '../../src/media/codecs/codec-table.js';

const AAC = Buffer.from([0x11, 0x90]);
const AUDIO: Track = { kind: 'audio', id: 2, codec: 'aac', timescale: 48_000, config: AAC, info: AUDIO_CODECS.aac.parseConfig(AAC) };

/** A sink that records what it was told, in order. */
function recorder(): StreamSink & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    onSessionStart: (s) => events.push(`start${s.discontinuity ? '+disc' : ''}`),
    onAccessUnit: (au) => events.push(`au${au.dts}`),
    onPublisherLost: () => events.push('lost'),
    onEnd: (reason) => events.push(`end:${reason}`),
  };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('stream ownership', () => {
  it('refuses a second claim on a claimed stream, whatever the protocol, until the first handle is closed', () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const rtmp = registry.claimForPublish('main', { protocol: 'rtmp' });
    // Claimed but not yet started (RTMP between publish and its first sequence header) still refuses.
    for (const protocol of ['rtmp', 'whip', 'srt'] as const) {
      assert.throws(() => registry.claimForPublish('main', { protocol }), (err: unknown) => err instanceof GlasscastError && err.code === 'STREAM_ALREADY_PUBLISHING');
    }
    rtmp.start([AUDIO]);
    assert.throws(() => registry.claimForPublish('main', { protocol: 'whip' }), /already has a live publisher/);
    rtmp.close('publisher left');
    assert.equal(registry.get('main')?.state, 'reconnecting', 'waits for its publisher');
    const again = registry.claimForPublish('main', { protocol: 'whip' });
    assert.equal(again.stream, rtmp.stream, 'the returning publisher continues the same stream');
    registry.close();
  });

  it('ends a stream at once when its only handle closes before any media (the name is free again)', () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 60_000, log: silentLogger, observers: [] });
    const handle = registry.claimForPublish('a', { protocol: 'rtmp' });
    handle.close('refused');
    assert.equal(handle.stream.state, 'ended');
    assert.equal(registry.get('a'), undefined);
    registry.claimForPublish('a', { protocol: 'rtmp' }).close('again');
  });

  it('publishes only through the handle; a closed handle publishes nothing', async () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const handle = registry.claimForPublish('a', { protocol: 'rtmp' });
    const sink = recorder();
    handle.stream.subscribe(sink);
    handle.start([AUDIO]);
    handle.publish({ trackId: 2, dts: 1, pts: 1, keyframe: true, payload: [Buffer.from([1])] });
    handle.close('gone', { endStream: true });
    handle.publish({ trackId: 2, dts: 2, pts: 2, keyframe: true, payload: [Buffer.from([1])] });
    await tick();
    assert.deepEqual(sink.events, ['start', 'au1', 'end:gone']);
    assert.throws(() => handle.start([AUDIO]), /has ended/);
    registry.close();
  });

  it('cascades close: renditions end, readers are told, the publisher hears it once; close is idempotent', async () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const closedBy: string[] = [];
    const handle = registry.claimForPublish('a', { protocol: 'whip' }, { streamClosed: (reason) => closedBy.push(reason) });
    handle.start([AUDIO]);
    const rendition = handle.stream.addRendition({ name: 'opus', role: 'audio', kind: 'audio', codec: 'opus', width: 0, height: 0, bitrate: 96_000, maxFrameRate: undefined });
    const job = rendition.claim({ protocol: 'transcoder' });
    const sourceReader = recorder();
    const renditionReader = recorder();
    handle.stream.subscribe(sourceReader);
    rendition.subscribe(renditionReader);
    registry.close();
    registry.close();
    handle.stream.close('again');
    await tick();
    assert.equal(rendition.state, 'ended');
    assert.equal(job.closed, true, 'the job’s handle is closed with its rendition');
    assert.deepEqual(closedBy, ['server shutting down'], 'the publisher is told once');
    assert.equal(handle.closed, true);
    assert.deepEqual(sourceReader.events.at(-1), 'end:server shutting down');
    assert.deepEqual(renditionReader.events, ['end:server shutting down']);
    handle.close('late'); // a no-op, not an error
  });

  it('finds the group’s audio in a codec: the source’s own, or the audio rendition', () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const handle = registry.claimForPublish('a', { protocol: 'rtmp' });
    handle.start([AUDIO]);
    const stream = handle.stream;
    assert.equal(stream.audioFor('aac'), stream);
    assert.equal(stream.audioFor('opus'), undefined);
    const opus = stream.addRendition({ name: 'opus', role: 'audio', kind: 'audio', codec: 'opus', width: 0, height: 0, bitrate: 96_000, maxFrameRate: undefined });
    assert.equal(stream.audioFor('opus'), opus);
    assert.equal(opus.audioFor('aac'), stream, 'asked of a rendition, it answers for its group');
    registry.close();
  });

  it('reports every entity in one stats shape, the publisher and renditions as children', () => {
    const registry = new StreamRegistry({ reconnectGraceMs: 1000, log: silentLogger, observers: [] });
    const handle = registry.claimForPublish('a', { protocol: 'rtmp', remoteAddress: '127.0.0.1' }, { stats: () => ({ counters: { bytes: 42 }, info: {} }) });
    handle.start([AUDIO]);
    handle.stream.subscribe(recorder(), { label: 'llhls' });
    handle.stream.addRendition({ name: 'opus', role: 'audio', kind: 'audio', codec: 'opus', width: 0, height: 0, bitrate: 96_000, maxFrameRate: undefined });
    const stats = handle.stream.getStats();
    const shape = (s: typeof stats): void => {
      assert.deepEqual(Object.keys(s).sort(), ['children', 'counters', 'createdAt', 'id', 'info', 'state', 'type']);
      for (const v of Object.values(s.counters)) assert.equal(typeof v, 'number');
      s.children.forEach(shape);
    };
    shape(stats);
    assert.deepEqual(stats.children.map((c) => c.type), ['publisher', 'subscriber', 'stream']);
    assert.equal(stats.children[0]!.counters['bytes'], 42);
    assert.equal(stats.children[0]!.info['protocol'], 'rtmp');
    assert.match(stats.children[1]!.id, /^llhls#\d+$/);
    assert.equal(stats.children[2]!.info['role'], 'audio');
    registry.close();
  });
});
