/**
 * Viewer quality of experience (issue 14): what players report about their own playback, aggregated per stream.
 *
 * A player sends a beacon every 10 s and when its page closes (`POST /api/v1/streams/{name}/qoe`) with
 * cumulative figures since it loaded: join time, time playing, stalls and time stalled, rendition switches,
 * estimated latency, protocol and error codes. The viewer is a random id made per page load — no address, no
 * account, nothing the operator does not already see. Per stream, the newest beacon of each viewer heard from in
 * the last `windowMs` counts: median and p95 of join time and latency, and the rebuffer ratio (time stalled over
 * time stalled plus playing). Memory is bounded: viewers per stream and streams are capped; old ones expire.
 */

/** One beacon, as validated by the route (cumulative since the page loaded). */
export interface QoeBeacon {
  /** Random per page load, 8–64 characters. */
  viewerId: string;
  protocol: 'webrtc' | 'll-hls';
  /** From the page starting to play to the first frame shown, ms; null until then. */
  joinMs: number | null;
  /** Time spent playing (not stalled), ms. */
  playingMs: number;
  /** Stalls while playing. */
  rebuffers: number;
  /** Time spent stalled, ms. */
  rebufferMs: number;
  /** Rendition switches. */
  switches: number;
  /** Estimated distance from the live edge, ms; null when unknown. */
  latencyMs: number | null;
  /** Error codes seen since the last beacon (e.g. hls.js details), at most a few. */
  errors: string[];
  /** Venue mode: segment bytes received from other viewers and over HTTP, and bytes sent to other viewers. */
  p2p?: { peerBytes: number; httpBytes: number; uploadedBytes: number } | undefined;
}

/** A stream's aggregated figures. */
export interface QoeFigures {
  /** Viewers heard from in the window. */
  viewers: number;
  /** Beacons received for the stream since the server started. */
  beacons: number;
  joinMs: { p50: number; p95: number } | null;
  latencyMs: { p50: number; p95: number } | null;
  /** Time stalled / (time stalled + time playing), 0–1, over the viewers in the window. */
  rebufferRatio: number;
  rebuffers: number;
  switches: number;
  /** Viewers per protocol in the window. */
  protocols: Record<string, number>;
  /** Error codes reported in the window, most frequent first (at most 10). */
  errors: { code: string; count: number }[];
  /**
   * Venue mode over the viewers in the window that play it: segment bytes from peers and over HTTP, and the
   * offload (peer bytes ÷ all segment bytes, 0–1); null when none does.
   */
  p2p: { viewers: number; peerBytes: number; httpBytes: number; offload: number } | null;
}

/** Options of the aggregator. */
export interface ViewerQoeOptions {
  /** A viewer's figures count this long after its last beacon, ms (default 300 000). */
  windowMs: number;
  /** Most viewers kept per stream (default 5000); beyond it the oldest is forgotten. */
  maxViewersPerStream: number;
  /** Most streams kept (default 1000). */
  maxStreams: number;
}

interface Entry {
  beacon: QoeBeacon;
  at: number;
  /** Errors reported by this viewer over the window (each beacon brings the new ones). */
  errors: Map<string, number>;
}

interface StreamQoe {
  viewers: Map<string, Entry>;
  beacons: number;
  lastAt: number;
}

/** The value below which `q` of the sorted values lie (nearest rank). */
function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]!;
}

function spread(values: number[]): { p50: number; p95: number } | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  return { p50: Math.round(quantile(sorted, 0.5)), p95: Math.round(quantile(sorted, 0.95)) };
}

/** Aggregates viewer beacons per stream. */
export class ViewerQoe {
  private readonly streams = new Map<string, StreamQoe>();
  readonly counters = { beacons: 0, ignoredErrors: 0 };

  constructor(private readonly options: ViewerQoeOptions) {}

