/**
 * Stream → RTP, once per stream (DESIGN.md: "packetize once per stream; per viewer only rewrite headers"). Every
 * viewer of a stream gets the very same RTP packets (one SSRC and sequence per track), so the per-viewer cost is
 * one send call per packet. A new viewer first gets the video packets of the current GOP, so it starts on a
 * keyframe without waiting for the next one; its audio starts live.
 *
 * One source per stream of the rendition group: the group's source (the *leader*: its RTP timing is every
 * rendition's, and it carries the audio) and one per video rendition (video only). This egress transcodes
 * nothing: Opus comes from the source itself (WHIP) or from the group's Opus rendition ({@link attachAudio}),
 * and B-frame sources are watched on their B-frame-free rendition (the server picks it).
 */
import { randomInt } from 'node:crypto';
import type { AccessUnit } from '../../core/access-unit.js';
import type { RenditionRole } from '../../core/stream.js';
import type { SessionStart, StreamSink } from '../../core/subscriber.js';
import type { Track } from '../../core/track.js';
import { parseAvcConfig } from '../../media/codecs/h264.js';
import { opusPacketSamples } from '../../media/formats/ogg.js';
import { packetizeH264 } from '../../media/rtp/h264-packetizer.js';
import { writeSenderReport } from '../../media/rtp/rtcp.js';
import { writeRtpPacket } from '../../media/rtp/rtp-packet.js';

/** The kinds of media a viewer receives. */
export type MediaKind = 'video' | 'audio';

/** A viewer as the source sees it: something that takes packets per media kind. */
export interface RtpViewer {
  /** Payload type this viewer negotiated for `kind` (packets are delivered already carrying it). */
  payloadType(kind: MediaKind): number | undefined;
  /**
   * Takes one packet from `from`. `keyframeStart` marks the first packet of a keyframe (where a viewer may switch
   * to this source from another rendition).
   */
  sendPacket(kind: MediaKind, packet: Buffer, from: WhepSource, keyframeStart: boolean): void;
  /** The source's publisher (or transcoder) went away: a viewer watching a rendition moves back to the source. */
  sourceLost?(from: WhepSource): void;
}

/** For a rendition's source: the group's source it shares RTP timing with, and the rendition's name. */
export interface WhepSourceGroup {
  /** The source of the stream as published: RTP timestamps and sender reports of every rendition follow it. */
  leader: WhepSource;
  /** Rendition name (`720p`, `webrtc`…). */
  rendition: string;
  /** What the rendition is for (a ladder rung, or the source's B-frame-free copy). */
  role: RenditionRole;
}

/** `packet` with its RTP payload type set to `payloadType` (a copy, unless it already has it or is RTCP). */
export function withPayloadType(packet: Buffer, payloadType: number | undefined): Buffer {
  if (payloadType === undefined || (packet[1]! >= 192 && packet[1]! <= 223) || (packet[1]! & 0x7f) === payloadType) return packet;
  const out = Buffer.from(packet);
  out[1] = (packet[1]! & 0x80) | payloadType;
  return out;
}

/** Limit of the GOP packet cache, so a source without keyframes cannot grow memory without bound. */
const GOP_CACHE_MAX_PACKETS = 8192;
/** Packets kept per track for retransmission on NACK (shared by all viewers: they share sequence numbers). */
const HISTORY_SIZE = 2048;
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
  packets: number;
  octets: number;
  /** Sent packets by sequence number modulo HISTORY_SIZE (RFC 4585 generic NACK answers come from here). */
  history: (Buffer | undefined)[];
}

/** What the source currently carries, for offer/answer. */
export interface WhepSourceInfo {
  video: { profileIdc: number; profileLevelId: string; clockRate: number; ssrc: number } | undefined;
  audio: { clockRate: number; channels: number; ssrc: number } | undefined;
}

