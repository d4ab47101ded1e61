/**
 * The sending side of SRT live mode (draft-sharabayko-srt-01 §4.5–4.8), for callers that play a stream
 * (`m=request`): the stream's access units, from its cached GOP on, are written as MPEG-TS (mpegts-muxer.ts) and
 * sent as 1316-byte payloads (7 TS packets, as libsrt callers send them), each a solo message stamped with the µs
 * since the session began — the receiver plays it that long after its first packet plus the agreed latency.
 *
 * Reliability: sent packets stay in a send buffer until ACKed; a NAK's loss list is resent at once (R flag set);
 * a packet older than the latency (+ one RTT) is given up — dropped from the buffer (send-side drop, §4.6) and
 * reported with a DROPREQ when the receiver still asks for it. Full ACKs are answered with ACKACK; their RTT
 * field is the session's RTT. Keepalives go out after a second without data; a silent peer is dropped after the
 * peer-idle timeout.
 */
import { randomInt } from 'node:crypto';
import type { RemoteInfo } from 'node:dgram';
import type { Logger } from '../../core/logger.js';
import type { Stream } from '../../core/stream.js';
import type { Subscriber } from '../../core/subscriber.js';
import { MpegTsMuxer } from '../../media/formats/mpegts-muxer.js';
import { cryptPayload, KEY_FLAGS, type StreamKeys } from './srt-crypto.js';
import { CONTROL, MSG_MODULO, parseAck, parseLossList, seqAdd, seqDiff, writeSrtControl, writeSrtData } from './srt-packet.js';

/** Payload bytes per data packet: 7 TS packets. */
const PAYLOAD = 1316;
/** Most packets kept for retransmission (~14 s at 6 Mb/s); older ones are given up first anyway. */
const MAX_SEND_BUFFER = 8192;
const KEEPALIVE_MS = 1000;
const TICK_MS = 100;
/** Most sequence numbers one NAK may ask for (a hostile loss list cannot make us resend the world). */
const MAX_NAK_PACKETS = 2048;

interface Sent {
  packet: Buffer;
  sentAt: number;
}

/** One caller playing a stream. */
export class SrtSendSession {
  readonly socketId = randomInt(1, 2 ** 31);
  readonly createdAt = Date.now();
  readonly role = 'request' as const;
  private readonly startUs = process.hrtime.bigint();
  private nextSequence: number;
  private messageNumber = 1;
  /** Sent, not yet ACKed packets by sequence number (insertion order = sequence order). */
  private readonly buffer = new Map<number, Sent>();
  private pending: Buffer = Buffer.alloc(0);
  private muxer: MpegTsMuxer | undefined;
  private readonly subscriber: Subscriber;
  private readonly timer: NodeJS.Timeout;
  private lastHeard = Date.now();
  private lastSent = 0;
  private closed = false;
  rttUs = 100_000;
  rttVarUs = 50_000;
  /** Who the caller's playback token named, if any (the listener sets it). */
  identity: { viewerId: string | undefined; tokenId: string | undefined; expiresAt: number } | undefined;
  readonly stats = { packetsSent: 0, bytesSent: 0, packetsRetransmitted: 0, packetsDropped: 0, naksReceived: 0, framesDropped: 0 };

  constructor(
    readonly peer: RemoteInfo,
    readonly peerSocketId: number,
    initialSequence: number,
    readonly latencyMs: number,
    readonly streamName: string,
    stream: Stream,
    private readonly send: (b: Buffer) => void,
    private readonly peerIdleTimeoutMs: number,
    private readonly log: Logger,
    private readonly onClose: (s: SrtSendSession, reason: string) => void,
    /** Encrypted playback: the caller's keys (its even key encrypts what we send, KK = even). */
    private readonly keys: StreamKeys | undefined,
  ) {
    this.nextSequence = initialSequence;
    // Subscribed first: a stream that ended meanwhile throws here, before a timer exists to leak.
    // The stream as published: players of TS take B-frames, HEVC and either audio codec.
    this.subscriber = stream.subscribe(
      {
        onSessionStart: (start) => {
          this.flush();
          this.muxer = new MpegTsMuxer(start.tracks);
          if (this.muxer.empty) this.log.warn({ stream: streamName }, 'SRT playback: the stream has no track MPEG-TS can carry');
        },
        onAccessUnit: (au) => {
          if (!this.muxer) return;
          this.queue(this.muxer.writeAccessUnit(au.trackId, au.dts, au.pts, au.keyframe, au.payload));
        },
        onPublisherLost: () => this.flush(),
        onEnd: (reason) => this.close(`stream ended: ${reason}`),
      },
      { label: 'srt', maxLagMs: Math.max(1000, latencyMs * 4) },
    );
    this.timer = setInterval(() => this.tick(), TICK_MS);
  }

  /** Frames the subscriber dropped because this caller fell behind. */
  get droppedFrames(): number {
    return this.subscriber.droppedFrames;
  }

  private nowUs(): number {
    return Number((process.hrtime.bigint() - this.startUs) / 1000n) >>> 0;
  }

  private control(type: number, info: number, cif: Uint8Array = Buffer.alloc(0)): void {
    this.send(writeSrtControl({ type, subtype: 0, info, timestamp: this.nowUs(), destinationSocket: this.peerSocketId, cif }));
    this.lastSent = Date.now();
  }

