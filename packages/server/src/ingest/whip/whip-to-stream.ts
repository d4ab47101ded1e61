/**
 * Maps one WHIP publisher's RTP into a core Stream (the receiving half of RFC 6184 / RFC 7587): a reorder
 * buffer per track, generic NACKs for gaps (RFC 4585 §6.2.1), H.264 access units reassembled from single NAL,
 * STAP-A and FU-A payloads and cut at the marker bit, SPS/PPS turned into the track configuration, and Opus
 * packets passed as they are. A frame that lost a packet for good is dropped and the stream waits for the next
 * keyframe, asking for it with a PLI. Receiver Reports and REMB (draft-alvestrand-rmcat-remb) tell the browser
 * how its packets arrive and how much it may send.
 *
 * Timestamps: video in 90 kHz ticks, audio in 48 kHz samples, both from one origin (the arrival of the first
 * packet), each track's RTP clock mapped to that origin by its first packet's arrival time.
 */
import type { Logger } from '../../core/logger.js';
import type { PublisherSession } from '../../core/stream.js';
import type { AudioTrack, Track, VideoTrack } from '../../core/track.js';
import { sameTracks } from '../../core/track.js';
import { AUDIO_CODECS, VIDEO_CODECS } from '../../media/codecs/codec-table.js';
import { buildAvcConfig, H264_NAL } from '../../media/codecs/h264.js';
import { buildOpusHead } from '../../media/codecs/opus.js';
import { MediaParseError } from '../../media/errors.js';
import { readSenderReport, writeNack, writePli, writeReceiverReport, writeRemb, type ReportBlock } from '../../media/rtp/rtcp.js';
import { depacketizeH264 } from '../../media/rtp/h264-packetizer.js';
import { readRtpPacket } from '../../media/rtp/rtp-packet.js';
import { unwrap } from '../../media/time/timescale.js';

export type MediaKind = 'video' | 'audio';

/** Options of one WHIP publish. */
export interface WhipToStreamOptions {
  /** Payload types the answer gave each track. */
  payloadTypes: Partial<Record<MediaKind, number>>;
  /** Opus channels from the offer's rtpmap (`opus/48000/2`). */
  opusChannels: number;
  /** The SSRC our RTCP (RR, NACK, PLI, REMB) is sent from. */
  ssrc: number;
  /** Bitrate announced with REMB, bits/s: the most the publisher should send. */
  maxBitrate: number;
  /** Longest interval between keyframes before a PLI asks for one (LL-HLS cuts segments at keyframes), ms. */
  keyframeIntervalMs: number;
  /** Sends an RTCP packet back to the publisher on the track of `kind`. */
  sendRtcp(kind: MediaKind, packet: Buffer): void;
}

/** How long a gap may stay open while NACKed packets are awaited before the frame is given up, ms. */
const GAP_WAIT_MS = 200;
/** Packets held in a reorder buffer at most (about 1 s of 5 Mb/s video). */
const MAX_REORDER_PACKETS = 512;
/** Packets in one access unit at most (an 8 MiB frame in 1200-byte packets is far beyond any WebRTC frame). */
const MAX_PACKETS_PER_FRAME = 4096;
/** Minimum interval between two PLIs, ms. */
const PLI_MIN_INTERVAL_MS = 300;
/** Interval of Receiver Reports and REMB, ms. */
const REPORT_INTERVAL_MS = 1000;

interface ReceivedPacket {
  sequence: number;
  timestamp: number;
  marker: boolean;
  payload: Uint8Array;
}

/** Per-track reception state. */
class TrackReceiver {
  ssrc: number | undefined;
  /** Next extended sequence number to hand on. */
  next: number | undefined;
  highest: number | undefined;
  private readonly buffer = new Map<number, ReceivedPacket>();
  /** Missing sequence numbers: when first missed, when last NACKed. */
  private readonly missing = new Map<number, { since: number; nackedAt: number }>();
  received = 0;
  lost = 0;
  private expectedAtReport = 0;
  private receivedAtReport = 0;
  /** First extended sequence number seen. */
  base: number | undefined;
  lastSenderReport: { ntpMiddle: number; at: number } | undefined;
  /** Jitter estimate (RFC 3550 §6.4.1), RTP units. */
  jitter = 0;
  private lastTransit: number | undefined;

  constructor(
    readonly kind: MediaKind,
    readonly clockRate: number,
  ) {}

