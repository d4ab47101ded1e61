/** The HLS playlist of a recording (issue 13). */
import type { RecordingSegment } from '../store/recording-store.js';

/**
 * An HLS media playlist of recorded segments (RFC 8216bis §4.4): EXT-X-MAP wherever the init segment changes,
 * EXT-X-DISCONTINUITY where the publisher reconnected, the program date-time of each segment, and EXT-X-ENDLIST
 * when `ended`. Pure.
 */
export function renderVodPlaylist(segments: readonly RecordingSegment[], ended: boolean): string {
  const target = Math.max(1, Math.ceil(Math.max(0, ...segments.map((s) => s.duration))));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', `#EXT-X-TARGETDURATION:${target}`, `#EXT-X-PLAYLIST-TYPE:${ended ? 'VOD' : 'EVENT'}`, '#EXT-X-MEDIA-SEQUENCE:0', '#EXT-X-INDEPENDENT-SEGMENTS'];
  let init: number | undefined;
  for (const s of segments) {
    if (s.discontinuity) lines.push('#EXT-X-DISCONTINUITY');
    if (s.initId !== init) {
      lines.push(`#EXT-X-MAP:URI="init${s.initId}.mp4"`);
      init = s.initId;
    }
    lines.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(s.programDateTime).toISOString()}`, `#EXTINF:${s.duration.toFixed(5)},`, `seg${s.seq}.m4s`);
  }
  if (ended) lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}
