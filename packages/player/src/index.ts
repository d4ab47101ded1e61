/**
 * The Glasscast browser player: plays a stream over WebRTC (WHEP) first and falls back to LL-HLS (hls.js in
 * low-latency mode) by itself when WebRTC cannot connect or no frame arrives in time. Shows an offline state
 * until the stream is live, picks it up when it goes live, and reports the protocol and measured latency.
 */
import type Hls from 'hls.js';
import type { VenueCounters, VenueInfo } from './venue.js';
import { connectWhep, type WhepConnection, type WhepLayerState } from './whep-client.js';
import { QoeReporter } from './qoe-reporter.js';

export { connectWhep, iceServersFromLink, WhepError, type WhepConnection, type WhepLayer, type WhepLayerState } from './whep-client.js';
export { publishWhip, WhipError, type WhipPublish, type WhipPublishOptions } from './whip-publisher.js';
export { QoeReporter, type QoeSnapshot } from './qoe-reporter.js';

/** What the server pushes about a stream (`event: stream` of `/api/v1/streams/<name>/events`). */
export interface StreamSummary {
  name: string;
  state: 'live' | 'reconnecting' | 'offline';
  playable: boolean;
  webrtc: boolean;
  /** Viewers now, every protocol. */
  viewers: number;
  title: string;
  /** ISO 8601, while live. */
  startedAt: string | null;
  /** `/thumbnails/<name>.jpg?v=…`, once one was made. */
  thumbnail: string | null;
  /** Venue-mode viewers may share segments now (absent from older servers). */
  p2p?: boolean;
}

/**
 * hls.js, loaded the first time a page plays LL-HLS: a WebRTC viewer (the usual case) never downloads or
 * evaluates it, and the page starts ~100 ms sooner on a phone-class CPU. One load per page.
 */
let hlsModule: Promise<{ default: typeof Hls }> | undefined;
/** Starts loading hls.js (idempotent); resolves its default export. */
export function loadHls(): Promise<typeof Hls> {
  hlsModule ??= import('hls.js');
  return hlsModule.then((m) => m.default);
}

/** How often the LL-HLS live-edge chase looks at the latency, ms. */
const CHASE_INTERVAL_MS = 250;
/** How far behind hls.js's target latency (s) LL-HLS playback may fall before it plays faster to catch up. */
const CHASE_START_S = 0.1;

/**
 * Parts the watch page plays behind hls.js's target latency (PART-HOLD-BACK): the buffer a level switch on a
 * constrained link needs (it fetches the new level from its keyframe while the buffer plays out). In the LL-HLS
 * ABR test (the link cut to 1.04× the source's rate, then a step down) one part behind stalled 0.3–0.65 s every
 * time, two parts in about half the runs, three never: 0.56–0.59 s glass-to-glass became ~1.2 s.
 */
const LIVE_MARGIN_PARTS = 3;
/** LL-HLS playback rate while a level switch fetches the new level (stretches the buffer ~10 %; catches up after). */
const SWITCH_RATE = 0.9;
/** How far behind hls.js's target latency (s) LL-HLS playback jumps forward rather than plays faster. */
const CHASE_JUMP_S = 1;

/** How long an LL-HLS join waits for its buffer to reach the playlist's last part before it starts anyway, ms. */
const JOIN_WAIT_MS = 1500;
/**
 * The least an LL-HLS join waits after its first buffered part, ms: hls.js's loop of blocking playlist reloads
 * and part fetches settles to the live edge's pace meanwhile (starting the moment the buffer caught up stalled
 * some joins ~1 s later, with 0.4 s buffered).
 */
const JOIN_SETTLE_MS = 500;

/** Player states, in the order a viewer usually sees them. */
export type PlayerState = 'offline' | 'connecting' | 'playing' | 'reconnecting' | 'ended';