  /**
   * Adds a packet; returns the packets now in order, with a `gap` flag where packets were given up just
   * before one. Duplicates and packets older than the playout point are ignored.
   */
  push(p: ReceivedPacket, arrivalMs: number, out: (p: ReceivedPacket, gapBefore: boolean) => void): void {
    const seq = unwrap(this.highest, p.sequence, 16);
    p.sequence = seq;
    this.base ??= seq;
    this.next ??= seq;
    const transit = (arrivalMs * this.clockRate) / 1000 - p.timestamp;
    if (this.lastTransit !== undefined) this.jitter += (Math.abs(transit - this.lastTransit) - this.jitter) / 16;
    this.lastTransit = transit;
    if (seq < this.next || this.buffer.has(seq)) return;
    this.received++;
    this.missing.delete(seq);
    if (this.highest === undefined || seq > this.highest) {
      for (let s = (this.highest ?? seq - 1) + 1; s < seq && this.missing.size < MAX_REORDER_PACKETS; s++) {
        this.missing.set(s, { since: arrivalMs, nackedAt: Number.NEGATIVE_INFINITY });
      }
      this.highest = seq;
    }
    this.buffer.set(seq, p);
    this.drain(arrivalMs, out);
  }

  /** Hands on packets in order; gives up on a gap that waited too long or when the buffer is full. */
  drain(nowMs: number, out: (p: ReceivedPacket, gapBefore: boolean) => void): void {
    let gap = false;
    while (this.next !== undefined && this.highest !== undefined && this.next <= this.highest) {
      const p = this.buffer.get(this.next);
      if (p) {
        this.buffer.delete(this.next);
        this.next++;
        out(p, gap);
        gap = false;
        continue;
      }
      const miss = this.missing.get(this.next);
      const expired = !miss || nowMs - miss.since > GAP_WAIT_MS || this.buffer.size > MAX_REORDER_PACKETS;
      if (!expired) break;
      this.missing.delete(this.next);
      this.lost++;
      this.next++;
      gap = true;
    }
  }

  /** Sequence numbers (16-bit) to NACK now: missing ones not NACKed in the last `retryMs`. */
  nacks(nowMs: number, retryMs: number): number[] {
    const out: number[] = [];
    for (const [seq, m] of this.missing) {
      if (nowMs - m.nackedAt < retryMs) continue;
      m.nackedAt = nowMs;
      out.push(seq & 0xffff);
    }
    return out;
  }

  /** The report block for a Receiver Report (RFC 3550 §6.4.1). */
  report(nowMs: number): ReportBlock | undefined {
    if (this.ssrc === undefined || this.base === undefined || this.highest === undefined) return undefined;
    const expected = this.highest - this.base + 1;
    const expectedInterval = expected - this.expectedAtReport;
    const receivedInterval = this.received - this.receivedAtReport;
    this.expectedAtReport = expected;
    this.receivedAtReport = this.received;
    const lostInterval = expectedInterval - receivedInterval;
    const sr = this.lastSenderReport;
    return {
      ssrc: this.ssrc,
      fractionLost: expectedInterval > 0 && lostInterval > 0 ? lostInterval / expectedInterval : 0,
      cumulativeLost: expected - this.received,
      extendedHighestSequence: this.highest,
      jitter: this.jitter,
      lastSenderReport: sr?.ntpMiddle ?? 0,
      delaySinceLastSenderReport: sr ? Math.round(((nowMs - sr.at) / 1000) * 65536) : 0,
    };
  }
}

/** Maps a WHIP publisher's RTP into `stream`. Call `tick()` every 50–100 ms; `end()` when the publish stops. */
export class WhipToStream {
  private readonly receivers: Record<MediaKind, TrackReceiver> = { video: new TrackReceiver('video', 90_000), audio: new TrackReceiver('audio', 48_000) };
  private video: VideoTrack | undefined;
  private audio: AudioTrack | undefined;
  private started = false;
  private ended = false;
  /** Current access unit being assembled. */
  private frame: { timestamp: number; payloads: Uint8Array[]; broken: boolean } | undefined;
  private needKeyframe = true;
  private sps: Uint8Array | undefined;
  private pps: Uint8Array | undefined;
  /** Wall-clock origin of the stream timeline, ms, and each track's RTP timestamp at its first packet. */
  private originMs: number | undefined;
  private readonly clock: Partial<Record<MediaKind, { firstRtp: number; firstMs: number; last: number | undefined }>> = {};
  private lastPliAt = 0;
  private lastKeyframeAt = 0;
  private lastReportAt = 0;
  /** Wall clock of the last RTP packet, ms (a publisher that stops sending is detected from it). */
  lastPacketAt = Date.now();
  /** Counters for stats and logs. */
  readonly stats = { packets: 0, lostPackets: 0, droppedFrames: 0, plisSent: 0, nacksSent: 0, frames: 0 };

