/**
 * LL-HLS playlist text (RFC 8216bis-17: §4.4.3.7 EXT-X-PART-INF, §4.4.3.8 EXT-X-SERVER-CONTROL, §4.4.4.9
 * EXT-X-PART, §4.4.5.3 EXT-X-PRELOAD-HINT, §4.4.5.2 EXT-X-SKIP, §6.2.5.1 delta updates). Pure: a snapshot in,
 * text out. Durations are seconds; program date-times are epoch milliseconds.
 */

/** A partial segment. */
export interface PlaylistPart {
  uri: string;
  /** Seconds. */
  duration: number;
  /** Starts with a keyframe. */
  independent: boolean;
}

/** A media segment (complete), or the one being built (`complete: false`, parts only). */
export interface PlaylistSegment {
  msn: number;
  uri: string;
  /** Seconds. */
  duration: number;
  /** Epoch ms of the first sample. */
  programDateTime: number;
  /** First segment after a publisher reconnect or a codec change. */
  discontinuity: boolean;
  /** URI of the init segment this segment needs. */
  mapUri: string;
  /** Parts, or undefined when they are too old to list. */
  parts: PlaylistPart[] | undefined;
  complete: boolean;
  /** No media: listed with EXT-X-GAP (RFC 8216bis §4.4.4.7) so numbering stays aligned with the other renditions. */
  gap?: boolean;
}

/** Everything a media playlist says. */
export interface MediaPlaylistSnapshot {
  /** Seconds, an integer ≥ every segment duration rounded (§4.4.3.1). */
  targetDuration: number;
  /** PART-TARGET, seconds. */
  partTarget: number;
  /** PART-HOLD-BACK, seconds (≥ 2 × PART-TARGET, §4.4.3.8). */
  partHoldBack: number;
  mediaSequence: number;
  discontinuitySequence: number;
  /** Segments in order; the last may be incomplete. */
  segments: PlaylistSegment[];
  preloadHintUri: string | undefined;
  ended: boolean;
  /** Renditions to report (§4.4.5.4), as URI + last MSN/part. */
  renditionReports?: { uri: string; lastMsn: number; lastPart: number }[];
}

const fmt = (seconds: number): string => seconds.toFixed(5);

/** CAN-SKIP-UNTIL: six target durations, the minimum §4.4.3.8 allows. */
export function skipBoundary(snapshot: MediaPlaylistSnapshot): number {
  return snapshot.targetDuration * 6;
}

/** How many leading segments a delta update may skip (those wholly beyond the skip boundary from the end). */
export function skippableSegments(snapshot: MediaPlaylistSnapshot): number {
  const boundary = skipBoundary(snapshot);
  const durations = snapshot.segments.map((s) => (s.complete ? s.duration : (s.parts ?? []).reduce((n, p) => n + p.duration, 0)));
  let fromEnd = durations.reduce((a, b) => a + b, 0);
  let skip = 0;
  for (const seg of snapshot.segments) {
    if (!seg.complete || fromEnd - 1e-9 <= boundary) break;
    fromEnd -= durations[skip]!;
    skip++;
  }
  return skip;
}

/**
 * Renders a media playlist. With `skip`, renders the delta update (§6.2.5.1) that replaces old segments with
 * EXT-X-SKIP (version 9). With `segmentsOnly`, a plain live playlist of the complete segments (no parts, hints
 * or blocking reload): what venue mode's players load, so each segment has one URL that peers share and the
 * playlist URL never changes (p2p-media-loader matches playlist updates by URL).
 */
