/**
 * Venue mode: LL-HLS segments (not parts) through p2p-media-loader, so viewers on one network share each segment
 * over WebRTC data channels instead of each fetching it from the server. Viewers find each other through the
 * server's own tracker (`/p2p/announce/<stream>`, WebSocket) and learn their addresses from its STUN server — no
 * public tracker or STUN server is ever contacted. Every segment a peer sends is checked against the SHA-256 the
 * server publishes beside the playlist (`segment-hashes.json`) before it is played; a bad one is fetched over
 * HTTP instead and the peer dropped (p2p-media-loader does both when the check fails). Loaded only by pages that
 * play in venue mode.
 */
import { sha256 } from '@noble/hashes/sha2';
import type Hls from 'hls.js';
import type { HlsConfig } from 'hls.js';
import { HlsJsP2PEngine } from 'p2p-media-loader-hlsjs';

/** Where venue-mode viewers of a stream find each other (the server's stream status, `p2p`). */
export interface VenueInfo {
  /** Tracker path on the server. */
  tracker: string;
  /** UDP port of the server's STUN server, or null. */
  stunPort: number | null;
}

/** Bytes of segments by where they came from, since the page started playing. */
export interface VenueCounters {
  /** From other viewers. */
  peerBytes: number;
  /** From the server (or the cache in front of it). */
  httpBytes: number;
  /** Sent to other viewers. */
  uploadedBytes: number;
  /** Peers connected now. */
  peers: number;
  /** Segments from peers that failed the hash check (fetched again over HTTP, the peer dropped). */
  rejected: number;
  /** Segments are shared now (false: P2P not allowed for the stream, or switched off while playing). */
  sharing: boolean;
}

/**
 * How far behind the live edge venue mode plays, s: a segment completes up to one segment duration (2 s by
 * default) after its first picture, and peers need the time between the first viewer fetching it over HTTP and
 * the others' playheads reaching it to hand it over.
 */
export const VENUE_LIVE_SYNC_S = 5;
/** Segments starting closer than this to the playhead are needed now: fetched over HTTP unless a peer is sending them, s. */
const HIGH_DEMAND_WINDOW_S = 1;
/**
 * Segments starting within this of the playhead may be fetched over HTTP by a few viewers picked at random
 * (about one per segment), who then share them, s. A new segment appears ~`VENUE_LIVE_SYNC_S` less its duration
 * ahead of the playhead: inside this window.
 */
const HTTP_WINDOW_S = 5;
/** Segments up to this far ahead of the playhead are asked of peers, s. */
const P2P_WINDOW_S = 8;

/** Whether this device should not upload: the browser says it is on mobile data or saving data, or a phone not charging. */
export async function uploadDiscouraged(): Promise<boolean> {
  const nav = navigator as Navigator & {
    connection?: { type?: string; saveData?: boolean };
    userAgentData?: { mobile?: boolean };
    getBattery?: () => Promise<{ charging: boolean }>;
  };
  if (nav.connection?.saveData || nav.connection?.type === 'cellular') return true;
  const phone = nav.userAgentData?.mobile ?? /Mobi|Android|iPhone/.test(navigator.userAgent);
  if (!phone || !nav.getBattery) return false;
  try {
    return !(await nav.getBattery()).charging;
  } catch {
    return false;
  }
}

/**
 * Checks segments received from peers against the server's list (`<media playlist dir>/segment-hashes.json`,
 * `{ segments: { "<epoch>/seg<msn>.m4s": "<SHA-256 base64>" } }`): fetched when a segment is not in the copy held.
 * SHA-256 in JavaScript (@noble/hashes): WebCrypto's digest exists only in secure contexts, and a venue's LAN page
 * is often plain HTTP.
 */
export class SegmentChecker {
  private readonly lists = new Map<string, Record<string, string>>();
  rejected = 0;

  /** True when `data` is the segment at `url` as the server made it; false when it differs or no hash is known. */
  async check(url: string, data: ArrayBuffer): Promise<boolean> {
    const u = new URL(url, location.href);
    const path = u.pathname.split('/');
    const key = path.slice(-2).join('/');
    const listUrl = `${path.slice(0, -2).join('/')}/segment-hashes.json${u.search}`;
    let hash = this.lists.get(listUrl)?.[key];
    if (hash === undefined) {
      const res = await fetch(new URL(listUrl, u), { cache: 'no-store' }).catch(() => undefined);
      if (res?.ok) {
        const list = ((await res.json()) as { segments?: Record<string, string> }).segments ?? {};
        this.lists.set(listUrl, list);
        hash = list[key];
      }
    }
    const ok = hash !== undefined && toBase64(sha256(new Uint8Array(data))) === hash;
    if (!ok) this.rejected++;
    return ok;
  }
}

function toBase64(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s);
}