  constructor(
    private readonly publisher: PublisherSession,
    private readonly log: Logger,
    private readonly options: WhipToStreamOptions,
  ) {
    if (options.payloadTypes.audio !== undefined) {
      const config = buildOpusHead(options.opusChannels);
      this.audio = { kind: 'audio', id: 2, codec: 'opus', timescale: 48_000, config, info: AUDIO_CODECS.opus.parseConfig(config) };
    }
  }

  /** Handles one RTP packet of the track of `kind`. Malformed packets are counted and skipped. */
  onRtp(kind: MediaKind, packet: Buffer, nowMs = Date.now()): void {
    if (this.ended) return;
    let rtp;
    try {
      rtp = readRtpPacket(packet);
    } catch (err) {
      if (err instanceof MediaParseError) return;
      throw err;
    }
    if (rtp.payloadType !== this.options.payloadTypes[kind]) return;
    const receiver = this.receivers[kind];
    if (receiver.ssrc !== undefined && receiver.ssrc !== rtp.ssrc) return; // one SSRC per track; others (e.g. RTX) ignored
    receiver.ssrc = rtp.ssrc;
    this.stats.packets++;
    this.lastPacketAt = nowMs;
    this.originMs ??= nowMs;
    const p: ReceivedPacket = { sequence: rtp.sequenceNumber, timestamp: rtp.timestamp, marker: rtp.marker, payload: rtp.payload };
    if (kind === 'video') receiver.push(p, nowMs, (q, gap) => this.onVideoPacket(q, gap, nowMs));
    else receiver.push(p, nowMs, (q) => this.onAudioPacket(q, nowMs));
  }

  /** Handles an RTCP packet from the publisher (its Sender Reports feed our Receiver Reports' LSR/DLSR). */
  onRtcp(packet: Buffer, nowMs = Date.now()): void {
    const sr = readSenderReport(packet);
    if (!sr) return;
    for (const r of Object.values(this.receivers)) if (r.ssrc === sr.ssrc) r.lastSenderReport = { ntpMiddle: sr.ntpMiddle, at: nowMs };
  }

  /** The stream timeline position of RTP timestamp `rtp` of `kind`, in that track's clock. */
  private ticks(kind: MediaKind, rtp: number, nowMs: number): number {
    const rate = this.receivers[kind].clockRate;
    const c = (this.clock[kind] ??= { firstRtp: rtp, firstMs: nowMs, last: undefined });
    const extended = unwrap(c.last, rtp, 32);
    c.last = extended;
    return extended - c.firstRtp + Math.round(((c.firstMs - this.originMs!) * rate) / 1000);
  }

  private onVideoPacket(p: ReceivedPacket, gapBefore: boolean, nowMs: number): void {
    if (gapBefore && this.frame) this.frame.broken = true;
    if (this.frame && this.frame.timestamp !== p.timestamp) {
      // The marker of the previous frame was lost: what we have of it is incomplete.
      this.frame.broken = true;
      this.finishFrame(nowMs);
    }
    this.frame ??= { timestamp: p.timestamp, payloads: [], broken: gapBefore };
    if (this.frame.payloads.length < MAX_PACKETS_PER_FRAME) this.frame.payloads.push(p.payload);
    else this.frame.broken = true;
    if (p.marker) this.finishFrame(nowMs);
  }

  private finishFrame(nowMs: number): void {
    const frame = this.frame;
    this.frame = undefined;
    if (!frame) return;
    const nals = depacketizeH264(frame.payloads);
    const keyframe = nals.some((n) => (n[0]! & 0x1f) === H264_NAL.idr);
    if (frame.broken || nals.length === 0) {
      this.stats.droppedFrames++;
      this.needKeyframe = true;
      this.requestKeyframe(nowMs);
      return;
    }
    for (const n of nals) {
      const type = n[0]! & 0x1f;
      if (type === H264_NAL.sps) this.sps = Buffer.from(n);
      else if (type === H264_NAL.pps) this.pps = Buffer.from(n);
    }
    if (this.needKeyframe && !keyframe) {
      this.stats.droppedFrames++;
      this.requestKeyframe(nowMs);
      return;
    }
    if (keyframe) {
      this.needKeyframe = false;
      this.lastKeyframeAt = nowMs;
      if (!this.updateVideoTrack()) return;
    }
    if (!this.started || !this.video) return;
    const payload = nals.filter((n) => {
      const t = n[0]! & 0x1f;
      return t !== H264_NAL.sps && t !== H264_NAL.pps && t !== H264_NAL.aud;
    });
    const ts = this.ticks('video', frame.timestamp, nowMs);
    this.stats.frames++;
    // NAL units are views into packets the WebRTC library gave us (fresh buffers each): no copy needed.
    this.publisher.publish({ trackId: this.video.id, dts: ts, pts: ts, keyframe, payload });
  }