/** Options of the player. */
export interface PlayerOptions {
  /** Stream name (the `<name>` of `/watch/<name>`). */
  stream: string;
  /** Base URL of the Glasscast server; default the page's origin. */
  server?: string;
  /**
   * How often to check whether an offline stream went live, ms. Default 2000; 10 000 while the server's event
   * stream is open (it says at once when the stream becomes playable).
   */
  pollIntervalMs?: number;
  /** Listen to the server's event stream (`/api/v1/streams/<name>/events`) to start the moment the stream is playable. Default true. */
  events?: boolean;
  /** Called with every summary the server pushes (viewer count, title, state). */
  onSummary?: (summary: StreamSummary) => void;
  /** Send quality-of-experience beacons (join time, stalls, switches, latency) every 10 s while playing. Default true. */
  qoe?: boolean;
  /** Called on every state change. */
  onStateChange?: (state: PlayerState, detail: string) => void;
  /** `auto` tries WebRTC then LL-HLS; the others force one. Default `auto`. */
  protocol?: 'auto' | 'webrtc' | 'll-hls';
  /** How long WebRTC may take to show a first frame before falling back, ms. Default 4000. */
  webrtcTimeoutMs?: number;
  /**
   * Run hls.js with the library's own defaults instead of this player's tuning (which chases the live edge at up
   * to 1.05× speed): what any hls.js page gets. For benchmarks. Default false.
   */
  hlsDefaults?: boolean;
  /**
   * Venue mode (for many viewers on one network, e.g. an event's Wi-Fi): LL-HLS segments through p2p-media-loader,
   * viewers sharing each segment with each other over WebRTC data channels, found through this server's tracker
   * and STUN server; ~5 s behind the live edge (peers need the time to hand segments over). Segments a peer sends are
   * checked against the server's SHA-256 before they play. WebRTC playback is not tried. Over HTTP only when the
   * stream does not allow P2P or no peer has a segment in time. Uploads nothing on a phone on battery or mobile data
   * where the browser tells. Default false.
   */
  venue?: boolean;
  /**
   * Playback token of a private stream (minted with `POST /api/v1/streams/<name>/playback-tokens`): sent as
   * `Authorization: Bearer` for the status and WHEP, and as `?token=` on the LL-HLS URL (the server carries it
   * to every playlist, part and segment).
   */
  token?: string;
}

/** One quality a viewer can pick: the stream as published (`src`) or a rendition (`720p`, …). */
export interface QualityLevel {
  id: string;
  /** For a menu: `720p`, or `Source (1080p)`. */
  label: string;
  width: number;
  height: number;
  /** Bits/s, if known. */
  bitrate: number | undefined;
}

/** The quality menu's state, the same for WebRTC and LL-HLS. */
export interface QualityState {
  /** `auto`: the player (LL-HLS) or the server (WebRTC) adapts to the network. */
  mode: 'auto' | 'manual';
  /** Level id playing now, if known. */
  current: string | undefined;
  /** Best first. */
  levels: QualityLevel[];
}

/** What the player knows now. */
export interface PlayerStats {
  state: PlayerState;
  protocol: 'webrtc' | 'll-hls' | undefined;
  /** Seconds behind the live edge's wall clock (EXT-X-PROGRAM-DATE-TIME), if known. */
  latency: number | undefined;
  /** Frames the video element has presented. */
  framesDecoded: number;
  stalls: number;
  /** Time spent stalled while playing (from `waiting` to playback going on), ms, the current stall included. */
  stalledMs: number;
  /** From starting to connect to the first frame, ms, for the first play of this page; undefined before. */
  joinMs: number | undefined;
  /** Rendition switches while playing. */
  switches: number;
  quality: QualityState;
  /** WebRTC: the path its media takes, once known (see {@link WebRtcTransport}). */
  transport: WebRtcTransport | undefined;
  /** True when the stream offered WebRTC but it could not connect here, so LL-HLS plays instead (the watch page then links to /diagnostics). */
  webrtcFailed: boolean;
  /** Venue mode: bytes from peers and over HTTP, bytes uploaded, peers, segments rejected; undefined otherwise. */
  venue: VenueCounters | undefined;
}

/**
 * The selected ICE candidate pair's transport as a viewer reads it: `udp`, `tcp` (the server's ICE-TCP candidate,
 * RFC 6544), or `relay-udp`/`relay-tcp`/`relay-tls` through a TURN server (RFC 8656; the protocol to the TURN server).
 */
export type WebRtcTransport = 'udp' | 'tcp' | 'relay-udp' | 'relay-tcp' | 'relay-tls';

/** The transport of `pc`'s selected candidate pair (getStats: transport → candidate-pair → local-candidate), if any. */
export async function selectedTransport(pc: RTCPeerConnection): Promise<WebRtcTransport | undefined> {
  const report = await pc.getStats();
  let pairId: string | undefined;
  report.forEach((r: { type?: string; selectedCandidatePairId?: string }) => {
    if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
  });
  const pair = pairId ? (report.get(pairId) as { localCandidateId?: string } | undefined) : undefined;
  const local = pair?.localCandidateId ? (report.get(pair.localCandidateId) as { protocol?: string; candidateType?: string; relayProtocol?: string } | undefined) : undefined;
  if (!local?.protocol) return undefined;
  if (local.candidateType === 'relay') {
    const via = local.relayProtocol === 'tls' ? 'tls' : local.relayProtocol === 'tcp' ? 'tcp' : 'udp';
    return `relay-${via}`;
  }
  return local.protocol === 'tcp' ? 'tcp' : 'udp';
}

