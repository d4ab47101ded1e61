/**
 * Prometheus metrics (prom-client), served at `/metrics` in the text exposition format. Names follow Prometheus
 * conventions (base units, `_total` for counters); labels are stream, protocol and rendition only — never a
 * viewer, address or session, so the number of series stays bounded by streams × renditions. Values are read
 * from the parts when scraped, not pushed on every packet. Process metrics (CPU, memory, event loop lag, file
 * descriptors) come from prom-client's defaults.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { QoeFigures } from './viewer-qoe.js';

/** What the metrics read when scraped. */
export interface MetricsSources {
  /** Names of the streams live or reconnecting now. */
  liveStreams(): string[];
  /** Every stream name that has had traffic since start (for egress counters). */
  knownStreams(): string[];
  viewers(name: string): { byProtocol: Record<string, number>; byRendition: { protocol: string; rendition: string; viewers: number }[] };
  ingest(name: string): { bitsPerSecond: number; framesPerSecond: number; keyframeIntervalMs: number | undefined; bytesTotal: number } | undefined;
  egressBytes(name: string): Record<string, number>;
  transcode(name: string): { degraded: boolean; restarts: number } | undefined;
  webhookDeliveries(): Record<string, number>;
  webhookPending(): Promise<number>;
  admissions(): Record<string, number>;
  /** Recorder counters (segments and bytes written, write failures, stops for disk space, deletions by retention) and recordings in progress. */
  recording(): { counters: Record<string, number>; active: number };
  /** S3 upload counters (files and bytes uploaded, failed attempts) and files waiting; undefined without S3. */
  uploads(): Promise<{ counters: Record<string, number>; pending: number } | undefined>;
  /** SRT publisher sessions now: stream, round-trip time (ms), negotiated latency (ms), packet counters. */
  /** Viewer QoE per stream reporting now (observability/viewer-qoe.ts), and beacons received in all. */
  qoe(): { streams: { stream: string; figures: QoeFigures }[]; beacons: number };
  srtSessions(): { stream: string; rttMs: number; latencyMs: number; stats: { packetsReceived: number; packetsLost: number; packetsRetransmitted: number; packetsDropped: number; bitsPerSecond: number } }[];
}

/** The metrics registry of one server. */
export class Metrics {
  readonly registry = new Registry();

