import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import type { Track } from '../../src/core/track.js';
import { LlHlsMuxer } from '../../src/egress/llhls/llhls-muxer.js';
import { renderMediaPlaylist } from '../../src/egress/llhls/llhls-playlist.js';
import { buildAvcConfig, splitAnnexB } from '../../src/media/codecs/h264.js';
import { AUDIO_CODECS, VIDEO_CODECS } from '../../src/media/codecs/codec-table.js';
import { trackSpans } from '../support/fmp4.js';

const [SPS, PPS] = splitAnnexB(Buffer.from('000000016764001eacd940a02ff970110000030001000003003c0f162d960000000168ebe3cb22c0', 'hex'));
const RECORD = buildAvcConfig([SPS!], [PPS!]);
const VIDEO: Track = { kind: 'video', id: 1, codec: 'h264', timescale: 90_000, config: RECORD, info: VIDEO_CODECS.h264.parseConfig(RECORD) };

/** 30 fps video with a keyframe every `gop` frames; frame i has dts i × 3000 ticks. */
function frame(i: number, gop = 30) {
  return { trackId: 1, dts: i * 3000, pts: i * 3000, keyframe: i % gop === 0, payload: [Buffer.from([i % gop === 0 ? 0x65 : 0x41, i & 0xff])] };
}

function newMuxer(): LlHlsMuxer {
  const m = new LlHlsMuxer('t', { partTargetMs: 333, segmentTargetMs: 2000, windowSegments: 5 }, silentLogger);
  m.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
  return m;
}