/** Figures for a "stats for nerds" panel (read on demand: WebRTC's come from getStats()). */
export interface DetailedStats {
  protocol: PlayerStats['protocol'];
  /** Level playing (`src`, `720p`). */
  rendition: string | undefined;
  width: number;
  height: number;
  /** Video received, bits/s, over the time since the previous call (WebRTC) or the level's bitrate (LL-HLS). */
  bitrate: number | undefined;
  framesDecoded: number;
  framesDropped: number;
  /** WebRTC: average jitter buffer delay of video, ms; LL-HLS: media buffered ahead, ms. */
  bufferMs: number | undefined;
  /** WebRTC: round-trip time to the server, ms. */
  rttMs: number | undefined;
  /**
   * Glass-to-glass estimate, ms: LL-HLS — distance from the live edge (program date time); WebRTC — jitter buffer
   * plus half the round trip (the encoder and the publisher's path are not seen from here).
   */
  latencyMs: number | undefined;
  packetsLost: number | undefined;
  /** WebRTC: the path its media takes. */
  transport: WebRtcTransport | undefined;
}

/** `src/media.m3u8` or `…/720p/media.m3u8` → `src` / `720p`. */
function renditionOf(uri: string): string {
  const parts = uri.split('?')[0]!.split('/');
  return parts[parts.length - 2] ?? uri;
}

function qualityLabel(id: string, height: number): string {
  return id === 'src' ? (height > 0 ? `Source (${height}p)` : 'Source') : id;
}

interface StatusResponse {
  state: 'live' | 'reconnecting' | 'offline';
  playable: boolean;
  webrtc: boolean;
  playback: { hls: string; whep: string };
  /** Codec strings of the stream's tracks (absent from older servers). */
  tracks?: { video: string | null; audio: string | null };
  /** Venue mode's tracker and STUN server, or null when the stream's viewers may not share segments. */
  p2p?: VenueInfo | null;
}


