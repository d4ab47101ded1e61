import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { AccessUnit } from '../../src/core/access-unit.js';
import { silentLogger } from '../../src/core/logger.js';
import { Subscriber, type StreamSink } from '../../src/core/subscriber.js';
import type { Track } from '../../src/core/track.js';

const VIDEO = { kind: 'video', id: 1 } as Track;

function au(i: number, keyframe = false): AccessUnit {
  return { trackId: 1, dts: i * 3000, pts: i * 3000, keyframe, payload: [Buffer.from([i & 0xff])] };
}

/** A sink that records delivered dts values and spends `busyMs` of CPU on each access unit. */
function recordingSink(busyMs = 0): StreamSink & { got: number[] } {
  const got: number[] = [];
  return {
    got,
    onSessionStart: () => undefined,
    onAccessUnit: (a) => {
      const until = performance.now() + busyMs;
      while (performance.now() < until);
      got.push(a.dts / 3000);
    },
    onPublisherLost: () => undefined,
    onEnd: () => undefined,
  };
}

describe('Subscriber', () => {
  it('delivers a backlog in order, in slices that let timers and I/O run in between', async () => {
    const sink = recordingSink(1);
    const sub = new Subscriber(sink, silentLogger, () => undefined);
    sub.setTracks([VIDEO]);
    for (let i = 0; i < 100; i++) sub.push({ type: 'au', au: au(i, i === 0) });
    // A 1 ms reader of 100 frames needs about 100 ms: one turn later only the first slice can be done.
    await nextTurn();
    assert.ok(sink.got.length > 0 && sink.got.length < 100, `first turn delivered ${sink.got.length}`);
    for (let t = 0; t < 200 && sink.got.length < 100; t++) await nextTurn();
    assert.deepEqual(sink.got, Array.from({ length: 100 }, (_, i) => i));
    assert.equal(sub.getStats().counters['queued'], 0);
  });

  it('on overflow drops the queue, counts it, and resumes at the next video keyframe', async () => {
    const sink = recordingSink();
    const sub = new Subscriber(sink, silentLogger, () => undefined, { maxQueue: 10 });
    sub.setTracks([VIDEO]);
    for (let i = 0; i < 15; i++) sub.push({ type: 'au', au: au(i, i === 0) });
    sub.push({ type: 'au', au: au(15, true) });
    sub.push({ type: 'au', au: au(16) });
    await nextTurn(); // the drain was queued first (setImmediate runs in order)
    assert.deepEqual(sink.got, [15, 16]);
    assert.equal(sub.droppedFrames, 15);
  });

  it('with maxLagMs, a reader that fell that far behind real time skips to the next keyframe', async () => {
    const sink = recordingSink();
    const sub = new Subscriber(sink, silentLogger, () => undefined, { maxLagMs: 20 });
    sub.setTracks([VIDEO]);
    sub.push({ type: 'au', au: au(0, true) });
    sub.push({ type: 'au', au: au(1) });
    // Block the event loop past maxLagMs before the queue can drain (as a saturated server would).
    const until = performance.now() + 40;
    while (performance.now() < until);
    sub.push({ type: 'au', au: au(2) });
    sub.push({ type: 'au', au: au(3, true) });
    await nextTurn(); // the drain was queued first (setImmediate runs in order)
    assert.deepEqual(sink.got, [3]);
    assert.equal(sub.droppedFrames, 3);
    // Without the limit the same backlog is delivered whole.
    const patient = recordingSink();
    const sub2 = new Subscriber(patient, silentLogger, () => undefined);
    sub2.push({ type: 'au', au: au(0, true) });
    const until2 = performance.now() + 40;
    while (performance.now() < until2);
    sub2.push({ type: 'au', au: au(1) });
    await nextTurn(); // the drain was queued first (setImmediate runs in order)
    assert.deepEqual(patient.got, [0, 1]);
  });
});