describe('LL-HLS muxer', () => {
  it('holds a blocking request for the next part and releases it as soon as that part exists', async () => {
    const m = newMuxer();
    let i = 0;
    while (m.lastPart() === undefined) m.onAccessUnit(frame(i++));
    const last = m.lastPart()!;
    let released = false;
    const wait = m.waitFor(() => m.has(last.msn, last.index + 1), 5000).then((ok) => {
      released = ok;
      return ok;
    });
    await new Promise((r) => setImmediate(r));
    assert.equal(released, false, 'held while the part does not exist');
    const partsBefore = m.snapshot().segments.flatMap((s) => s.parts ?? []).length;
    while (m.snapshot().segments.flatMap((s) => s.parts ?? []).length === partsBefore) m.onAccessUnit(frame(i++));
    assert.equal(await wait, true);
    const text = renderMediaPlaylist(m.snapshot());
    assert.match(text, new RegExp(`part${last.index + 1}\\.m4s`), 'the playlist it answers with holds the part');
    m.close();
  });

  it('treats a part index past the end of a completed segment as the next segment’s first part', () => {
    const m = newMuxer();
    let i = 0;
    while (m.snapshot().segments.filter((s) => s.complete).length < 1) m.onAccessUnit(frame(i++));
    const seg0 = m.snapshot().segments[0]!;
    const n = seg0.parts!.length;
    // Just cut: segment 1 has begun with the keyframe but has no part yet, so (0, n) — which means (1, 0) — is not there.
    assert.equal(m.snapshot().segments[1]?.parts?.length ?? 0, 0);
    assert.equal(m.has(0, n - 1), true);
    assert.equal(m.has(0, undefined), true);
    assert.equal(m.has(0, n), false, '(0, n) waits for segment 1’s first part');
    assert.equal(m.has(1, 0), false);
    while ((m.snapshot().segments[1]!.parts ?? []).length === 0) m.onAccessUnit(frame(i++));
    assert.equal(m.has(0, n), true, '(0, n) rolls over to (1, 0), which now exists');
    assert.equal(m.has(1, 0), true);
    assert.equal(m.has(1, 1), false);
    assert.equal(m.has(5, 0), false);
    m.close();
  });

  it('times out a blocking request that cannot be met, and releases waiters on close', async () => {
    const m = newMuxer();
    assert.equal(await m.waitFor(() => m.has(3, 0), 50), false);
    const pending = m.waitFor(() => m.has(3, 0), 10_000);
    m.close();
    assert.equal(await pending, false);
  });

  it('marks a publisher return with a discontinuity and keeps the timeline increasing', () => {
    const m = newMuxer();
    for (let i = 0; i < 75; i++) m.onAccessUnit(frame(i));
    m.onPublisherLost();
    m.onSessionStart({ tracks: [VIDEO], session: 2, discontinuity: true });
    // The new session's timestamps restart at 0, as an encoder restart does.
    for (let i = 0; i < 75; i++) m.onAccessUnit(frame(i));
    m.onEnd('test');
    const snap = m.snapshot();
    const text = renderMediaPlaylist(snap);
    assert.equal(text.match(/#EXT-X-DISCONTINUITY\n/g)?.length, 1);
    const after = snap.segments.findIndex((s) => s.discontinuity);
    assert.ok(after > 0);
    assert.ok(snap.segments[after]!.programDateTime >= snap.segments[after - 1]!.programDateTime);
    assert.match(text, /#EXT-X-ENDLIST\n$/);
  });

  it('slides the window and counts media sequence numbers', () => {
    const m = newMuxer();
    for (let i = 0; i < 30 * 2 * 9; i++) m.onAccessUnit(frame(i));
    const snap = m.snapshot();
    assert.equal(snap.segments.filter((s) => s.complete).length, 5);
    assert.equal(snap.mediaSequence, snap.segments[0]!.msn);
    assert.ok(snap.mediaSequence >= 3);
    assert.equal(m.segment(0), undefined, 'old segments are freed');
    assert.ok(m.segment(snap.mediaSequence)!.length > 0);
    m.close();
  });

  it('announces a peak BANDWIDTH from whole segments, not from one cut short by a restart', () => {
    const m = newMuxer();
    const big = (i: number) => ({ ...frame(i), payload: [Buffer.concat([Buffer.from([i % 30 === 0 ? 0x65 : 0x41]), Buffer.alloc(i % 30 === 0 ? 20_000 : 2_000)])] });
    for (let i = 0; i < 30 * 6; i++) m.onAccessUnit(big(i));
    const steady = m.bandwidth()!.peak;
    // The publisher (or a transcoder) restarts right after a keyframe: a 2-frame segment with a 20 kB keyframe.
    m.onAccessUnit(big(180));
    m.onAccessUnit(big(181));
    m.onPublisherLost();
    const short = m.snapshot().segments.filter((x) => x.complete).at(-1)!;
    assert.ok(short.duration < 0.1, `a short segment was cut (${short.duration} s)`);
    assert.ok(m.bandwidth()!.peak < steady * 1.2, `peak ${Math.round(m.bandwidth()!.peak)} b/s stays near ${Math.round(steady)} b/s`);
    m.close();
  });

  it('cuts a rendition’s segments where its leader cut them; the rendition’s extra keyframes start independent parts', () => {
    const log = silentLogger;
    const options = { partTargetMs: 333, segmentTargetMs: 2000, windowSegments: 5 };
    const leader = new LlHlsMuxer('src', options, log);
    const rendition = new LlHlsMuxer('src/480p', options, log, leader);
    leader.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
    rendition.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
    // The source: a keyframe every 3 s. The rendition: those keyframes and one every second between, a little later.
    for (let i = 0; i < 30 * 10; i++) {
      leader.onAccessUnit(frame(i, 90));
      if (i >= 5) rendition.onAccessUnit(frame(i - 5, 30));
    }
    const durations = (m: LlHlsMuxer): number[] => m.snapshot().segments.filter((s) => s.complete).map((s) => Math.round(s.duration * 1000));
    assert.deepEqual(durations(leader), [3000, 3000, 3000]);
    assert.deepEqual(durations(rendition), [3000, 3000, 3000], 'not at 2 s, where the rendition’s own keyframe would have cut');
    const parts = rendition.snapshot().segments[1]!.parts!;
    // 3 s of 30 fps in parts of at most 333 ms, a new part at each keyframe (0, 1 and 2 s): 3 × (300+300+300+100 ms).
    assert.deepEqual(parts.map((p) => p.independent), [true, false, false, false, true, false, false, false, true, false, false, false]);
    leader.close();
    rendition.close();
  });

  it('keeps a rendition’s segment numbers the leader’s across a transcoder restart, listing the missed ones as gaps', () => {
    const options = { partTargetMs: 333, segmentTargetMs: 2000, windowSegments: 10 };
    const leader = new LlHlsMuxer('src', options, silentLogger);
    const rendition = new LlHlsMuxer('src/480p', options, silentLogger, leader);
    leader.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
    rendition.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
    // Keyframes every second; the rendition's transcoder starts 3.5 s late (at the 4 s keyframe), and is down
    // again from 7 s to 11 s: its segments must still carry the leader's numbers for the same stretch of time.
    for (let i = 0; i < 30 * 16; i++) {
      leader.onAccessUnit(frame(i, 30));
      const t = i / 30;
      if (t >= 4 && t < 7) rendition.onAccessUnit(frame(i, 30));
      if (i === 30 * 7) rendition.onPublisherLost();
      if (i === 30 * 11) rendition.onSessionStart({ tracks: [VIDEO], session: 2, discontinuity: true });
      if (t >= 11) rendition.onAccessUnit(frame(i, 30));
    }
    const theirs = new Map(leader.snapshot().segments.filter((x) => x.complete).map((x) => [x.msn, x.programDateTime]));
    const ours = rendition.snapshot().segments.filter((x) => x.complete);
    assert.deepEqual(ours.map((x) => x.msn), [...theirs.keys()].filter((msn) => msn <= ours.at(-1)!.msn), 'the same numbers, none missing');
    ours.forEach((seg, i) => {
      const leaderStart = theirs.get(seg.msn)!;
      // The first segment after a (re)start begins at the rendition's first keyframe, inside the leader's segment.
      if (!seg.gap && ours[i - 1]?.gap) assert.ok(seg.programDateTime >= leaderStart && seg.programDateTime < leaderStart + 2000, `segment ${seg.msn} starts inside the leader's`);
      else assert.equal(seg.programDateTime, leaderStart, `segment ${seg.msn} is the same time in both`);
    });
    const text = renderMediaPlaylist(rendition.snapshot());
    const gaps = ours.filter((x) => x.gap).map((x) => x.msn);
    assert.deepEqual(gaps, [0, 1, 4], 'before it started (0–4 s) and while it was down (8–10 s)');
    assert.equal(text.match(/#EXT-X-GAP\n#EXTINF/g)?.length, gaps.length);
    assert.equal(rendition.segment(4), undefined, 'a gap has no bytes');
    leader.close();
    rendition.close();
  });

  it('bounds a rendition’s segments when its leader’s cuts are not among its keyframes', () => {
    const options = { partTargetMs: 333, segmentTargetMs: 2000, windowSegments: 10 };
    const leader = new LlHlsMuxer('src', options, silentLogger);
    const rendition = new LlHlsMuxer('src/480p', options, silentLogger, leader);
    leader.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
    rendition.onSessionStart({ tracks: [VIDEO], session: 1, discontinuity: false });
    // The leader's keyframes every 3 s at 1.5 s, 4.5 s, …; the rendition's every second on the second.
    for (let i = 0; i < 30 * 20; i++) {
      leader.onAccessUnit({ ...frame(i, 90), keyframe: i % 90 === 45 });
      rendition.onAccessUnit(frame(i, 30));
    }
    const durations = rendition.snapshot().segments.filter((s) => s.complete).map((s) => Math.round(s.duration * 1000));
    assert.ok(durations.length >= 3, `segments: ${durations.join(' ')}`);
    for (const d of durations) assert.ok(d <= 5000, `a segment of ${d} ms: at most 1.5 × the leader's 3 s, on a keyframe`);
    leader.close();
    rendition.close();
  });
});

describe('LL-HLS muxer segment boundaries with audio', () => {
  it('ends each segment’s audio at or past the cut and starts the next one’s from it, though the audio comes late', () => {
    const aacConfig = Buffer.from([0x11, 0x90]); // AAC-LC, 48 kHz, stereo
    const AUDIO: Track = { kind: 'audio', id: 2, codec: 'aac', timescale: 48_000, config: aacConfig, info: AUDIO_CODECS.aac.parseConfig(aacConfig) };
    const m = new LlHlsMuxer('t', { partTargetMs: 333, segmentTargetMs: 2000, windowSegments: 5 }, silentLogger);
    m.onSessionStart({ tracks: [VIDEO, AUDIO], session: 1, discontinuity: false });
    // Video with B-frame reordering (decode times 2 frames before presentation), sent in decode order as RTMP
    // does: the audio that plays just before a keyframe arrives after it.
    let audioIndex = 0;
    for (let i = 0; i < 30 * 7; i++) {
      const dts = i * 3000;
      m.onAccessUnit({ trackId: 1, dts, pts: dts + 6000, keyframe: i % 60 === 0, payload: [Buffer.from([i % 60 === 0 ? 0x65 : 0x41, i & 0xff])] });
      while (audioIndex * 1024 * 90_000 < dts * 48_000) {
        m.onAccessUnit({ trackId: 2, dts: audioIndex * 1024, pts: audioIndex * 1024, keyframe: true, payload: [Buffer.from([0x21, audioIndex & 0xff])] });
        audioIndex++;
      }
    }
    const segments = m.snapshot().segments.filter((x) => x.complete);
    assert.ok(segments.length >= 2);
    for (let n = 0; n + 1 < segments.length; n++) {
      const now = trackSpans(m.segment(segments[n]!.msn)!);
      const next = trackSpans(m.segment(segments[n + 1]!.msn)!);
      // The next segment's first picture is presented at its video decode time + 2 frames.
      const cutSeconds = (next.get(1)![0] + 6000) / 90_000;
      assert.ok(now.get(2)![1] / 48_000 >= cutSeconds, `segment ${n}: audio ends at ${now.get(2)![1] / 48_000} s, before the cut at ${cutSeconds} s`);
      assert.ok(next.get(2)![0] / 48_000 >= cutSeconds, `segment ${n + 1}: audio starts at ${next.get(2)![0] / 48_000} s, before its first picture at ${cutSeconds} s`);
      assert.ok(next.get(2)![0] / 48_000 - cutSeconds < 1024 / 48_000, 'and with the first audio frame from the cut on');
    }
    m.close();
  });
});

describe('LL-HLS muxer waiters', () => {
  it('stops waiting at once when the viewer hangs up', async () => {
    const m = newMuxer();
    const controller = new AbortController();
    const pending = m.waitFor(() => m.has(9, 0), 10_000, controller.signal);
    controller.abort();
    assert.equal(await pending, false);
    assert.equal(m.getStats().waiters, 0);
    m.close();
  });
});

describe('LL-HLS muxer: the part being built, chunk by chunk', () => {
  it('hands each picture to the part’s followers as a CMAF chunk before the part completes; the chunks make the part', () => {
    const m = newMuxer();
    let i = 0;
    while (m.lastPart() === undefined) m.onAccessUnit(frame(i++));
    const number = m.nextPart;
    assert.equal(m.follow(number + 1, () => undefined), undefined, 'only the part being built can be followed');
    const got: Buffer[] = [];
    let ended = false;
    const following = m.follow(number, (chunk) => {
      if (chunk) got.push(chunk);
      else ended = true;
    })!;
    assert.ok(following);
    const already = [...following.chunks];
    const picturesBefore = already.length;
    while (m.part(number) === undefined) {
      m.onAccessUnit(frame(i++));
      if (m.part(number) === undefined) assert.equal(ended, false, 'not ended while the part is being built');
    }
    assert.equal(ended, true, 'told when the part is complete');
    assert.ok(got.length >= 2, `chunks came one by one (${got.length})`);
    const whole = m.part(number)!;
    assert.deepEqual(Buffer.concat([...already, ...got]), whole, 'the chunks, in order, are the part');
    // Every chunk is a moof+mdat of its own, and decode times follow on from one chunk to the next.
    let end: number | undefined;
    for (const chunk of [...already, ...got]) {
      assert.equal(chunk.toString('latin1', 4, 8), 'moof');
      const [start, stop] = trackSpans(chunk).get(1)!;
      if (end !== undefined) assert.equal(start, end);
      end = stop;
    }
    assert.ok(picturesBefore + got.length <= 10, 'one chunk per picture (a 333 ms part holds 10)');
    m.close();
  });

  it('ends its followers when the stream ends or the muxer closes, even before the part has a picture', () => {
    const m = newMuxer();
    let i = 0;
    while (m.lastPart() === undefined) m.onAccessUnit(frame(i++));
    const ends: string[] = [];
    m.follow(m.nextPart, (chunk) => chunk || ends.push('first'));
    m.onEnd('publisher left');
    assert.deepEqual(ends, ['first'], 'the flush completes the part: told once');
    assert.equal(m.follow(m.nextPart, () => undefined), undefined, 'an ended stream has no part being built');

    const n = newMuxer();
    i = 0;
    while (n.lastPart() === undefined) n.onAccessUnit(frame(i++));
    n.onPublisherLost(); // the part in progress is closed; the next one has no picture yet
    let told = 0;
    assert.ok(n.follow(n.nextPart, (chunk) => chunk || told++));
    n.close();
    assert.equal(told, 1);
  });
});
