/**
 * Stream → RTP, once per stream (DESIGN.md: "packetize once per stream; per viewer only rewrite headers"). Every
 * viewer of a stream gets the very same RTP packets (one SSRC and sequence per track), so the per-viewer cost is
 * one send call per packet. A new viewer first gets the packets of the current GOP, so it starts on a keyframe
 * without waiting for the next one.
 */
import { randomInt } from 'node:crypto';
import type { AccessUnit } from '../../core/access-unit.js';
import type { Logger } from '../../core/logger.js';
import type { SessionStart, StreamSink } from '../../core/subscriber.js';
import type { Track } from '../../core/track.js';
import { parseAvcConfig } from '../../media/codecs/h264.js';
import { packetizeH264 } from '../../media/rtp/h264-packetizer.js';
import { writeSenderReport } from '../../media/rtp/rtcp.js';
import { writeRtpPacket } from '../../media/rtp/rtp-packet.js';

/** The kinds of media a viewer receives. */
export type MediaKind = 'video' | 'audio';

/** A viewer as the source sees it: something that takes packets per media kind. */
export interface RtpViewer {
  sendPacket(kind: MediaKind, packet: Buffer): void;
}

/** Limit of the GOP packet cache, so a source without keyframes cannot grow memory without bound. */
const GOP_CACHE_MAX_PACKETS = 8192;
/** Interval between RTCP sender reports, ms. */
const SR_INTERVAL_MS = 1000;

interface RtpTrackState {
  kind: MediaKind;
  ssrc: number;
  payloadType: number;
  clockRate: number;
  sequence: number;
  /** Added to (timestamp in clock units) so timestamps stay continuous across publisher sessions. */
  offset: number | undefined;
  lastRtpTimestamp: number;
  /** Wall time (epoch ms) at which `lastRtpTimestamp` was captured, for sender reports. */
  lastWallMs: number;
  packets: number;
  octets: number;
}

/** What the source currently carries, for offer/answer. */
export interface WhepSourceInfo {
  video: { profileIdc: number; profileLevelId: string; clockRate: number; ssrc: number } | undefined;
  audio: { clockRate: number; channels: number; ssrc: number } | undefined;
  /** True when the video has B-frames (WebRTC has no decode timestamps; see issue notes). */
  hasBFrames: boolean;
}

/** Packetizes one stream for all its WHEP viewers. `close()` is idempotent. */
export class WhepSource implements StreamSink {
  private videoTrack: Track | undefined;
  private parameterSets: Uint8Array[] = [];
  private readonly rtp: Record<MediaKind, RtpTrackState>;
  private readonly viewers = new Set<RtpViewer>();
  private gop: { kind: MediaKind; packet: Buffer }[] = [];
  private srTimer: NodeJS.Timeout | undefined;
  private hasBFrames = false;
  private live = false;
  private closed = false;

  constructor(
    readonly streamName: string,
    private readonly log: Logger,
  ) {
    const state = (kind: MediaKind, payloadType: number, clockRate: number): RtpTrackState => ({
      kind,
      ssrc: randomInt(1, 2 ** 32 - 1),
      payloadType,
      clockRate,
      sequence: randomInt(0, 0xffff),
      offset: undefined,
      lastRtpTimestamp: 0,
      lastWallMs: 0,
      packets: 0,
      octets: 0,
    });
    // Payload types are rewritten per viewer only if the viewer's offer numbered them differently.
    this.rtp = { video: state('video', 96, 90_000), audio: state('audio', 111, 48_000) };
  }

  /** Codec facts for answering offers; undefined before the stream has a playable video track. */
  info(): WhepSourceInfo | undefined {
    const v = this.videoTrack;
    if (!this.live || !v || v.kind !== 'video' || v.codec !== 'h264') return undefined;
    const sps = this.parameterSets.find((n) => (n[0]! & 0x1f) === 7);
    const hex = (n: number): string => n.toString(16).padStart(2, '0');
    return {
      video: {
        profileIdc: sps?.[1] ?? 0x42,
        profileLevelId: sps ? `${hex(sps[1]!)}${hex(sps[2]!)}${hex(sps[3]!)}` : '42e01f',
        clockRate: 90_000,
        ssrc: this.rtp.video.ssrc,
      },
      audio: undefined,
      hasBFrames: this.hasBFrames,
    };
  }