  constructor(sources: MetricsSources) {
    const r = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    new Gauge({
      name: 'glasscast_streams_live',
      help: 'Streams with a publisher (or in their reconnect grace).',
      registers: r,
      collect() {
        this.set(sources.liveStreams().length);
      },
    });
    new Gauge({
      name: 'glasscast_viewers',
      help: 'Viewers now, per stream and protocol (whep, llhls).',
      labelNames: ['stream', 'protocol'],
      registers: r,
      collect() {
        this.reset();
        for (const stream of sources.liveStreams()) {
          const v = sources.viewers(stream).byProtocol;
          for (const protocol of ['whep', 'llhls']) this.set({ stream, protocol }, v[protocol] ?? 0);
        }
      },
    });
    new Gauge({
      name: 'glasscast_rendition_viewers',
      help: 'Viewers now, per stream, protocol and rendition (src, 720p, …).',
      labelNames: ['stream', 'protocol', 'rendition'],
      registers: r,
      collect() {
        this.reset();
        for (const stream of sources.liveStreams()) {
          for (const v of sources.viewers(stream).byRendition) this.set({ stream, protocol: v.protocol, rendition: v.rendition }, v.viewers);
        }
      },
    });
    const ingest = (name: string, help: string, pick: (i: NonNullable<ReturnType<MetricsSources['ingest']>>) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['stream'],
        registers: r,
        collect() {
          this.reset();
          for (const stream of sources.liveStreams()) {
            const i = sources.ingest(stream);
            const value = i && pick(i);
            if (value !== undefined) this.set({ stream }, value);
          }
        },
      });
    };
    ingest('glasscast_ingest_bits_per_second', 'Ingest bitrate over the last second, bits/s.', (i) => i.bitsPerSecond);
    ingest('glasscast_ingest_frames_per_second', 'Ingest video frame rate over the last second.', (i) => i.framesPerSecond);
    ingest('glasscast_ingest_keyframe_interval_seconds', 'Gap between the last two keyframes, seconds.', (i) => (i.keyframeIntervalMs === undefined ? undefined : i.keyframeIntervalMs / 1000));
    new Counter({
      name: 'glasscast_egress_bytes_total',
      help: 'Bytes sent to viewers since the server started, per stream and protocol.',
      labelNames: ['stream', 'protocol'],
      registers: r,
      collect() {
        this.reset();
        for (const stream of sources.knownStreams()) {
          for (const [protocol, bytes] of Object.entries(sources.egressBytes(stream))) this.inc({ stream, protocol }, bytes);
        }
      },
    });
    new Gauge({
      name: 'glasscast_transcode_degraded',
      help: "1 when the stream's video job shed work under overload, else 0.",
      labelNames: ['stream'],
      registers: r,
      collect() {
        this.reset();
        for (const stream of sources.liveStreams()) {
          const t = sources.transcode(stream);
          if (t) this.set({ stream }, t.degraded ? 1 : 0);
        }
      },
    });
    new Counter({
      name: 'glasscast_transcode_restarts_total',
      help: "Restarts of the stream's video job (faults) in its current run.",
      labelNames: ['stream'],
      registers: r,
      collect() {
        this.reset();
        for (const stream of sources.liveStreams()) {
          const t = sources.transcode(stream);
          if (t) this.inc({ stream }, t.restarts);
        }
      },
    });
    new Counter({
      name: 'glasscast_webhook_deliveries_total',
      help: 'Webhook delivery attempts by result: delivered, retry (failed, will retry), gave_up.',
      labelNames: ['result'],
      registers: r,
      collect() {
        this.reset();
        for (const [result, n] of Object.entries(sources.webhookDeliveries())) this.inc({ result }, n);
      },
    });
    new Gauge({
      name: 'glasscast_webhook_pending_messages',
      help: 'Webhook messages waiting in the outbox.',
      registers: r,
      async collect() {
        this.set(await sources.webhookPending());
      },
    });
    this.srt(sources);
    this.recording(sources);
    this.qoe(sources);
    new Counter({
      name: 'glasscast_admission_decisions_total',
      help: 'Admission hook answers: allowed, denied, failed (timeout or error; fail mode decided).',
      labelNames: ['result'],
      registers: r,
      collect() {
        this.reset();
        for (const [result, n] of Object.entries(sources.admissions())) this.inc({ result }, n);
      },
    });
  }

  /** Adds the viewer QoE series: one per stream that viewers report on (and one quantile label per figure). */
  private qoe(sources: MetricsSources): void {
    const r = [this.registry];
    const perStream = (name: string, help: string, set: (g: Gauge, stream: string, f: QoeFigures) => void, quantiles = false): void => {
      new Gauge({
        name,
        help,
        labelNames: quantiles ? ['stream', 'quantile'] : ['stream'],
        registers: r,
        collect() {
          this.reset();
          for (const { stream, figures } of sources.qoe().streams) set(this, stream, figures);
        },
      });
    };
    perStream('glasscast_qoe_viewers_reporting', 'Viewers whose player reported in the last 5 minutes.', (g, stream, f) => g.set({ stream }, f.viewers));
    perStream('glasscast_qoe_rebuffer_ratio', 'Time stalled over time stalled plus playing, reported by players (0–1).', (g, stream, f) => g.set({ stream }, f.rebufferRatio));
    perStream('glasscast_qoe_join_seconds', 'Time from starting to play to the first frame, as players report it (quantile 0.5 and 0.95).', (g, stream, f) => {
      if (!f.joinMs) return;
      g.set({ stream, quantile: '0.5' }, f.joinMs.p50 / 1000);
      g.set({ stream, quantile: '0.95' }, f.joinMs.p95 / 1000);
    }, true);
    perStream('glasscast_qoe_latency_seconds', 'Distance from the live edge, as players estimate it (quantile 0.5 and 0.95).', (g, stream, f) => {
      if (!f.latencyMs) return;
      g.set({ stream, quantile: '0.5' }, f.latencyMs.p50 / 1000);
      g.set({ stream, quantile: '0.95' }, f.latencyMs.p95 / 1000);
    }, true);
    perStream('glasscast_p2p_offload_ratio', 'Venue mode: segment bytes players received from other viewers over all segment bytes they received (0–1).', (g, stream, f) => {
      if (f.p2p) g.set({ stream }, f.p2p.offload);
    });
    perStream('glasscast_p2p_viewers_reporting', 'Venue-mode viewers whose player reported in the last 5 minutes.', (g, stream, f) => g.set({ stream }, f.p2p?.viewers ?? 0));
    new Counter({
      name: 'glasscast_qoe_beacons_total',
      help: 'QoE beacons received from players.',
      registers: r,
      collect() {
        this.reset();
        this.inc(sources.qoe().beacons);
      },
    });
  }

  /** Adds the recorder and upload series. */
  private recording(sources: MetricsSources): void {
    const r = [this.registry];
    new Gauge({
      name: 'glasscast_recordings_active',
      help: 'Recordings in progress.',
      registers: r,
      collect() {
        this.set(sources.recording().active);
      },
    });
    new Counter({
      name: 'glasscast_recorder_events_total',
      help: 'Recorder events by kind: segmentsWritten, bytesWritten, writeFailures, stoppedForDiskSpace, deletedByRetention.',
      labelNames: ['kind'],
      registers: r,
      collect() {
        this.reset();
        for (const [kind, n] of Object.entries(sources.recording().counters)) this.inc({ kind }, n);
      },
    });
    new Counter({
      name: 'glasscast_uploads_total',
      help: 'S3 uploads by kind: uploaded (files), bytesUploaded, failures (attempts that will be retried).',
      labelNames: ['kind'],
      registers: r,
      async collect() {
        this.reset();
        for (const [kind, n] of Object.entries((await sources.uploads())?.counters ?? {})) this.inc({ kind }, n);
      },
    });
    new Gauge({
      name: 'glasscast_uploads_pending',
      help: 'Files waiting in the S3 upload queue.',
      registers: r,
      async collect() {
        this.set((await sources.uploads())?.pending ?? 0);
      },
    });
  }

  /** Adds the SRT series (one per live SRT publisher's stream; a stream has one publisher). */
  private srt(sources: MetricsSources): void {
    const r = [this.registry];
    new Gauge({
      name: 'glasscast_srt_rtt_seconds',
      help: 'Round-trip time of the SRT publisher session (ACK/ACKACK), seconds.',
      labelNames: ['stream'],
      registers: r,
      collect() {
        this.reset();
        for (const s of sources.srtSessions()) this.set({ stream: s.stream }, s.rttMs / 1000);
      },
    });
    new Gauge({
      name: 'glasscast_srt_latency_seconds',
      help: 'Negotiated SRT latency (TSBPD delay) of the publisher session, seconds.',
      labelNames: ['stream'],
      registers: r,
      collect() {
        this.reset();
        for (const s of sources.srtSessions()) this.set({ stream: s.stream }, s.latencyMs / 1000);
      },
    });
    new Gauge({
      name: 'glasscast_srt_receive_bits_per_second',
      help: 'Payload received by the SRT publisher session over the last second, bits/s.',
      labelNames: ['stream'],
      registers: r,
      collect() {
        this.reset();
        for (const s of sources.srtSessions()) this.set({ stream: s.stream }, s.stats.bitsPerSecond);
      },
    });
    new Counter({
      name: 'glasscast_srt_packets_total',
      help: 'Packets of the SRT publisher session: received, lost (gaps seen), retransmitted (recovered), dropped (too late).',
      labelNames: ['stream', 'kind'],
      registers: r,
      collect() {
        this.reset();
        for (const s of sources.srtSessions()) {
          this.inc({ stream: s.stream, kind: 'received' }, s.stats.packetsReceived);
          this.inc({ stream: s.stream, kind: 'lost' }, s.stats.packetsLost);
          this.inc({ stream: s.stream, kind: 'retransmitted' }, s.stats.packetsRetransmitted);
          this.inc({ stream: s.stream, kind: 'dropped' }, s.stats.packetsDropped);
        }
      },
    });
  }

  /** The exposition text and its content type. */
  async render(): Promise<{ text: string; contentType: string }> {
    return { text: await this.registry.metrics(), contentType: this.registry.contentType };
  }
}