  /** Queues TS bytes; whole 1316-byte payloads go out at once. */
  private queue(ts: Buffer): void {
    if (this.closed || ts.length === 0) return;
    this.pending = this.pending.length === 0 ? ts : Buffer.concat([this.pending, ts]);
    let pos = 0;
    for (; this.pending.length - pos >= PAYLOAD; pos += PAYLOAD) this.sendPayload(this.pending.subarray(pos, pos + PAYLOAD));
    this.pending = this.pending.subarray(pos);
  }

  /** Sends what is queued, even a short payload (whole TS packets), so the receiver has the frame now. */
  private flush(): void {
    if (this.pending.length > 0) this.sendPayload(this.pending);
    this.pending = Buffer.alloc(0);
  }

  private sendPayload(clear: Uint8Array): void {
    const key = this.keys?.even ?? this.keys?.odd;
    const payload = key ? cryptPayload(key, this.keys!.salt, this.nextSequence, clear) : clear;
    const keyFlags = key ? (key === this.keys?.even ? KEY_FLAGS.even : KEY_FLAGS.odd) : KEY_FLAGS.none;
    const packet = writeSrtData({ sequence: this.nextSequence, position: 0b11, inOrder: false, keyFlags, retransmitted: false, messageNumber: this.messageNumber, timestamp: this.nowUs(), destinationSocket: this.peerSocketId, payload });
    this.messageNumber = (this.messageNumber % (MSG_MODULO - 1)) + 1;
    const now = Date.now();
    this.buffer.set(this.nextSequence, { packet, sentAt: now });
    if (this.buffer.size > MAX_SEND_BUFFER) this.giveUp(this.buffer.keys().next().value!);
    this.nextSequence = seqAdd(this.nextSequence, 1);
    this.send(packet);
    this.lastSent = now;
    this.stats.packetsSent++;
    this.stats.bytesSent += clear.length;
  }

  /** Drops `sequence` (and everything before it) from the send buffer. */
  private giveUp(sequence: number): void {
    for (const seq of this.buffer.keys()) {
      if (seqDiff(seq, sequence) > 0) break;
      this.buffer.delete(seq);
      this.stats.packetsDropped++;
    }
  }

  /** Data from a playing caller is not expected: ignored. */
  onData(): void {
    this.lastHeard = Date.now();
  }

  onControl(type: number, _subtype: number, info: number, cif: Uint8Array): void {
    this.lastHeard = Date.now();
    try {
      if (type === CONTROL.ack) this.onAck(info, cif);
      else if (type === CONTROL.nak) this.onNak(cif);
      else if (type === CONTROL.shutdown) this.close('caller shut down');
    } catch {
      // A malformed ACK or NAK from this caller: ignored, like any unparsable datagram.
    }
  }

  private onAck(ackNumber: number, cif: Uint8Array): void {
    const ack = parseAck(cif);
    // Everything before the acknowledged number arrived.
    for (const seq of this.buffer.keys()) {
      if (seqDiff(seq, ack.lastAcknowledged) >= 0) break;
      this.buffer.delete(seq);
    }
    if (cif.length >= 16) {
      // A full ACK: answer with ACKACK so the receiver measures the RTT (§3.2.7); take its figures.
      this.control(CONTROL.ackack, ackNumber);
      if (ack.rtt) this.rttUs = ack.rtt;
      if (ack.rttVariance) this.rttVarUs = ack.rttVariance;
    }
  }

  private onNak(cif: Uint8Array): void {
    this.stats.naksReceived++;
    const now = Date.now();
    const tooOld = this.latencyMs + this.rttUs / 1000;
    let budget = MAX_NAK_PACKETS;
    const gone: [number, number][] = [];
    for (const [first, last] of parseLossList(cif)) {
      const count = Math.min(seqDiff(last, first) + 1, budget);
      if (count <= 0) continue;
      budget -= count;
      for (let i = 0, seq = first; i < count; i++, seq = seqAdd(seq, 1)) {
        const sent = this.buffer.get(seq);
        if (!sent || now - sent.sentAt > tooOld) {
          // Too late to be played: tell the receiver to stop waiting for it (§3.2.9 drop request).
          if (sent) this.buffer.delete(seq);
          const range = gone[gone.length - 1];
          if (range && seqAdd(range[1], 1) === seq) range[1] = seq;
          else gone.push([seq, seq]);
          continue;
        }
        // The R flag marks a retransmission (§3.1); the timestamp stays the original one.
        const resent = Buffer.from(sent.packet);
        resent.writeUInt32BE((resent.readUInt32BE(4) | 0x04000000) >>> 0, 4);
        this.send(resent);
        this.stats.packetsRetransmitted++;
      }
      if (budget <= 0) break;
    }
    for (const [first, last] of gone.slice(0, 16)) {
      const cif = Buffer.alloc(8);
      cif.writeUInt32BE(first, 0);
      cif.writeUInt32BE(last, 4);
      this.control(CONTROL.dropRequest, 0, cif);
    }
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastHeard > this.peerIdleTimeoutMs) return this.close('caller silent (peer idle timeout)');
    // Send-side drop: what the receiver can no longer play is not kept (it would only be resent too late).
    const tooOld = this.latencyMs + this.rttUs / 1000 + 1000;
    for (const [seq, sent] of this.buffer) {
      if (now - sent.sentAt <= tooOld) break;
      this.buffer.delete(seq);
      this.stats.packetsDropped++;
    }
    if (now - this.lastSent >= KEEPALIVE_MS) this.control(CONTROL.keepalive, 0);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.subscriber.close();
    this.control(CONTROL.shutdown, 0, Buffer.alloc(4));
    this.stats.framesDropped = this.subscriber.droppedFrames;
    this.onClose(this, reason);
  }
}