  /** Payload type the source writes for `kind`. */
  payloadType(kind: MediaKind): number {
    return this.rtp[kind].payloadType;
  }

  /** Adds a viewer; it gets the current GOP at once, then live packets. */
  addViewer(viewer: RtpViewer): void {
    this.viewers.add(viewer);
    for (const { kind, packet } of this.gop) viewer.sendPacket(kind, packet);
    this.sendSenderReports([viewer]);
  }

  /** Removes a viewer. */
  removeViewer(viewer: RtpViewer): void {
    this.viewers.delete(viewer);
  }

  /** Number of viewers. */
  get viewerCount(): number {
    return this.viewers.size;
  }

  // ---- StreamSink -------------------------------------------------------------------------------------------

  onSessionStart(start: SessionStart): void {
    this.videoTrack = start.tracks.find((t) => t.kind === 'video');
    this.parameterSets = [];
    if (this.videoTrack?.kind === 'video' && this.videoTrack.codec === 'h264') {
      const cfg = parseAvcConfig(this.videoTrack.config);
      this.parameterSets = [...cfg.sps, ...cfg.pps];
    }
    // Timestamps of a new session restart anywhere: re-anchor so RTP time keeps increasing for viewers.
    for (const kind of ['video', 'audio'] as const) this.rtp[kind].offset = undefined;
    this.gop = [];
    this.hasBFrames = false;
    this.live = true;
    this.srTimer ??= setInterval(() => this.sendSenderReports(this.viewers), SR_INTERVAL_MS);
    this.srTimer.unref();
  }

  onAccessUnit(au: AccessUnit): void {
    const track = this.videoTrack;
    if (!track || au.trackId !== track.id || track.kind !== 'video' || track.codec !== 'h264') return;
    if (au.pts !== au.dts) this.hasBFrames = true;
    const state = this.rtp.video;
    // WebRTC carries presentation time only (RFC 6184 §5.1: the RTP timestamp is the sampling time).
    state.offset ??= state.packets === 0 ? randomInt(0, 2 ** 31) - au.pts : state.lastRtpTimestamp + 3000 - au.pts;
    const timestamp = (au.pts + state.offset) % 2 ** 32;
    const packets = packetizeH264(au.payload, au.keyframe ? this.parameterSets : []).map(({ payload, marker }) =>
      writeRtpPacket({ payloadType: state.payloadType, sequenceNumber: state.sequence++ & 0xffff, timestamp: timestamp >>> 0, ssrc: state.ssrc, marker }, payload),
    );
    state.lastRtpTimestamp = timestamp;
    state.lastWallMs = Date.now();
    if (au.keyframe) this.gop = [];
    if (this.gop.length + packets.length <= GOP_CACHE_MAX_PACKETS) for (const packet of packets) this.gop.push({ kind: 'video', packet });
    for (const packet of packets) {
      state.packets++;
      state.octets += packet.length - 12;
      for (const viewer of this.viewers) viewer.sendPacket('video', packet);
    }
  }

  onPublisherLost(): void {
    this.gop = [];
  }

  onEnd(): void {
    this.live = false;
    this.close();
  }

  private sendSenderReports(viewers: Iterable<RtpViewer>): void {
    for (const kind of ['video', 'audio'] as const) {
      const s = this.rtp[kind];
      if (s.packets === 0) continue;
      // Extrapolate the RTP clock to now from the last packet's capture, on the same wall clock for both tracks.
      const now = Date.now();
      const rtpNow = (s.lastRtpTimestamp + Math.round(((now - s.lastWallMs) * s.clockRate) / 1000)) % 2 ** 32;
      const sr = writeSenderReport(s.ssrc, now, rtpNow, s.packets, s.octets);
      for (const v of viewers) v.sendPacket(kind, sr);
    }
  }

  /** Stops sending reports and forgets viewers. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.srTimer);
    this.viewers.clear();
    this.gop = [];
  }
}
