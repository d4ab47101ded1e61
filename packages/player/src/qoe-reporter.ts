/**
 * Sends the player's quality-of-experience beacon (`POST /api/v1/streams/<name>/qoe`, the server's
 * observability/viewer-qoe.ts) every `intervalMs` while a stream plays, and once more when the page is hidden
 * or closed (`navigator.sendBeacon`, which survives the unload). Figures are cumulative since the page loaded,
 * under a random id made per page load: nothing that identifies the viewer.
 */

/** The beacon's body. */
export interface QoeSnapshot {
  protocol: 'webrtc' | 'll-hls';
  /** From starting to play to the first frame, ms; null until then. */
  joinMs: number | null;
  /** Time playing (not stalled), ms. */
  playingMs: number;
  rebuffers: number;
  /** Time stalled, ms. */
  rebufferMs: number;
  /** Rendition switches. */
  switches: number;
  /** Distance from the live edge, ms; null when unknown. */
  latencyMs: number | null;
  /** Venue mode: segment bytes from other viewers and over HTTP, and bytes sent to other viewers. */
  p2p?: { peerBytes: number; httpBytes: number; uploadedBytes: number };
}

/** A random id for this page load (not stored anywhere). */
function pageViewId(): string {
  const bytes = new Uint8Array(12);
  crypto.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Sends beacons for one player. `stop()` is idempotent. */
export class QoeReporter {
  private readonly viewerId = pageViewId();
  private readonly timer: ReturnType<typeof setInterval>;
  private errors: string[] = [];
  private readonly onHide = (): void => {
    if (document.visibilityState === 'hidden') this.send(true);
  };

  constructor(
    private readonly url: () => string,
    /** The figures now, or undefined while nothing has been played (an offline page reports nothing). */
    private readonly snapshot: () => QoeSnapshot | undefined,
    intervalMs: number,
    /** Brings figures read asynchronously up to date before a timed beacon. */
    private readonly refresh?: () => Promise<void>,
  ) {
    this.timer = setInterval(() => {
      void (this.refresh?.() ?? Promise.resolve()).catch(() => undefined).then(() => this.send(false));
    }, intervalMs);
    document.addEventListener('visibilitychange', this.onHide);
    window.addEventListener('pagehide', this.onHide);
  }

  /** Notes an error code for the next beacon (at most 5 distinct per beacon). */
  error(code: string): void {
    if (this.errors.length < 5 && !this.errors.includes(code)) this.errors.push(code.slice(0, 80));
  }

  /** Sends the figures now (`unloading`: with sendBeacon, which outlives the page). */
  send(unloading: boolean): void {
    const s = this.snapshot();
    if (!s) return;
    const body = JSON.stringify({ viewerId: this.viewerId, ...s, errors: this.errors });
    this.errors = [];
    const url = this.url();
    if (unloading && typeof navigator.sendBeacon === 'function') {
      navigator.sendBeacon(url, new Blob([body], { type: 'application/json' }));
      return;
    }
    void fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body, keepalive: true }).catch(() => undefined);
  }

  stop(): void {
    clearInterval(this.timer);
    document.removeEventListener('visibilitychange', this.onHide);
    window.removeEventListener('pagehide', this.onHide);
  }
}
