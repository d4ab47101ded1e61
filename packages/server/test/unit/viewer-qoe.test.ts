/** Viewer QoE aggregation (observability/viewer-qoe.ts): per-stream figures from players' cumulative beacons. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ViewerQoe, type QoeBeacon } from '../../src/observability/viewer-qoe.js';

const beacon = (viewerId: string, fields: Partial<QoeBeacon> = {}): QoeBeacon => ({
  viewerId,
  protocol: 'll-hls',
  joinMs: 800,
  playingMs: 10_000,
  rebuffers: 0,
  rebufferMs: 0,
  switches: 0,
  latencyMs: 1200,
  errors: [],
  ...fields,
});

describe('ViewerQoe', () => {
  it('counts each viewer by its newest beacon: rebuffer ratio, join and latency quantiles, protocols and errors', () => {
    const qoe = new ViewerQoe({ windowMs: 60_000, maxViewersPerStream: 100, maxStreams: 10 });
    qoe.report('a', beacon('viewer-one', { playingMs: 5000, rebuffers: 1, rebufferMs: 500 }), 1000);
    // The same viewer 10 s later: cumulative figures replace the earlier ones, errors add up.
    qoe.report('a', beacon('viewer-one', { playingMs: 15_000, rebuffers: 2, rebufferMs: 1000, errors: ['hls:bufferStalledError'] }), 11_000);
    qoe.report('a', beacon('viewer-two', { protocol: 'webrtc', joinMs: 400, latencyMs: 200, playingMs: 16_000, errors: ['hls:bufferStalledError'] }), 11_000);
    const f = qoe.figures('a', 12_000)!;
    assert.equal(f.viewers, 2);
    assert.equal(f.beacons, 3);
    assert.equal(f.rebufferRatio, 1000 / (15_000 + 16_000 + 1000));
    assert.equal(f.rebuffers, 2);
    assert.deepEqual(f.joinMs, { p50: 400, p95: 800 });
    assert.deepEqual(f.latencyMs, { p50: 200, p95: 1200 });
    assert.deepEqual(f.protocols, { 'll-hls': 1, webrtc: 1 });
    assert.deepEqual(f.errors, [{ code: 'hls:bufferStalledError', count: 2 }]);
    assert.equal(qoe.figures('b', 12_000), undefined, 'a stream nobody reported on has no figures');
  });

  it('sums venue mode\'s bytes over the viewers that play it: offload = peer bytes ÷ all', () => {
    const qoe = new ViewerQoe({ windowMs: 60_000, maxViewersPerStream: 100, maxStreams: 10 });
    qoe.report('a', beacon('viewer-one'), 1000);
    assert.equal(qoe.figures('a', 2000)!.p2p, null);
    qoe.report('a', beacon('viewer-two', { p2p: { peerBytes: 100, httpBytes: 900, uploadedBytes: 0 } }), 1000);
    qoe.report('a', beacon('viewer-three', { p2p: { peerBytes: 300, httpBytes: 0, uploadedBytes: 5 } }), 1000);
    // A newer beacon replaces the viewer's bytes (cumulative figures).
    qoe.report('a', beacon('viewer-three', { p2p: { peerBytes: 900, httpBytes: 100, uploadedBytes: 5 } }), 2000);
    assert.deepEqual(qoe.figures('a', 3000)!.p2p, { viewers: 2, peerBytes: 1000, httpBytes: 1000, offload: 0.5 });
  });

  it('takes the figures of a quick second beacon but not its errors, forgets viewers after the window, and stays bounded', () => {
    const qoe = new ViewerQoe({ windowMs: 10_000, maxViewersPerStream: 3, maxStreams: 2 });
    qoe.report('a', beacon('viewer-one', { errors: ['hls:fragLoadError'] }), 0);
    qoe.report('a', beacon('viewer-one', { playingMs: 9000, rebufferMs: 1000, errors: ['hls:fragLoadError'] }), 500);
    assert.equal(qoe.figures('a', 600)!.rebufferRatio, 0.1);
    assert.deepEqual(qoe.figures('a', 600)!.errors, [{ code: 'hls:fragLoadError', count: 1 }]);
    for (const id of ['viewer-2', 'viewer-3', 'viewer-4']) qoe.report('a', beacon(id), 1000);
    assert.equal(qoe.figures('a', 1000)!.viewers, 3, 'at most 3 viewers kept: the oldest went');
    assert.equal(qoe.figures('a', 11_500), undefined, 'everyone is older than the window');
    qoe.report('b', beacon('viewer-one'), 2000);
    qoe.report('c', beacon('viewer-one'), 3000);
    assert.deepEqual(qoe.reporting(3000).sort(), ['b', 'c'], 'a third stream evicts the least recent one');
  });
});