/** Packetizes one stream for all its WHEP viewers. `close()` is idempotent. */
export class WhepSource implements StreamSink {
  private videoTrack: Track | undefined;
  private parameterSets: Uint8Array[] = [];
  private readonly rtp: Record<MediaKind, RtpTrackState>;
  private readonly viewers: Record<MediaKind, Set<RtpViewer>> = { video: new Set(), audio: new Set() };
  /** Video bits/s measured over the last window, and the window being counted. */
  private measured = { bitrate: 0, windowStart: 0, windowOctets: 0 };
  private gop: { kind: MediaKind; packet: Buffer }[] = [];
  private srTimer: NodeJS.Timeout | undefined;
  private live = false;
  private closed = false;
  private audioTrack: Track | undefined;
  /** True while the group's Opus rendition feeds this source's audio ({@link attachAudio}). */
  private attachedAudio = false;
  /** Per-packet scratch: the packet patched for each payload type (reused to spare an allocation per packet). */
  private readonly variants = new Map<number | undefined, Buffer>();
  /** Wall clock ↔ stream timeline (90 kHz ticks) of this session, shared by both tracks' sender reports. */
  private anchor: { wallMs: number; ticks: number } | undefined;

  constructor(
    readonly streamName: string,
    /** Set for a rendition: video only, timed like the group's source. */
    readonly group?: WhepSourceGroup,
  ) {
    const state = (kind: MediaKind, payloadType: number, clockRate: number): RtpTrackState => ({
      kind,
      ssrc: randomInt(1, 2 ** 32 - 1),
      payloadType,
      clockRate,
      sequence: randomInt(0, 0xffff),
      offset: undefined,
      lastRtpTimestamp: 0,
      packets: 0,
      octets: 0,
      history: new Array<Buffer | undefined>(HISTORY_SIZE),
    });
    // Payload types are rewritten per viewer only if the viewer's offer numbered them differently.
    this.rtp = { video: state('video', 96, 90_000), audio: state('audio', 111, 48_000) };
  }

  /**
   * Codec facts for answering offers: H.264 video when the stream has it, Opus audio when the stream's audio is
   * Opus or the group's Opus rendition feeds it; undefined while it has neither.
   */
  info(): WhepSourceInfo | undefined {
    if (!this.live) return undefined;
    const v = this.videoTrack;
    let video: WhepSourceInfo['video'];
    if (v?.kind === 'video' && v.codec === 'h264') {
      const sps = this.parameterSets.find((n) => (n[0]! & 0x1f) === 7);
      const hex = (n: number): string => n.toString(16).padStart(2, '0');
      video = { profileIdc: sps?.[1] ?? 0x42, profileLevelId: sps ? `${hex(sps[1]!)}${hex(sps[2]!)}${hex(sps[3]!)}` : '42e01f', clockRate: 90_000, ssrc: this.rtp.video.ssrc };
    } else if (v?.kind === 'video' && !this.group) {
      // An HEVC source: viewers get the group's H.264 copy (constrained baseline, transcode/video-job.ts).
      video = { profileIdc: 0x42, profileLevelId: '42e01f', clockRate: 90_000, ssrc: this.rtp.video.ssrc };
    }
    const opus = !this.group && ((this.audioTrack?.kind === 'audio' && this.audioTrack.codec === 'opus') || this.attachedAudio);
    const audio = opus ? { clockRate: 48_000, channels: 2, ssrc: this.rtp.audio.ssrc } : undefined;
    return video || audio ? { video, audio } : undefined;
  }

