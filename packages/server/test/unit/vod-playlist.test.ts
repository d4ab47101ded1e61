/** The VOD playlist of a recording (record/vod-playlist.ts): golden text for a recording with a reconnect. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderVodPlaylist } from '../../src/record/vod-playlist.js';

const seg = (seq: number, initId: number, duration: number, discontinuity = false) => ({ rendition: 'src', seq, initId, duration, bytes: 1000, discontinuity, programDateTime: Date.UTC(2026, 11, 1, 12, 0, seq * 2) });

describe('renderVodPlaylist', () => {
  it('is an EVENT playlist while recording and VOD with ENDLIST after, with a map per init and a discontinuity per reconnect', () => {
    const segments = [seg(0, 1, 2.002), seg(1, 1, 1.9), seg(2, 2, 2.5, true)];
    assert.equal(
      renderVodPlaylist(segments, false),
      [
        '#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-TARGETDURATION:3', '#EXT-X-PLAYLIST-TYPE:EVENT', '#EXT-X-MEDIA-SEQUENCE:0', '#EXT-X-INDEPENDENT-SEGMENTS',
        '#EXT-X-MAP:URI="init1.mp4"', '#EXT-X-PROGRAM-DATE-TIME:2026-12-01T12:00:00.000Z', '#EXTINF:2.00200,', 'seg0.m4s',
        '#EXT-X-PROGRAM-DATE-TIME:2026-12-01T12:00:02.000Z', '#EXTINF:1.90000,', 'seg1.m4s',
        '#EXT-X-DISCONTINUITY', '#EXT-X-MAP:URI="init2.mp4"', '#EXT-X-PROGRAM-DATE-TIME:2026-12-01T12:00:04.000Z', '#EXTINF:2.50000,', 'seg2.m4s',
        '',
      ].join('\n'),
    );
    const done = renderVodPlaylist(segments, true);
    assert.match(done, /#EXT-X-PLAYLIST-TYPE:VOD\n/);
    assert.ok(done.endsWith('#EXT-X-ENDLIST\n'));
  });

  it('has a target duration of at least 1 s when empty', () => {
    assert.match(renderVodPlaylist([], false), /#EXT-X-TARGETDURATION:1\n/);
  });
});
