import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { MediaPlaylistSnapshot, PlaylistSegment } from '../../src/egress/llhls/llhls-playlist.js';
import { renderMediaPlaylist, renderMultivariantPlaylist } from '../../src/egress/llhls/llhls-playlist.js';

const T0 = Date.parse('2026-11-21T12:00:00.000Z');

function segment(msn: number, options: Partial<PlaylistSegment> = {}): PlaylistSegment {
  return {
    msn,
    uri: `e/seg${msn}.m4s`,
    duration: 2,
    programDateTime: T0 + msn * 2000,
    discontinuity: false,
    mapUri: 'e/init1.mp4',
    parts: undefined,
    complete: true,
    ...options,
  };
}

const parts = (first: number, n: number, duration = 1 / 3): PlaylistSegment['parts'] =>
  Array.from({ length: n }, (_, i) => ({ uri: `e/part${first + i}.m4s`, duration, independent: i === 0 }));

const LIVE: MediaPlaylistSnapshot = {
  targetDuration: 2,
  partTarget: 0.333,
  partHoldBack: 0.999,
  mediaSequence: 5,
  discontinuitySequence: 0,
  segments: [
    segment(5),
    segment(6, { parts: parts(30, 6) }),
    segment(7, { discontinuity: true, mapUri: 'e/init2.mp4', parts: parts(36, 2), complete: false, duration: 0 }),
  ],
  preloadHintUri: 'e/part38.m4s',
  ended: false,
};

const LIVE_GOLDEN = `#EXTM3U
#EXT-X-VERSION:6
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=0.999
#EXT-X-PART-INF:PART-TARGET=0.33300
#EXT-X-MEDIA-SEQUENCE:5
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-MAP:URI="e/init1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:10.000Z
#EXTINF:2.00000,
e/seg5.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:12.000Z
#EXT-X-PART:DURATION=0.33333,URI="e/part30.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33333,URI="e/part31.m4s"
#EXT-X-PART:DURATION=0.33333,URI="e/part32.m4s"
#EXT-X-PART:DURATION=0.33333,URI="e/part33.m4s"
#EXT-X-PART:DURATION=0.33333,URI="e/part34.m4s"
#EXT-X-PART:DURATION=0.33333,URI="e/part35.m4s"
#EXTINF:2.00000,
e/seg6.m4s
#EXT-X-DISCONTINUITY
#EXT-X-MAP:URI="e/init2.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:14.000Z
#EXT-X-PART:DURATION=0.33333,URI="e/part36.m4s",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.33333,URI="e/part37.m4s"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e/part38.m4s"
`;

// Eight 2 s segments and one part: segments wholly beyond CAN-SKIP-UNTIL (12 s) from the end are skipped.
const LONG: MediaPlaylistSnapshot = {
  ...LIVE,
  mediaSequence: 10,
  segments: [
    ...Array.from({ length: 8 }, (_, i) => segment(10 + i, { parts: i >= 5 ? parts(100 + i * 6, 6) : undefined })),
    segment(18, { parts: parts(148, 1), complete: false, duration: 0 }),
  ],
  preloadHintUri: 'e/part149.m4s',
};

const DELTA_GOLDEN = `#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=12.0,PART-HOLD-BACK=0.999
#EXT-X-PART-INF:PART-TARGET=0.33300
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-DISCONTINUITY-SEQUENCE:0
#EXT-X-SKIP:SKIPPED-SEGMENTS=3
#EXT-X-MAP:URI="e/init1.mp4"
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:26.000Z
#EXTINF:2.00000,
e/seg13.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:28.000Z
#EXTINF:2.00000,
e/seg14.m4s
`;

describe('LL-HLS playlists', () => {
  it('renders a live media playlist with parts, a discontinuity and a preload hint (golden)', () => {
    assert.equal(renderMediaPlaylist(LIVE), LIVE_GOLDEN);
  });

  it('renders a delta update that skips segments beyond CAN-SKIP-UNTIL (golden)', () => {
    const text = renderMediaPlaylist(LONG, { skip: true });
    assert.ok(text.startsWith(DELTA_GOLDEN), text);
    assert.ok(text.endsWith('#EXT-X-PART:DURATION=0.33333,URI="e/part148.m4s",INDEPENDENT=YES\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e/part149.m4s"\n'));
    assert.doesNotMatch(text, /seg1[0-2]\.m4s/);
  });

  it('renders the full playlist when a delta is asked of a short one', () => {
    assert.equal(renderMediaPlaylist(LIVE, { skip: true }), LIVE_GOLDEN);
  });

  it('ends with EXT-X-ENDLIST and no preload hint once the stream ended', () => {
    const text = renderMediaPlaylist({ ...LIVE, segments: LIVE.segments.slice(0, 2), ended: true });
    assert.ok(text.endsWith('e/seg6.m4s\n#EXT-X-ENDLIST\n'));
    assert.doesNotMatch(text, /PRELOAD-HINT/);
  });

  it('renders venue mode\'s plain playlist: complete segments only, no parts, hints, blocking or skips (golden)', () => {
    const reports = { ...LIVE, renditionReports: [{ uri: '../360p/media.m3u8', lastMsn: 7, lastPart: 1 }] };
    assert.equal(
      renderMediaPlaylist(reports, { segmentsOnly: true, skip: true }),
      [
        '#EXTM3U',
        '#EXT-X-VERSION:6',
        '#EXT-X-TARGETDURATION:2',
        '#EXT-X-MEDIA-SEQUENCE:5',
        '#EXT-X-DISCONTINUITY-SEQUENCE:0',
        '#EXT-X-MAP:URI="e/init1.mp4"',
        '#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:10.000Z',
        '#EXTINF:2.00000,',
        'e/seg5.m4s',
        '#EXT-X-PROGRAM-DATE-TIME:2026-11-21T12:00:12.000Z',
        '#EXTINF:2.00000,',
        'e/seg6.m4s',
        '',
      ].join('\n'),
    );
  });

  it('renders a multivariant playlist with CODECS, RESOLUTION and BANDWIDTH (golden)', () => {
    const text = renderMultivariantPlaylist([
      { uri: 'src/media.m3u8', bandwidth: 2_812_345.4, averageBandwidth: 2_500_000, codecs: ['avc1.64001f', 'mp4a.40.2'], resolution: { width: 1280, height: 720 }, frameRate: 30 },
    ]);
    assert.equal(
      text,
      `#EXTM3U
#EXT-X-VERSION:6
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-STREAM-INF:BANDWIDTH=2812345,AVERAGE-BANDWIDTH=2500000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,FRAME-RATE=30.000
src/media.m3u8
`,
    );
  });
});