  /** Builds the video track from the latest SPS/PPS; starts (or restarts) the stream session when it changed. */
  private updateVideoTrack(): boolean {
    if (!this.sps || !this.pps) {
      this.log.warn({}, 'WHIP keyframe without SPS/PPS; waiting for the next one');
      this.needKeyframe = true;
      return false;
    }
    let track: VideoTrack;
    try {
      const config = buildAvcConfig([this.sps], [this.pps]);
      track = { kind: 'video', id: 1, codec: 'h264', timescale: 90_000, config, info: VIDEO_CODECS.h264.parseConfig(config) };
    } catch (err) {
      this.log.warn({ err }, 'WHIP publisher sent an unreadable SPS; waiting for the next keyframe');
      this.needKeyframe = true;
      return false;
    }
    const tracks: Track[] = this.audio ? [track, this.audio] : [track];
    if (this.started && this.video && sameTracks([this.video], [track])) return true;
    if (this.started) {
      // A new resolution (the browser adapted) needs new track configuration: a new session, continuous timeline.
      this.log.info({ from: `${this.video?.info.width}x${this.video?.info.height}`, to: `${track.info.width}x${track.info.height}` }, 'WHIP video configuration changed');
    }
    this.video = track;
    this.publisher.start(tracks);
    this.started = true;
    return true;
  }

  private onAudioPacket(p: ReceivedPacket, nowMs: number): void {
    const ts = this.ticks('audio', p.timestamp, nowMs);
    if (!this.started || !this.audio || p.payload.length === 0) return;
    this.publisher.publish({ trackId: this.audio.id, dts: ts, pts: ts, keyframe: true, payload: [p.payload] });
  }

  /** Sends a PLI for the video track (rate-limited). Returns false when it could not be sent now. */
  requestKeyframe(nowMs = Date.now()): boolean {
    const ssrc = this.receivers.video.ssrc;
    if (ssrc === undefined || this.ended || nowMs - this.lastPliAt < PLI_MIN_INTERVAL_MS) return false;
    this.lastPliAt = nowMs;
    this.stats.plisSent++;
    this.options.sendRtcp('video', writePli(this.options.ssrc, ssrc));
    return true;
  }

  /** Periodic work: gap timeouts, NACKs, PLIs for the keyframe interval, Receiver Reports and REMB. */
  tick(nowMs = Date.now()): void {
    if (this.ended) return;
    this.receivers.video.drain(nowMs, (q, gap) => this.onVideoPacket(q, gap, nowMs));
    this.receivers.audio.drain(nowMs, (q) => this.onAudioPacket(q, nowMs));
    for (const kind of ['video', 'audio'] as const) {
      const r = this.receivers[kind];
      const seqs = r.ssrc === undefined ? [] : r.nacks(nowMs, 50);
      if (seqs.length > 0 && r.ssrc !== undefined) {
        this.stats.nacksSent += seqs.length;
        this.options.sendRtcp(kind, writeNack(this.options.ssrc, r.ssrc, seqs));
      }
    }
    if (this.needKeyframe || (this.started && nowMs - this.lastKeyframeAt > this.options.keyframeIntervalMs)) this.requestKeyframe(nowMs);
    if (nowMs - this.lastReportAt >= REPORT_INTERVAL_MS) {
      this.lastReportAt = nowMs;
      for (const kind of ['video', 'audio'] as const) {
        const block = this.receivers[kind].report(nowMs);
        if (!block) continue;
        const rr = writeReceiverReport(this.options.ssrc, [block]);
        const ssrcs = Object.values(this.receivers).flatMap((r) => (r.ssrc === undefined ? [] : [r.ssrc]));
        this.options.sendRtcp(kind, kind === 'video' ? Buffer.concat([rr, writeRemb(this.options.ssrc, this.options.maxBitrate, ssrcs)]) : rr);
      }
    }
    this.stats.lostPackets = this.receivers.video.lost + this.receivers.audio.lost;
  }

  /**
   * The publish stopped: the stream enters its reconnect grace (`close` true: ends it now; a publish that never
   * sent a keyframe ends it too, so the name is free again). Idempotent.
   */
  end(reason: string, close = false): void {
    if (this.ended) return;
    this.ended = true;
    this.publisher.close(reason, { endStream: close });
  }
}
