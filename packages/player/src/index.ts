/**
 * The Glasscast browser player: plays a stream over LL-HLS with hls.js in low-latency mode, shows an offline
 * state until the stream is live, picks it up by itself when it goes live, and measures latency from the
 * playlist's EXT-X-PROGRAM-DATE-TIME.
 */
import Hls from 'hls.js';

/** Player states, in the order a viewer usually sees them. */
export type PlayerState = 'offline' | 'connecting' | 'playing' | 'reconnecting' | 'ended';

/** Options of the player. */
export interface PlayerOptions {
  /** Stream name (the `<name>` of `/watch/<name>`). */
  stream: string;
  /** Base URL of the Glasscast server; default the page's origin. */
  server?: string;
  /** How often to check whether an offline stream went live, ms. Default 2000. */
  pollIntervalMs?: number;
  /** Called on every state change. */
  onStateChange?: (state: PlayerState, detail: string) => void;
}

/** What the player knows now. */
export interface PlayerStats {
  state: PlayerState;
  protocol: 'll-hls' | undefined;
  /** Seconds behind the live edge's wall clock (EXT-X-PROGRAM-DATE-TIME), if known. */
  latency: number | undefined;
  /** Frames the video element has presented. */
  framesDecoded: number;
  stalls: number;
}

interface StatusResponse {
  state: 'live' | 'reconnecting' | 'offline';
  playable: boolean;
  playback: { hls: string };
}

/** Plays one stream into a `<video>` element. `destroy()` is idempotent. */
export class GlasscastPlayer {
  private hls: Hls | undefined;
  private state: PlayerState = 'offline';
  private pollTimer: ReturnType<typeof setTimeout> | undefined;
  private destroyed = false;
  private stalls = 0;
  private readonly base: string;

  constructor(
    private readonly video: HTMLVideoElement,
    private readonly options: PlayerOptions,
  ) {
    this.base = (options.server ?? window.location.origin).replace(/\/+$/, '');
    video.addEventListener('waiting', () => {
      if (this.state === 'playing') this.stalls++;
    });
    video.addEventListener('ended', () => this.onEnded());
  }

  /** Starts: checks the stream, plays it if live, otherwise waits for it. */
  start(): void {
    void this.poll();
  }

  private setState(state: PlayerState, detail = ''): void {
    if (state === this.state && !detail) return;
    this.state = state;
    this.options.onStateChange?.(state, detail);
  }

  private schedulePoll(): void {
    if (this.destroyed) return;
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => void this.poll(), this.options.pollIntervalMs ?? 2000);
  }

  private async poll(): Promise<void> {
    if (this.destroyed || this.hls) return;
    try {
      const res = await fetch(`${this.base}/api/v1/streams/${encodeURIComponent(this.options.stream)}`, { cache: 'no-store' });
      if (res.ok) {
        const status = (await res.json()) as StatusResponse;
        if (status.playable) {
          this.play(`${this.base}${status.playback.hls}`);
          return;
        }
      }
      this.setState('offline');
    } catch {
      this.setState('offline', 'server unreachable');
    }
    this.schedulePoll();
  }

  private play(url: string): void {
    this.setState('connecting');
    if (!Hls.isSupported()) {
      // Safari plays LL-HLS natively.
      this.video.src = url;
      void this.video.play().catch(() => undefined);
      this.video.addEventListener('playing', () => this.setState('playing'), { once: true });
      return;
    }
    const hls = new Hls({
      lowLatencyMode: true,
      backBufferLength: 30,
      // Chase the live edge gently when we drift behind (e.g. after a stall).
      maxLiveSyncPlaybackRate: 1.15,
      liveDurationInfinity: true,
      manifestLoadingMaxRetry: 2,
    });
    this.hls = hls;
    hls.on(Hls.Events.ERROR, (_event, data) => {
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
        hls.recoverMediaError();
        return;
      }
      this.teardown();
      this.setState('reconnecting', data.details);
      this.schedulePoll();
    });
    hls.on(Hls.Events.LEVEL_UPDATED, (_event, data) => {
      if (!data.details.live) this.setState('ended');
    });
    hls.on(Hls.Events.FRAG_BUFFERED, () => {
      if (this.state === 'connecting') void this.video.play().catch(() => undefined);
    });
    this.video.addEventListener('playing', () => this.setState('playing'), { once: true });
    hls.loadSource(url);
    hls.attachMedia(this.video);
  }

  private onEnded(): void {
    this.teardown();
    this.setState('offline', 'stream ended');
    this.schedulePoll();
  }

  private teardown(): void {
    this.hls?.destroy();
    this.hls = undefined;
  }

  /** Current figures. */
  getStats(): PlayerStats {
    const quality = this.video.getVideoPlaybackQuality?.();
    return {
      state: this.state,
      protocol: this.hls || this.video.src ? 'll-hls' : undefined,
      latency: this.hls?.latency ?? undefined,
      framesDecoded: quality?.totalVideoFrames ?? 0,
      stalls: this.stalls,
    };
  }

  /** Stops playback and polling. Idempotent. */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    clearTimeout(this.pollTimer);
    this.teardown();
  }
}