/**
 * Makes the hls.js instance of venue mode: segments only (no low-latency parts), `VENUE_LIVE_SYNC_S` behind the
 * live edge, through p2p-media-loader with this server's tracker and STUN server. With `info` null (the stream
 * does not allow P2P), segments come over HTTP only. `counters` is kept up to date.
 */
export async function createVenueHls(HlsJs: typeof Hls, options: { server: string; stream: string; info: VenueInfo | null; counters: VenueCounters }): Promise<Hls> {
  const { server, stream, info, counters } = options;
  counters.sharing = info !== null;
  const checker = new SegmentChecker();
  const base = new URL(server, location.href);
  const tracker = info ? `${base.protocol === 'https:' ? 'wss:' : 'ws:'}//${base.host}${info.tracker}` : undefined;
  const HlsWithP2P = HlsJsP2PEngine.injectMixin(HlsJs);
  const config: Partial<HlsConfig> & ConstructorParameters<typeof HlsWithP2P>[0] = {
    lowLatencyMode: false,
    liveSyncDuration: VENUE_LIVE_SYNC_S,
    // (hls.js changes speed only in low-latency mode: chaseVenueEdge wins time back after a slow start or a stall.)
    // hls.js moves its target a whole second back after each stall by default (three stalls: 8 s behind).
    liveSyncOnStallIncrease: 0.2,
    liveMaxLatencyDuration: VENUE_LIVE_SYNC_S + 6,
    maxBufferLength: P2P_WINDOW_S + 2,
    backBufferLength: 10,
    liveDurationInfinity: true,
    enableWorker: false,
    p2p: {
      core: {
        // One swarm per stream and variant, named by this server (not by the playlist's URL, which carries tokens).
        swarmId: `glasscast:${base.host}:${stream}`,
        announceTrackers: tracker ? [tracker] : [],
        rtcConfig: { iceServers: info?.stunPort ? [{ urls: `stun:${base.hostname}:${info.stunPort}` }] : [] },
        isP2PDisabled: !tracker,
        isP2PUploadDisabled: await uploadDiscouraged(),
        highDemandTimeWindow: HIGH_DEMAND_WINDOW_S,
        httpDownloadTimeWindow: HTTP_WINDOW_S,
        p2pDownloadTimeWindow: P2P_WINDOW_S,
        validateP2PSegment: async (url, _byteRange, data) => {
          const ok = await checker.check(url, data);
          counters.rejected = checker.rejected;
          return ok;
        },
      },
      onHlsJsCreated: (hls) => {
        const engine = hls.p2pEngine;
        engine.addEventListener('onChunkDownloaded', (bytes, source) => {
          if (source === 'p2p') counters.peerBytes += bytes;
          else counters.httpBytes += bytes;
        });
        engine.addEventListener('onChunkUploaded', (bytes) => {
          counters.uploadedBytes += bytes;
        });
        engine.addEventListener('onPeerConnect', () => {
          counters.peers++;
        });
        engine.addEventListener('onPeerClose', () => {
          counters.peers = Math.max(0, counters.peers - 1);
        });
      },
    },
  };
  const hls = new HlsWithP2P(config) as unknown as Hls;
  // Without sharing (the stream does not allow it, or the kill switch), hls.js's own loader fetches the segments,
  // and p2p-media-loader's counters do not see them: count them here.
  hls.on(HlsJs.Events.FRAG_LOADED, (_event, data) => {
    if (!counters.sharing) counters.httpBytes += data.frag.stats.loaded;
  });
  return hls;
}

/**
 * Keeps venue-mode playback near {@link VENUE_LIVE_SYNC_S} behind the live edge: up to 5 % fast while more than
 * 0.3 s further behind with 3 s or more buffered, at 1× again within 50 ms or with less buffered. hls.js changes
 * speed only in low-latency mode, and venue mode's start (the first segments, asked of peers) would otherwise stay
 * in the latency for good. Never jumps: the segments ahead are the ones peers are handing over.
 */
export function chaseVenueEdge(video: HTMLVideoElement, hls: Hls): void {
  if (video.paused || !video.buffered.length || !Number.isFinite(hls.latency) || hls.latency === 0) return;
  const behind = hls.latency - VENUE_LIVE_SYNC_S;
  const ahead = video.buffered.end(video.buffered.length - 1) - video.currentTime;
  let rate = video.playbackRate;
  if (behind < 0.05 || ahead < 2) rate = 1;
  else if (behind > 0.3 && ahead > 3) rate = 1.05;
  if (video.playbackRate !== rate) video.playbackRate = rate;
}

/** Stops sharing: segments come over HTTP only from now on, and the peer connections close (the kill switch). */
export function stopSharing(hls: Hls, counters: VenueCounters): void {
  if (!counters.sharing) return;
  counters.sharing = false;
  counters.peers = 0;
  (hls as unknown as { p2pEngine?: HlsJsP2PEngine }).p2pEngine?.applyDynamicConfig({ core: { isP2PDisabled: true } });
}