/** Plays one stream into a `<video>` element. `destroy()` is idempotent. */
export class GlasscastPlayer {
  private hls: Hls | undefined;
  /** Venue mode's counters, once it plays. */
  private venue: VenueCounters | undefined;
  /** The WHEP connection while playing over WebRTC (exposed for stats and tests). */
  whep: WhepConnection | undefined;
  private protocol: PlayerStats['protocol'];
  /** WebRTC failed for this page; LL-HLS from now on (until the stream restarts). */
  private webrtcFailed = false;
  private state: PlayerState = 'offline';
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private destroyed = false;
  private stalls = 0;
  private stalledMs = 0;
  /** When the current stall began (performance.now()), while stalled. */
  private stalledSince: number | undefined;
  private readonly base: string;
  /** WebRTC: the last layer state read from the server (refreshed every second while playing). */
  private layerState: WhepLayerState | undefined;
  private layerTimer: ReturnType<typeof setInterval> | undefined;
  /** The hls.js level being switched to, until its first part is buffered. */
  private switchingTo: number | undefined;
  /** Runs {@link chaseLiveEdge} while LL-HLS plays with this player's tuning. */
  private chaseTimer: ReturnType<typeof setInterval> | undefined;
  private events: EventSource | undefined;
  /** A status check is running (an event and the timer may both ask for one). */
  private polling = false;
  /** Connecting started (performance.now()), for the join time of the first play. */
  private joinStartedAt: number | undefined;
  private joinMs: number | undefined;
  /** Time playing, ms, up to `playingSince`. */
  private playedMs = 0;
  private playingSince: number | undefined;
  private switches = 0;
  private lastLevel: string | undefined;
  private qoe: QoeReporter | undefined;
  /** WebRTC video bytes at the last detailed reading, for the bitrate. */
  private lastBytes: { bytes: number; at: number } | undefined;
  /** WebRTC: the selected pair's transport, read once playing and on each detailed reading. */
  private transport: WebRtcTransport | undefined;

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly options: PlayerOptions,
  ) {
    this.base = (options.server ?? window.location.origin).replace(/\/+$/, '');
    video.addEventListener('waiting', () => {
      if (this.state !== 'playing') return;
      this.stalls++;
      this.stalledSince ??= performance.now();
    });
    const resumed = (): void => {
      if (this.stalledSince === undefined) return;
      this.stalledMs += performance.now() - this.stalledSince;
      this.stalledSince = undefined;
    };
    video.addEventListener('playing', resumed);
    video.addEventListener('timeupdate', () => {
      if (!video.paused && video.readyState >= 3) resumed();
    });
    video.addEventListener('ended', () => this.onEnded());
  }

  /** Starts: checks the stream, plays it if live, otherwise waits for it (told by the server's events). */
  start(): void {
    performance.mark('glasscast:player-start');
    this.openEvents();
    if (this.options.qoe !== false && typeof document !== 'undefined') {
      const token = this.options.token;
      this.qoe = new QoeReporter(
        () => `${this.base}/api/v1/streams/${encodeURIComponent(this.options.stream)}/qoe${token ? `?token=${encodeURIComponent(token)}` : ''}`,
        () => {
          const s = this.getStats();
          if (this.joinStartedAt === undefined || !this.lastProtocol) return undefined;
          return {
            protocol: this.lastProtocol,
            joinMs: s.joinMs === undefined ? null : Math.round(s.joinMs),
            playingMs: Math.max(0, Math.round(this.playingMs() - s.stalledMs)),
            rebuffers: s.stalls,
            rebufferMs: s.stalledMs,
            switches: s.switches,
            latencyMs: s.latency !== undefined ? Math.round(s.latency * 1000) : (this.webrtcLatencyMs ?? null),
            ...(this.venue ? { p2p: { peerBytes: this.venue.peerBytes, httpBytes: this.venue.httpBytes, uploadedBytes: this.venue.uploadedBytes } } : {}),
          };
        },
        10_000,
        async () => {
          // WebRTC's latency estimate comes from getStats(), read just before each beacon.
          if (this.protocol === 'webrtc') this.webrtcLatencyMs = (await this.getDetailedStats()).latencyMs;
        },
      );
    }
    void this.poll();
  }

  /** WebRTC's last glass-to-glass estimate, ms (for the beacon). */
  private webrtcLatencyMs: number | undefined;
  /** The protocol of the last play (kept after it stops, for the beacon). */
  private lastProtocol: 'webrtc' | 'll-hls' | undefined;

  /** Time in the playing state, ms, stalls included. */
  private playingMs(): number {
    return this.playedMs + (this.playingSince === undefined ? 0 : performance.now() - this.playingSince);
  }

  /** Subscribes to the stream's server-sent events: a change to playable starts playback at once. */
  private openEvents(): void {
    if (this.options.events === false || typeof EventSource === 'undefined') return;
    const token = this.options.token;
    const es = new EventSource(`${this.base}/api/v1/streams/${encodeURIComponent(this.options.stream)}/events${token ? `?token=${encodeURIComponent(token)}` : ''}`);
    es.addEventListener('stream', (event) => {
      let summary: StreamSummary;
      try {
        summary = JSON.parse((event as MessageEvent<string>).data) as StreamSummary;
      } catch {
        return;
      }
      this.options.onSummary?.(summary);
      // The operator's kill switch: stop sharing at once (peers already connected would go on without it).
      if (summary.p2p === false && this.venue && this.hls) void import('./venue.js').then(({ stopSharing }) => this.hls && this.venue && stopSharing(this.hls, this.venue));
      if ((summary.webrtc || summary.playable) && !this.hls && !this.whep) void this.poll();
    });
    this.events = es;
  }

  private setState(state: PlayerState, detail = ''): void {
    if (state === this.state && !detail) return;
    const now = performance.now();
    if (state === 'connecting' && this.joinMs === undefined) this.joinStartedAt ??= now;
    if (state === 'playing' && this.joinMs === undefined && this.joinStartedAt !== undefined) this.joinMs = now - this.joinStartedAt;
    if (state === 'playing') this.playingSince ??= now;
    else if (this.playingSince !== undefined) {
      this.playedMs += now - this.playingSince;
      this.playingSince = undefined;
    }
    if (state === 'reconnecting' && detail) this.qoe?.error(detail);
    this.state = state;
    this.options.onStateChange?.(state, detail);
  }

  private schedulePoll(): void {
    if (this.destroyed) return;
    clearTimeout(this.pollTimer);
    const open = this.events !== undefined && this.events.readyState === EventSource.OPEN;
    this.pollTimer = setTimeout(() => void this.poll(), this.options.pollIntervalMs ?? (open ? 10_000 : 2000));
  }

  private async poll(): Promise<void> {
    if (this.destroyed || this.hls || this.whep || this.polling) return;
    this.polling = true;
    try {
      await this.check();
    } finally {
      this.polling = false;
    }
  }

  private async check(): Promise<void> {
    try {
      const token = this.options.token;
      // LL-HLS asked for: fetch hls.js beside the status, not after it.
      if (this.options.protocol === 'll-hls') void loadHls().catch(() => undefined);
      const res = await fetch(`${this.base}/api/v1/streams/${encodeURIComponent(this.options.stream)}`, { cache: 'no-store', headers: token ? { authorization: `Bearer ${token}` } : {} });
      if (res.status === 401 || res.status === 403) {
        // A private stream without (or with a bad or expired) token: say so and keep checking (a page may get a new token).
        const problem = (await res.json().catch(() => ({}))) as { detail?: string };
        this.setState('offline', problem.detail ?? 'not allowed to watch this stream');
        this.schedulePoll();
        return;
      }
      if (res.ok) {
        const status = (await res.json()) as StatusResponse;
        const mode = this.options.venue ? 'll-hls' : (this.options.protocol ?? 'auto');
        if (status.webrtc && mode !== 'll-hls' && !this.webrtcFailed) {
          const audioOnly = status.tracks !== undefined && status.tracks.video === null;
          if (await this.playWebRtc(`${this.base}${status.playback.whep}`, audioOnly)) return;
          if (mode === 'webrtc') {
            this.schedulePoll();
            return;
          }
        }
        if (status.playable && mode !== 'webrtc') {
          // Venue mode asks for the plain playlists of complete segments (`venue=1`): one URL per segment, shared by peers.
          const query = [token ? `token=${encodeURIComponent(token)}` : '', this.options.venue ? 'venue=1' : ''].filter(Boolean).join('&');
          await this.play(`${this.base}${status.playback.hls}${query ? `?${query}` : ''}`, status.p2p ?? null);
          return;
        }
      }
      this.setState('offline');
    } catch {
      this.setState('offline', 'server unreachable');
    }
    this.schedulePoll();
  }

  /** Tries WHEP; resolves true once frames (or, for an audio-only stream, audio packets) flow, false (after cleaning up) when it cannot. */
  private async playWebRtc(url: string, audioOnly = false): Promise<boolean> {
    this.setState('connecting', 'webrtc');
    let conn: WhepConnection;
    try {
      conn = await connectWhep(url, undefined, this.options.token);
    } catch {
      this.webrtcFailed = true;
      this.qoe?.error('webrtc-connect-failed');
      return false;
    }
    this.whep = conn;
    this.protocol = 'webrtc';
    this.lastProtocol = 'webrtc';
    this.video.srcObject = conn.stream;
    void this.video.play().catch(() => undefined);
    const firstFrame = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), this.options.webrtcTimeoutMs ?? 4000);
      const flowing = async (): Promise<boolean> => {
        if (!audioOnly) return this.video.readyState >= 2 && this.video.videoWidth > 0;
        let packets = 0;
        (await conn.pc.getStats()).forEach((r: { type?: string; kind?: string; packetsReceived?: number }) => {
          if (r.type === 'inbound-rtp' && r.kind === 'audio') packets += r.packetsReceived ?? 0;
        });
        return packets > 0;
      };
      const check = (): void => {
        void flowing().then((ok) => {
          if (ok) {
            clearTimeout(timer);
            resolve(true);
          } else if (this.whep === conn) {
            setTimeout(check, 50);
          }
        });
      };
      check();
    });
    if (!firstFrame || this.whep !== conn) {
      this.teardown();
      this.webrtcFailed = true;
      this.qoe?.error('webrtc-no-frames');
      return false;
    }
    this.setState('playing', 'webrtc');
    void selectedTransport(conn.pc).then((t) => {
      if (this.whep === conn) this.transport = t;
    }, () => undefined);
    if (conn.layerUrl) {
      const refresh = (): void => {
        conn.getLayers().then(
          (state) => {
            if (this.whep === conn) this.layerState = state;
          },
          () => undefined,
        );
      };
      refresh();
      this.layerTimer = setInterval(refresh, 1000);
    }
    conn.pc.addEventListener('connectionstatechange', () => {
      if (this.whep !== conn) return;
      if (conn.pc.connectionState === 'failed' || conn.pc.connectionState === 'closed' || conn.pc.connectionState === 'disconnected') {
        this.teardown();
        this.setState('reconnecting', 'webrtc connection lost');
        this.schedulePoll();
      }
    });
    return true;
  }

  private async play(url: string, venueInfo: VenueInfo | null = null): Promise<void> {
    this.protocol = 'll-hls';
    this.lastProtocol = 'll-hls';
    this.setState('connecting', 'll-hls');
    let HlsJs: typeof Hls;
    try {
      HlsJs = await loadHls();
    } catch {
      // The script could not be fetched (the server restarting, a flaky phone network): try again later.
      this.protocol = undefined;
      this.setState('reconnecting', 'the LL-HLS player could not be loaded');
      this.schedulePoll();
      return;
    }
    if (this.destroyed) return;
    if (!HlsJs.isSupported()) {
      // Safari plays LL-HLS natively.
      this.video.src = url;
      void this.video.play().catch(() => undefined);
      this.video.addEventListener('playing', () => this.setState('playing'), { once: true });
      return;
    }
    // Venue mode plays segments where its peers can share them: no join at the live edge, a gentler chase (venue.ts).
    const tuned = !this.options.hlsDefaults && !this.options.venue;
    let venueHls: Hls | undefined;
    if (this.options.venue) {
      try {
        const { createVenueHls } = await import('./venue.js');
        // Counters run for the page's life (the QoE beacon's figures are cumulative), across reconnects.
        this.venue ??= { peerBytes: 0, httpBytes: 0, uploadedBytes: 0, peers: 0, rejected: 0, sharing: false };
        this.venue.peers = 0;
        venueHls = await createVenueHls(HlsJs, { server: this.base || location.origin, stream: this.options.stream, info: venueInfo, counters: this.venue });
      } catch {
        this.protocol = undefined;
        this.setState('reconnecting', 'the venue-mode player could not be loaded');
        this.schedulePoll();
        return;
      }
      if (this.destroyed) {
        venueHls.destroy();
        return;
      }
    }
    const hls = venueHls ?? new HlsJs(
      this.options.hlsDefaults
        ? {}
        : {
            lowLatencyMode: true,
            backBufferLength: 30,
            // The live edge is chased by this player ({@link chaseLiveEdge}), not by hls.js: hls.js speeds up only
            // with more than 1 s buffered, which a player ~0.4 s from the edge never has.
            maxLiveSyncPlaybackRate: 1,
            // hls.js moves its target a whole second back after each stall by default; a fifth of that is enough on
            // a network that stalled once, and the chase above wins the rest back.
            liveSyncOnStallIncrease: 0.2,
            liveDurationInfinity: true,
            manifestLoadingMaxRetry: 2,
            // Glasscast serves CMAF (fMP4) only: hls.js passes it through with little work, so its transmux worker
            // buys nothing here, and starting one (a second copy of hls.js to parse) took 0.3–0.5 s of the first
            // frame's time on a busy 2-core machine — time that became latency, as playback starts where the
            // live edge was before it.
            enableWorker: false,
          },
    );
    this.hls = hls;
    hls.on(HlsJs.Events.ERROR, (_event, data) => {
      this.qoe?.error(`hls:${data.details}`);
      if (!data.fatal) return;
      if (data.type === HlsJs.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      this.teardown();
      this.setState('reconnecting', data.details);
      this.schedulePoll();
    });
    hls.on(HlsJs.Events.LEVEL_UPDATED, (_event, data) => {
      if (!data.details.live) this.setState('ended');
    });
    let firstBuffered: number | undefined;
    hls.on(HlsJs.Events.LEVEL_SWITCHING, (_event, data) => {
      if (this.state === 'playing' && data.level !== hls.currentLevel) this.switchingTo = data.level;
    });
    hls.on(HlsJs.Events.FRAG_BUFFERED, (_event, data) => {
      if (this.switchingTo === data.frag.level) this.switchingTo = undefined;
      if (this.state !== 'connecting') return;
      firstBuffered ??= performance.now();
      const waited = performance.now() - firstBuffered;
      if (tuned && (waited < JOIN_SETTLE_MS || !this.joinLiveEdge(hls, waited >= JOIN_WAIT_MS))) return;
      void this.video.play().catch(() => undefined);
    });
    this.video.addEventListener(
      'playing',
      () => {
        this.setState('playing');
        // A stall hls.js saw before the first frame (the join's seek decoding from the keyframe) is part of
        // starting, not of the network: it would have moved the target 0.2 s back for the whole session.
        const hold = hls.latestLevelDetails?.partHoldBack;
        if (tuned && hold && hls.targetLatency !== null && hls.targetLatency > hold) hls.targetLatency = hold;
      },
      { once: true },
    );
    if (tuned) this.chaseTimer = setInterval(() => this.chaseLiveEdge(hls), CHASE_INTERVAL_MS);
    else if (venueHls) {
      const { chaseVenueEdge } = await import('./venue.js');
      this.chaseTimer = setInterval(() => chaseVenueEdge(this.video, hls), 1000);
    }
    hls.loadSource(url);
    hls.attachMedia(this.video);
  }

  /**
   * Before the first frame, moves the playhead forward to hls.js's live sync position (the live edge less its
   * target latency, PART-HOLD-BACK for LL-HLS) less {@link LIVE_MARGIN_PARTS} parts. hls.js picks its start from the first playlist and then plays at
   * 1×, so the time it spends starting (playlists, the parts since the keyframe, the first decode) would otherwise
   * stay in the latency; the catch-up at ≤ 1.05× takes ~20 s to win back one second. Resolves whether to start
   * playing now: false while the buffer does not yet reach the playlist's last part (hls.js is still fetching the
   * parts since the keyframe, which exist), unless `giveUp` (waited long enough: start where the buffer allows). Never past
   * the buffer's end less two parts, so playback starts with data in hand (with one, the next part's usual
   * delay stalled it right after the first frame).
   */
  private joinLiveEdge(hls: Hls, giveUp: boolean): boolean {
    const sync = hls.liveSyncPosition;
    const video = this.video;
    if (sync === null || !video.buffered.length) return true;
    const details = hls.latestLevelDetails;
    const partS = details?.partTarget ?? 0.2;
    const end = video.buffered.end(video.buffered.length - 1);
    // Caught up: everything the playlist lists is buffered (hls.js fetches the parts since the keyframe one by one).
    if (details && end < details.edge - 0.05 && !giveUp) return false;
    const target = Math.min(sync - LIVE_MARGIN_PARTS * partS, end - 2 * partS);
    if (target > video.currentTime + 0.1) video.currentTime = target;
    return true;
  }

  /**
   * Keeps LL-HLS playback near hls.js's target latency (PART-HOLD-BACK, more after stalls) plus
   * {@link LIVE_MARGIN_PARTS} parts: plays up to 5 % fast (not heard in speech or music) while more than
   * {@link CHASE_START_S} behind it with two parts or more buffered, and at 1× again once within 30 ms or when the
   * buffer runs lower; more than {@link CHASE_JUMP_S} behind with that much
   * buffered, it jumps forward instead (two parts short of the buffer's end). What it wins back: the time a join spends before its
   * first frame, a stall, and a device clock running slower than the server's (seen here: a headless browser's
   * audio clock ~3 % slow, which let latency grow ~30 ms a second).
   */
  private chaseLiveEdge(hls: Hls): void {
    const video = this.video;
    const target = hls.targetLatency;
    if (video.paused || !video.buffered.length || target === null || !Number.isFinite(hls.latency) || hls.latency === 0) return;
    const partS = hls.latestLevelDetails?.partTarget ?? 0.2;
    const behind = hls.latency - (target + LIVE_MARGIN_PARTS * partS);
    const end = video.buffered.end(video.buffered.length - 1);
    const ahead = end - video.currentTime;
    // Far behind (a slow start, a long stall): jump, as 5 % would take 20 s a second.
    const jumpTo = Math.min(video.currentTime + behind, end - 2 * partS);
    if (behind > CHASE_JUMP_S && jumpTo > video.currentTime + CHASE_JUMP_S / 2) {
      video.currentTime = jumpTo;
      return;
    }
    let rate = video.playbackRate;
    // Switching level: the new one is fetched from its keyframe while the buffer plays out; stretch it meanwhile.
    if (this.switchingTo !== undefined) rate = SWITCH_RATE;
    else if (behind < 0.03 || ahead < 2 * partS - 0.05) rate = 1;
    else if (behind > CHASE_START_S && ahead > 2 * partS) rate = behind > 0.5 ? 1.05 : 1.03;
    if (video.playbackRate !== rate) video.playbackRate = rate;
  }

  private onEnded(): void {
    this.teardown();
    this.webrtcFailed = false;
    this.setState('offline', 'stream ended');
    this.schedulePoll();
  }

  /** The quality menu: levels, which one plays, and whether the choice is automatic. */
  getQuality(): QualityState {
    if (this.protocol === 'webrtc') {
      const st = this.layerState;
      if (!st) return { mode: 'auto', current: undefined, levels: [] };
      return {
        mode: st.mode,
        current: st.current,
        levels: st.layers.map((l) => ({ id: l.id, label: qualityLabel(l.id, l.height), width: l.width, height: l.height, bitrate: l.bitrate })),
      };
    }
    const hls = this.hls;
    if (this.protocol === 'll-hls' && hls) {
      const levels = hls.levels.map((l) => ({ id: renditionOf(l.uri), label: qualityLabel(renditionOf(l.uri), l.height), width: l.width, height: l.height, bitrate: l.bitrate }));
      const playing = hls.levels[hls.currentLevel];
      return { mode: hls.autoLevelEnabled ? 'auto' : 'manual', current: playing ? renditionOf(playing.uri) : undefined, levels: [...levels].sort((a, b) => (b.bitrate ?? 0) - (a.bitrate ?? 0)) };
    }
    return { mode: 'auto', current: undefined, levels: [] };
  }

  /**
   * Picks a quality by level id (`src`, `720p`, …) or `auto`. WebRTC switches at the rendition's next keyframe
   * (the server keeps one smooth track); LL-HLS switches from the next segment without flushing what is buffered.
   * Resolves false when there is no such level.
   */
  async setQuality(id: string): Promise<boolean> {
    if (this.protocol === 'webrtc' && this.whep) {
      try {
        this.layerState = await this.whep.selectLayer(id);
        return true;
      } catch {
        return false;
      }
    }
    const hls = this.hls;
    if (this.protocol === 'll-hls' && hls) {
      if (id === 'auto') {
        hls.nextLevel = -1;
        return true;
      }
      const index = hls.levels.findIndex((l) => renditionOf(l.uri) === id);
      if (index < 0) return false;
      hls.nextLevel = index;
      return true;
    }
    return false;
  }

  private teardown(): void {
    clearInterval(this.chaseTimer);
    this.chaseTimer = undefined;
    this.switchingTo = undefined;
    if (this.video.playbackRate !== 1) this.video.playbackRate = 1;
    clearInterval(this.layerTimer);
    this.layerTimer = undefined;
    this.layerState = undefined;
    this.hls?.destroy();
    this.hls = undefined;
    if (this.whep) {
      this.whep.close();
      this.whep = undefined;
      this.video.srcObject = null;
    }
    this.protocol = undefined;
    this.transport = undefined;
  }

  /** Current figures. */
  getStats(): PlayerStats {
    const quality = this.video.getVideoPlaybackQuality?.();
    const q = this.getQuality();
    if (this.state === 'playing' && q.current !== undefined && q.current !== this.lastLevel) {
      if (this.lastLevel !== undefined) this.switches++;
      this.lastLevel = q.current;
    }
    return {
      state: this.state,
      protocol: this.protocol,
      latency: this.protocol === 'll-hls' ? (this.hls?.latency ?? undefined) : undefined,
      framesDecoded: quality?.totalVideoFrames ?? 0,
      stalls: this.stalls,
      stalledMs: Math.round(this.stalledMs + (this.stalledSince === undefined ? 0 : performance.now() - this.stalledSince)),
      joinMs: this.joinMs,
      switches: this.switches,
      quality: q,
      transport: this.protocol === 'webrtc' ? this.transport : undefined,
      webrtcFailed: this.webrtcFailed,
      venue: this.venue && { ...this.venue },
    };
  }

  /** Sends the QoE beacon now instead of at the next 10 s tick (tests, and a page about to navigate away). */
  reportQoe(): void {
    this.qoe?.send(false);
  }

  /** Figures for a "stats for nerds" panel; call about once a second (the bitrate is over the interval). */
  async getDetailedStats(): Promise<DetailedStats> {
    const playback = this.video.getVideoPlaybackQuality?.();
    const q = this.getQuality();
    const base: DetailedStats = {
      protocol: this.protocol,
      rendition: q.current,
      width: this.video.videoWidth,
      height: this.video.videoHeight,
      bitrate: undefined,
      framesDecoded: playback?.totalVideoFrames ?? 0,
      framesDropped: playback?.droppedVideoFrames ?? 0,
      bufferMs: undefined,
      rttMs: undefined,
      latencyMs: undefined,
      packetsLost: undefined,
      transport: undefined,
    };
    if (this.protocol === 'll-hls' && this.hls) {
      const hls = this.hls;
      const level = hls.levels[hls.currentLevel];
      const buffered = this.video.buffered;
      const end = buffered.length > 0 ? buffered.end(buffered.length - 1) : this.video.currentTime;
      return { ...base, bitrate: level?.bitrate, bufferMs: Math.max(0, Math.round((end - this.video.currentTime) * 1000)), latencyMs: Number.isFinite(hls.latency) ? Math.round(hls.latency * 1000) : undefined };
    }
    const pc = this.whep?.pc;
    if (this.protocol === 'webrtc' && pc) {
      const report = await pc.getStats();
      let bytes = 0;
      let at = 0;
      let jitterMs: number | undefined;
      let rttMs: number | undefined;
      let lost = 0;
      report.forEach((r: { type?: string; kind?: string; bytesReceived?: number; timestamp?: number; jitterBufferDelay?: number; jitterBufferEmittedCount?: number; packetsLost?: number; state?: string; nominated?: boolean; currentRoundTripTime?: number }) => {
        if (r.type === 'inbound-rtp' && r.kind === 'video') {
          bytes = r.bytesReceived ?? 0;
          at = r.timestamp ?? 0;
          if (r.jitterBufferEmittedCount) jitterMs = ((r.jitterBufferDelay ?? 0) / r.jitterBufferEmittedCount) * 1000;
        }
        if (r.type === 'inbound-rtp') lost += r.packetsLost ?? 0;
        if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded' && r.currentRoundTripTime !== undefined) rttMs = r.currentRoundTripTime * 1000;
      });
      const previous = this.lastBytes;
      this.lastBytes = { bytes, at };
      const bitrate = previous && at > previous.at && bytes >= previous.bytes ? ((bytes - previous.bytes) * 8 * 1000) / (at - previous.at) : undefined;
      const latencyMs = jitterMs === undefined ? undefined : Math.round(jitterMs + (rttMs ?? 0) / 2);
      this.transport = (await selectedTransport(pc).catch(() => undefined)) ?? this.transport;
      return { ...base, transport: this.transport, bitrate, bufferMs: jitterMs === undefined ? undefined : Math.round(jitterMs), rttMs: rttMs === undefined ? undefined : Math.round(rttMs), latencyMs, packetsLost: lost };
    }
    return base;
  }

  /** Stops playback and polling. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.pollTimer);
    this.qoe?.send(false);
    this.qoe?.stop();
    this.events?.close();
    this.teardown();
  }
}