export function renderMediaPlaylist(snapshot: MediaPlaylistSnapshot, options: { skip?: boolean; segmentsOnly?: boolean } = {}): string {
  const plain = options.segmentsOnly === true;
  const skipped = options.skip && !plain ? skippableSegments(snapshot) : 0;
  const lines = ['#EXTM3U', `#EXT-X-VERSION:${skipped > 0 ? 9 : 6}`, `#EXT-X-TARGETDURATION:${snapshot.targetDuration}`];
  if (!plain) {
    lines.push(
      `#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,CAN-SKIP-UNTIL=${skipBoundary(snapshot).toFixed(1)},` +
        `PART-HOLD-BACK=${snapshot.partHoldBack.toFixed(3)}`,
    );
    lines.push(`#EXT-X-PART-INF:PART-TARGET=${fmt(snapshot.partTarget)}`);
  }
  lines.push(`#EXT-X-MEDIA-SEQUENCE:${snapshot.mediaSequence}`);
  lines.push(`#EXT-X-DISCONTINUITY-SEQUENCE:${snapshot.discontinuitySequence}`);
  if (skipped > 0) lines.push(`#EXT-X-SKIP:SKIPPED-SEGMENTS=${skipped}`);
  let mapUri: string | undefined;
  snapshot.segments.slice(skipped).forEach((seg, i) => {
    if (plain && !seg.complete) return;
    if (seg.discontinuity && (i > 0 || skipped > 0)) lines.push('#EXT-X-DISCONTINUITY');
    if (seg.mapUri !== mapUri) {
      lines.push(`#EXT-X-MAP:URI="${seg.mapUri}"`);
      mapUri = seg.mapUri;
    }
    lines.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(seg.programDateTime).toISOString()}`);
    for (const part of plain ? [] : (seg.parts ?? [])) {
      lines.push(`#EXT-X-PART:DURATION=${fmt(part.duration)},URI="${part.uri}"${part.independent ? ',INDEPENDENT=YES' : ''}`);
    }
    if (seg.gap) lines.push('#EXT-X-GAP');
    if (seg.complete) lines.push(`#EXTINF:${fmt(seg.duration)},`, seg.uri);
  });
  if (snapshot.ended) {
    lines.push('#EXT-X-ENDLIST');
  } else if (snapshot.preloadHintUri && !plain) {
    lines.push(`#EXT-X-PRELOAD-HINT:TYPE=PART,URI="${snapshot.preloadHintUri}"`);
  }
  return lines.join('\n') + '\n' + (plain ? '' : renderRenditionReports(snapshot.renditionReports ?? []));
}

/**
 * EXT-X-RENDITION-REPORT lines (§4.4.5.4): where each other rendition of the group is, so a player switching
 * to it can ask for the right part at once. `uri` is relative to the media playlist.
 */
export function renderRenditionReports(reports: readonly { uri: string; lastMsn: number; lastPart: number }[]): string {
  return reports.map((r) => `#EXT-X-RENDITION-REPORT:URI="${r.uri}",LAST-MSN=${r.lastMsn},LAST-PART=${r.lastPart}\n`).join('');
}

/** A variant of the multivariant playlist (§4.4.6.2). */
export interface PlaylistVariant {
  uri: string;
  /** Peak bits/s. */
  bandwidth: number;
  /** Average bits/s, if measured. */
  averageBandwidth: number | undefined;
  /** RFC 6381 codec strings. */
  codecs: string[];
  resolution: { width: number; height: number } | undefined;
  frameRate: number | undefined;
}

/** Renders a multivariant playlist. */
export function renderMultivariantPlaylist(variants: readonly PlaylistVariant[]): string {
  const lines = ['#EXTM3U', '#EXT-X-VERSION:6', '#EXT-X-INDEPENDENT-SEGMENTS'];
  for (const v of variants) {
    const attrs = [`BANDWIDTH=${Math.round(v.bandwidth)}`];
    if (v.averageBandwidth) attrs.push(`AVERAGE-BANDWIDTH=${Math.round(v.averageBandwidth)}`);
    attrs.push(`CODECS="${v.codecs.join(',')}"`);
    if (v.resolution) attrs.push(`RESOLUTION=${v.resolution.width}x${v.resolution.height}`);
    if (v.frameRate) attrs.push(`FRAME-RATE=${v.frameRate.toFixed(3)}`);
    lines.push(`#EXT-X-STREAM-INF:${attrs.join(',')}`, v.uri);
  }
  return lines.join('\n') + '\n';
}

/**
 * `playlist` with `query` (e.g. `token=…`) added to every URI: URI lines and `URI="…"` attributes (RFC 8216bis
 * §4.2: EXT-X-MAP, EXT-X-PART, EXT-X-PRELOAD-HINT, EXT-X-RENDITION-REPORT, EXT-X-MEDIA). Pure; `query` must be
 * URI-safe. An empty query returns the playlist unchanged.
 */
export function withQuery(playlist: string, query: string): string {
  if (!query) return playlist;
  const add = (uri: string): string => `${uri}${uri.includes('?') ? '&' : '?'}${query}`;
  return playlist
    .split('\n')
    .map((line) => {
      if (line.length === 0) return line;
      if (!line.startsWith('#')) return add(line);
      return line.replace(/URI="([^"]*)"/g, (_m, uri: string) => `URI="${add(uri)}"`);
    })
    .join('\n');
}