  /**
   * A reader for the group's Opus rendition (made from AAC once per stream by transcode/): its packets become
   * this source's audio, on the same timeline (48 kHz samples).
   */
  attachAudio(): StreamSink {
    return {
      onSessionStart: () => {
        this.attachedAudio = true;
      },
      onAccessUnit: (au) => {
        if (!this.attachedAudio || (this.audioTrack?.kind === 'audio' && this.audioTrack.codec === 'opus')) return;
        const p = au.payload[0];
        if (!p || p.length === 0) return;
        this.anchor ??= { wallMs: Date.now(), ticks: Math.round((au.dts * 90_000) / 48_000) };
        this.sendOpus(au.dts, Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      },
      onPublisherLost: () => {
        this.attachedAudio = false;
      },
      onEnd: () => {
        this.attachedAudio = false;
      },
    };
  }

  /** Payload type the source writes for `kind`. */
  payloadType(kind: MediaKind): number {
    return this.rtp[kind].payloadType;
  }

  /**
   * Adds a viewer for `kinds`; with `replay` it gets the current GOP's video at once (a new viewer starts on a
   * keyframe), then live packets. A viewer switching renditions joins without replay and waits for the next keyframe.
   */
  addViewer(viewer: RtpViewer, kinds: readonly MediaKind[] = ['video', 'audio'], replay = true): void {
    for (const kind of kinds) this.viewers[kind].add(viewer);
    if (replay) {
      for (const { kind, packet } of this.gop) {
        if (kinds.includes(kind)) viewer.sendPacket(kind, withPayloadType(packet, viewer.payloadType(kind)), this, false);
      }
    }
    this.sendSenderReports([viewer]);
  }

  /** RTP timestamp of the last video packet sent (the stream's timeline in 90 kHz, offset for RTP). */
  get lastVideoTimestamp(): number {
    return this.rtp.video.lastRtpTimestamp;
  }

  /** SSRC of the video packets. */
  get videoSsrc(): number {
    return this.rtp.video.ssrc;
  }

  /** Video bits/s over the last two seconds (what a viewer of this source receives). */
  get videoBitrate(): number {
    return this.measured.bitrate;
  }

  /** The packet of `kind` with `sequenceNumber`, if still in the history (for NACK retransmission). */
  retransmission(kind: MediaKind, sequenceNumber: number): Buffer | undefined {
    const packet = this.rtp[kind].history[sequenceNumber % HISTORY_SIZE];
    return packet && packet.readUInt16BE(2) === sequenceNumber ? packet : undefined;
  }

  /** Removes a viewer from `kinds` (default both). */
  removeViewer(viewer: RtpViewer, kinds: readonly MediaKind[] = ['video', 'audio']): void {
    for (const kind of kinds) this.viewers[kind].delete(viewer);
  }

  /** Number of viewers receiving video from this source. */
  get viewerCount(): number {
    return this.viewers.video.size;
  }

  // ---- StreamSink -------------------------------------------------------------------------------------------

  onSessionStart(start: SessionStart): void {
    this.videoTrack = start.tracks.find((t) => t.kind === 'video');
    this.audioTrack = start.tracks.find((t) => t.kind === 'audio');
    this.parameterSets = [];
    if (this.videoTrack?.kind === 'video' && this.videoTrack.codec === 'h264') {
      const cfg = parseAvcConfig(this.videoTrack.config);
      this.parameterSets = [...cfg.sps, ...cfg.pps];
    }
    // Timestamps of a new session restart anywhere: re-anchor so RTP time keeps increasing for viewers.
    for (const kind of ['video', 'audio'] as const) this.rtp[kind].offset = undefined;
    this.anchor = undefined;
    this.gop = [];
    this.live = true;
    this.srTimer ??= setInterval(() => this.sendSenderReports(new Set([...this.viewers.video, ...this.viewers.audio])), SR_INTERVAL_MS);
    this.srTimer.unref();
  }

  /**
   * RTP timestamp for `ticks` (stream timeline, in the track's RTP clock). The first packet of a session picks
   * the offset: random for the first session, continuing from the last timestamp after a publisher return.
   */
  private rtpTimestamp(state: RtpTrackState, ticks: number, step: number): number {
    // A rendition uses its source's offset: the same picture has the same RTP timestamp in every rendition, so a
    // viewer moved between them sees one continuous track.
    const leaderOffset = state.kind === 'video' ? this.group?.leader.rtp.video.offset : undefined;
    if (leaderOffset !== undefined) state.offset = leaderOffset;
    state.offset ??= state.packets === 0 ? randomInt(0, 2 ** 31) - ticks : state.lastRtpTimestamp + step - ticks;
    const ts = (((ticks + state.offset) % 2 ** 32) + 2 ** 32) % 2 ** 32;
    state.lastRtpTimestamp = ts;
    return ts;
  }

  private emit(kind: MediaKind, packets: Buffer[], keyframe: boolean): void {
    const state = this.rtp[kind];
    if (keyframe) this.gop = [];
    // The GOP cache starts at a keyframe and holds video only: a joining viewer needs the keyframe and what follows
    // to show a picture, but no old audio (any packet starts it). Replayed audio reached the browser as a burst
    // of up to a GOP of packets, which its jitter buffer read as that much network jitter: it then held ~150 ms
    // more audio, and video waited for it (lip sync) — the first viewer of a run joined at ~350 ms instead of ~200.
    if (kind === 'video' && this.gop.length + packets.length <= GOP_CACHE_MAX_PACKETS) for (const packet of packets) this.gop.push({ kind, packet });
    if (kind === 'video') this.measure(packets);
    const viewers = this.viewers[kind];
    let first = keyframe;
    for (const packet of packets) {
      state.packets++;
      state.octets += packet.length - 12;
      state.history[packet.readUInt16BE(2) % HISTORY_SIZE] = packet;
      // Viewers may number the codec differently: patch one copy per payload type, not one per viewer.
      const variants = this.variants;
      variants.clear();
      for (const viewer of viewers) {
        const pt = viewer.payloadType(kind);
        let out = variants.get(pt);
        if (!out) variants.set(pt, (out = withPayloadType(packet, pt)));
        viewer.sendPacket(kind, out, this, first);
      }
      first = false;
    }
  }

  private measure(packets: Buffer[]): void {
    const m = this.measured;
    const now = Date.now();
    for (const p of packets) m.windowOctets += p.length;
    if (m.windowStart === 0) m.windowStart = now;
    if (now - m.windowStart >= 2000) {
      m.bitrate = Math.round((m.windowOctets * 8 * 1000) / (now - m.windowStart));
      m.windowStart = now;
      m.windowOctets = 0;
    }
  }

  onAccessUnit(au: AccessUnit): void {
    const track = au.trackId === this.videoTrack?.id ? this.videoTrack : au.trackId === this.audioTrack?.id ? this.audioTrack : undefined;
    if (!track) return;
    this.anchor ??= { wallMs: Date.now(), ticks: Math.round((au.dts * 90_000) / track.timescale) };
    if (track.kind === 'audio') {
      // A rendition's viewers get audio from the group's source; AAC reaches viewers through the Opus rendition.
      if (this.group || track.codec !== 'opus') return;
      const p = au.payload[0] ?? new Uint8Array(0);
      this.sendOpus(au.dts, Buffer.from(p.buffer, p.byteOffset, p.byteLength));
      return;
    }
    if (track.codec === 'h264') this.sendVideo(au);
  }

  private sendVideo(au: AccessUnit): void {
    if (this.closed) return;
    const state = this.rtp.video;
    // WebRTC carries presentation time only (RFC 6184 §5.1: the RTP timestamp is the sampling time).
    const timestamp = this.rtpTimestamp(state, au.pts, 3000);
    const packets = packetizeH264(au.payload, au.keyframe ? this.parameterSets : []).map(({ payload, marker }) =>
      writeRtpPacket({ payloadType: state.payloadType, sequenceNumber: state.sequence++ & 0xffff, timestamp, ssrc: state.ssrc, marker }, payload),
    );
    this.emit('video', packets, au.keyframe);
  }

  /** Sends one Opus packet presented at `timestamp` (48 kHz samples on the stream's timeline). */
  private sendOpus(timestamp: number, payload: Buffer): void {
    if (this.closed) return;
    const state = this.rtp.audio;
    // After a publisher's return the timeline continues one packet after the last one (10 or 20 ms of Opus).
    const step = payload.length > 0 ? opusPacketSamples(payload) : 960;
    const packet = writeRtpPacket({ payloadType: state.payloadType, sequenceNumber: state.sequence++ & 0xffff, timestamp: this.rtpTimestamp(state, timestamp, step), ssrc: state.ssrc, marker: false }, payload);
    this.emit('audio', [packet], false);
  }

  onPublisherLost(): void {
    for (const v of [...this.viewers.video]) v.sourceLost?.(this);
    this.gop = [];
  }

  onEnd(): void {
    this.live = false;
    this.close();
  }

  private sendSenderReports(viewers: Iterable<RtpViewer>): void {
    // A rendition reports on its source's clock, so receivers line its video up with the source's audio.
    const anchor = this.group?.leader.anchor ?? this.anchor;
    if (!anchor) return;
    const now = Date.now();
    // Both tracks map "now" through the same timeline anchor, so the receiver can line audio up with video.
    const ticks = anchor.ticks + (now - anchor.wallMs) * 90;
    for (const kind of ['video', 'audio'] as const) {
      const s = this.rtp[kind];
      if (s.packets === 0 || s.offset === undefined) continue;
      const rtpNow = (((Math.round((ticks * s.clockRate) / 90_000) + s.offset) % 2 ** 32) + 2 ** 32) % 2 ** 32;
      const sr = writeSenderReport(s.ssrc, now, rtpNow, s.packets, s.octets);
      for (const v of viewers) v.sendPacket(kind, sr, this, false);
    }
  }

  /** Stops sending reports and forgets viewers. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.srTimer);
    this.viewers.video.clear();
    this.viewers.audio.clear();
    this.gop = [];
  }
}