  /**
   * Takes one beacon for `stream`: it replaces the viewer's earlier one (figures are cumulative), so a page that
   * reports twice in a row costs nothing more. Error codes add up, except from beacons less than a second after
   * the viewer's last one (a loop, or a page reporting its close right after a tick).
   */
  report(stream: string, beacon: QoeBeacon, now = Date.now()): void {
    let s = this.streams.get(stream);
    if (!s) {
      if (this.streams.size >= this.options.maxStreams) this.expire(now, true);
      s = { viewers: new Map(), beacons: 0, lastAt: now };
      this.streams.set(stream, s);
    }
    const before = s.viewers.get(beacon.viewerId);
    const errors = before?.errors ?? new Map<string, number>();
    if (before && now - before.at < 1000) this.counters.ignoredErrors += beacon.errors.length;
    else for (const code of beacon.errors) if (errors.size < 20 || errors.has(code)) errors.set(code, (errors.get(code) ?? 0) + 1);
    s.viewers.delete(beacon.viewerId);
    s.viewers.set(beacon.viewerId, { beacon, at: now, errors });
    if (s.viewers.size > this.options.maxViewersPerStream) s.viewers.delete(s.viewers.keys().next().value!);
    s.beacons++;
    s.lastAt = now;
    this.counters.beacons++;
  }

  /** The figures of `stream` now, or undefined when no viewer reported within the window. */
  figures(stream: string, now = Date.now()): QoeFigures | undefined {
    const s = this.streams.get(stream);
    if (!s) return undefined;
    const recent = [...s.viewers.values()].filter((e) => now - e.at < this.options.windowMs);
    if (recent.length === 0) return undefined;
    const joins = recent.map((e) => e.beacon.joinMs).filter((v): v is number => v !== null);
    const latencies = recent.map((e) => e.beacon.latencyMs).filter((v): v is number => v !== null);
    let playing = 0;
    let stalled = 0;
    let rebuffers = 0;
    let switches = 0;
    const protocols: Record<string, number> = {};
    const errors = new Map<string, number>();
    const p2p = { viewers: 0, peerBytes: 0, httpBytes: 0 };
    for (const { beacon: b, errors: e } of recent) {
      if (b.p2p) {
        p2p.viewers++;
        p2p.peerBytes += b.p2p.peerBytes;
        p2p.httpBytes += b.p2p.httpBytes;
      }
      playing += b.playingMs;
      stalled += b.rebufferMs;
      rebuffers += b.rebuffers;
      switches += b.switches;
      protocols[b.protocol] = (protocols[b.protocol] ?? 0) + 1;
      for (const [code, n] of e) errors.set(code, (errors.get(code) ?? 0) + n);
    }
    return {
      viewers: recent.length,
      beacons: s.beacons,
      joinMs: spread(joins),
      latencyMs: spread(latencies),
      rebufferRatio: playing + stalled > 0 ? stalled / (playing + stalled) : 0,
      rebuffers,
      switches,
      protocols,
      errors: [...errors].sort((a, b) => b[1] - a[1]).slice(0, 10).map(([code, count]) => ({ code, count })),
      p2p: p2p.viewers > 0 ? { ...p2p, offload: p2p.peerBytes + p2p.httpBytes > 0 ? p2p.peerBytes / (p2p.peerBytes + p2p.httpBytes) : 0 } : null,
    };
  }

  /** Streams with figures now. */
  reporting(now = Date.now()): string[] {
    this.expire(now);
    return [...this.streams.keys()].filter((n) => this.figures(n, now) !== undefined);
  }

  /** Forgets viewers past the window and streams without any (with `evict`, also the stream heard from least recently). */
  private expire(now: number, evict = false): void {
    for (const [name, s] of this.streams) {
      for (const [id, e] of s.viewers) if (now - e.at >= this.options.windowMs) s.viewers.delete(id);
      if (s.viewers.size === 0) this.streams.delete(name);
    }
    if (evict && this.streams.size >= this.options.maxStreams) {
      const oldest = [...this.streams].sort((a, b) => a[1].lastAt - b[1].lastAt)[0];
      if (oldest) this.streams.delete(oldest[0]);
    }
  }
}
