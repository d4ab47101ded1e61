/**
 * SRT listener on one UDP port (draft-sharabayko-srt-01), written on `node:dgram`: many callers at once, each a
 * live-mode receiving session feeding a core Stream through {@link TsToStream} (`m=publish`), or a sending session
 * playing one to the caller (`m=request`, srt-sender.ts).
 *
 * Handshake (§4.3.1): a caller's induction gets an induction response with the SRT magic and a SYN cookie — a
 * keyed hash of its address and the minute, so a flood of inductions leaves no state; its conclusion must echo a
 * current cookie. The conclusion's stream id (SID) names the stream (srt-stream-id.ts), its HSREQ the caller's
 * latency; the publish is authorized like RTMP's (the key, then the admission hook) and answered with a
 * conclusion carrying HSRSP (latency = max(ours, the caller's)) or with a rejection code (the catalogue's `srt`
 * code, SRT Access Control §"Standard Rejection Codes"). A stream with a passphrase (its own, or the server's)
 * needs an encrypted caller: the conclusion's KMREQ is unwrapped with it (srt-crypto.ts) and echoed as KMRSP; a
 * wrong passphrase is refused with `SRT_REJ_BADSECRET`, a missing one — or a caller that encrypts for a stream
 * without one — with `SRT_REJ_UNSECURE`. In-band key refreshes (user control packets, KMREQ) are answered with
 * KMRSP and switch the even/odd key the data packets name.
 *
 * Receiving (§4.5–4.8): packets are delivered in sequence order as soon as they are contiguous; a gap is reported
 * at once with a NAK, again periodically (NAK interval), and given up when the packet after it reaches its TSBPD
 * time (too-late drop; the TS demuxer then sees the continuity gap and video waits for a keyframe). Full ACKs go
 * every 10 ms and ACKACKs measure the RTT; a caller silent for the peer-idle timeout, or sending SHUTDOWN, ends its
 * session (the stream waits for it in its reconnect grace).
 */
import { createHmac, randomBytes, randomInt } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { isIPv4 } from 'node:net';
import { GlasscastError, toGlasscastError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { PublisherHooks, PublisherInfo, PublisherSession, Stream } from '../../core/stream.js';
import {
  CONTROL,
  EXTENSION,
  HANDSHAKE_TYPE,
  parseHandshake,
  parseHsExtension,
  parseSrtPacket,
  parseStreamIdExtension,
  seqAdd,
  seqDiff,
  SRT_FLAGS,
  SRT_MAGIC,
  writeAck,
  writeHandshake,
  writeHsExtension,
  writeLossList,
  writeSrtControl,
  type SrtDataPacket,
  type SrtHandshake,
} from './srt-packet.js';
import { cryptPayload, KeyMaterialError, openKeyMaterial, parseKeyMaterial, type StreamKeys } from './srt-crypto.js';
import { SrtSendSession } from './srt-sender.js';
import { parseSrtStreamId, resourceTarget, type SrtStreamRequest } from './srt-stream-id.js';
import { TsToStream } from './ts-to-stream.js';

/** Options of the listener. */
export interface SrtServerOptions {
  host: string;
  /** UDP port. Default 9999. */
  port: number;
  /** Our receiver latency, ms; the session uses max(this, the caller's). Default 120. */
  latencyMs: number;
  /** A caller silent this long is gone, ms. Default 5000. */
  peerIdleTimeoutMs: number;
  /** Most sessions at once. Default 200. */
  maxSessions: number;
  /** Stream id used when a caller sends none (e.g. `live/<key>`); empty: such callers are refused. */
  defaultStreamId: string;
}

/** What the listener needs from the rest of the server (wired in app.ts). */
export interface SrtHandlers {
  /** Key (from the stream id) → stream; throws a GlasscastError to refuse (also for the admission hook). */
  authorizePublish(request: { key: string; app: string | undefined; remoteAddress: string }): Promise<{ streamName: string; srtPassphrase?: string | undefined }>;
  claimForPublish(name: string, info: PublisherInfo, hooks: PublisherHooks): PublisherSession;
  /** May this caller play the stream (`m=request`)? Throws a GlasscastError to refuse (private stream, admission). */
  authorizePlay(request: { stream: string; token: string | undefined; remoteAddress: string }): Promise<SrtViewerIdentity | undefined>;
  /** A playing caller joined or left (webhooks). */
  onViewer?(event: 'joined' | 'left', viewer: SrtViewer): void;
  /** The live stream of that name, if any. */
  liveStream(name: string): Stream | undefined;
  /** The SRT passphrase a player of the stream must use, if any. */
  playPassphrase(name: string): Promise<string | undefined>;
}

/** Who a playback token said the viewer is. */
export interface SrtViewerIdentity {
  viewerId: string | undefined;
  tokenId: string | undefined;
  /** Token expiry, epoch ms. */
  expiresAt: number;
}

/** A caller playing a stream (`m=request`), as the sessions API lists it. */
export interface SrtViewer {
  id: string;
  stream: string;
  address: string;
  /** Epoch ms. */
  startedAt: number;
  bytesSent: number;
  identity: SrtViewerIdentity | undefined;
}

/** A session of either direction, as the listener routes packets to it. */
type SrtPeerSession = SrtSession | SrtSendSession;

/** libsrt's rejection reasons (srt.h SRT_REJ_*), sent as 1000 + reason. */
const REJECT = { peer: 1002, resource: 1003, rogue: 1004, version: 1008, badSecret: 1010, unsecure: 1011 } as const;
/** Subtypes of the user control packet that carry key material in-band (§3.2.2: SRT_CMD_KMREQ/KMRSP). */
const SUBTYPE_KMREQ = 3;
const SUBTYPE_KMRSP = 4;
/** The SRT version we announce in HSRSP: 1.5.0. */
const SRT_VERSION = 0x010500;
const ACK_INTERVAL_MS = 10;
const MIN_NAK_INTERVAL_MS = 20;
/** A publishing session silent this long gives way to a new caller with the same key, ms. */
const TAKEOVER_SILENCE_MS = 1000;
/** Packets a session keeps out of order at most (a bigger gap is dropped at once). */
const MAX_REORDER = 8192;
const FLOW_WINDOW = 8192;
const MTU = 1500;

interface Pending {
  key: string;
  response: Buffer | undefined;
  at: number;
}

/** One receiving session. */
class SrtSession {
  readonly socketId = randomInt(1, 2 ** 31);
  readonly role = 'publish' as const;
  readonly createdAt = Date.now();
  private readonly startUs = process.hrtime.bigint();
  /** Next sequence number to deliver. */
  private next: number;
  private readonly buffer = new Map<number, SrtDataPacket>();
  private highest: number;
  /** Lost sequence numbers not yet recovered, with when they were last NAKed (ms). */
  private readonly losses = new Map<number, number>();
  private ackNumber = 0;
  private readonly acksSent = new Map<number, number>();
  private lastAcked = -1;
  private timer: NodeJS.Timeout;
  /** When the caller was last heard from (ms). */
  lastHeard = Date.now();
  private closed = false;
  /** TSBPD: local ms at which the sender's timestamp 0 would play, set by the first packet. */
  private timeBase: number | undefined;
  private lastTimestamp = 0;
  private timestampWraps = 0;
  rttUs = 100_000;
  rttVarUs = 50_000;
  readonly stats = { packetsReceived: 0, bytesReceived: 0, packetsLost: 0, packetsRetransmitted: 0, packetsDropped: 0, packetsBelated: 0, naksSent: 0, packetsUndecryptable: 0, keyRefreshes: 0, keyRefreshFailures: 0, bitsPerSecond: 0 };
  /** Bytes and time (ms) at the last bitrate sample. */
  private rateSample = { bytes: 0, at: Date.now() };

  constructor(
    readonly peer: RemoteInfo,
    readonly peerSocketId: number,
    initialSequence: number,
    readonly latencyMs: number,
    readonly streamName: string,
    private readonly mapper: TsToStream,
    private readonly send: (b: Buffer) => void,
    private readonly options: SrtServerOptions,
    private readonly onClose: (s: SrtSession, reason: string) => void,
    /** Encrypted sessions: the passphrase (for key refreshes) and the keys in force. */
    private readonly crypto: { passphrase: string; keys: StreamKeys } | undefined,
  ) {
    this.next = initialSequence;
    this.highest = seqAdd(initialSequence, -1);
    this.timer = setInterval(() => this.tick(), ACK_INTERVAL_MS);
  }

  private nowUs(): number {
    return Number((process.hrtime.bigint() - this.startUs) / 1000n) >>> 0;
  }

  private control(type: number, info: number, cif: Uint8Array = Buffer.alloc(0)): void {
    this.send(writeSrtControl({ type, subtype: 0, info, timestamp: this.nowUs(), destinationSocket: this.peerSocketId, cif }));
  }

  /** The sender's 32-bit µs timestamp, unwrapped, in ms. */
  private senderMs(ts: number): number {
    if (ts < this.lastTimestamp && this.lastTimestamp - ts > 2 ** 31) this.timestampWraps++;
    this.lastTimestamp = ts;
    return (this.timestampWraps * 2 ** 32 + ts) / 1000;
  }

  onData(p: SrtDataPacket): void {
    this.lastHeard = Date.now();
    this.stats.packetsReceived++;
    this.stats.bytesReceived += p.payload.length;
    if (p.retransmitted) this.stats.packetsRetransmitted++;
    const senderMs = this.senderMs(p.timestamp);
    this.timeBase ??= Date.now() - senderMs;
    const ahead = seqDiff(p.sequence, this.next);
    if (ahead < 0 || this.buffer.has(p.sequence)) {
      this.stats.packetsBelated++;
      return;
    }
    if (ahead > MAX_REORDER) {
      // Far ahead of what we wait for: the sender moved on; give up the gap.
      this.dropUntil(p.sequence);
    }
    this.losses.delete(p.sequence);
    const gap = seqDiff(p.sequence, this.highest);
    if (gap > 1) {
      // New loss: NAK it at once (§4.8.1), then periodically until it arrives or is too late.
      const first = seqAdd(this.highest, 1);
      const last = seqAdd(p.sequence, -1);
      const now = Date.now();
      for (let s = first, n = 0; n < gap - 1; s = seqAdd(s, 1), n++) this.losses.set(s, now);
      this.stats.packetsLost += gap - 1;
      this.control(CONTROL.nak, 0, writeLossList([[first, last]]));
      this.stats.naksSent++;
    }
    if (gap > 0) this.highest = p.sequence;
    this.buffer.set(p.sequence, { ...p, payload: this.decrypt(p) ?? Buffer.alloc(0) });
    this.deliver();
  }

  /** A copy of the packet's payload, decrypted with the key its KK names; undefined (counted) when we lack it. */
  private decrypt(p: SrtDataPacket): Buffer | undefined {
    if (p.keyFlags === 0) return Buffer.from(p.payload);
    const key = p.keyFlags === 1 ? this.crypto?.keys.even : this.crypto?.keys.odd;
    if (!key || !this.crypto) {
      this.stats.packetsUndecryptable++;
      return undefined;
    }
    return cryptPayload(key, this.crypto.keys.salt, p.sequence, p.payload);
  }

  /** Delivers contiguous packets; a gap whose next packet is due to play (TSBPD) is dropped. */
  private deliver(): void {
    for (;;) {
      const p = this.buffer.get(this.next);
      if (p) {
        this.buffer.delete(this.next);
        this.next = seqAdd(this.next, 1);
        this.mapper.push(p.payload);
        continue;
      }
      if (this.buffer.size === 0 || this.timeBase === undefined) return;
      // The first packet after the gap: when it must play, the gap is too late (§4.6 too-late packet drop).
      let after: SrtDataPacket | undefined;
      for (let s = this.next, n = 0; n <= MAX_REORDER && !after; s = seqAdd(s, 1), n++) after = this.buffer.get(s);
      if (!after) return;
      const playAt = this.timeBase + this.senderMsPeek(after.timestamp) + this.latencyMs;
      if (Date.now() < playAt) return;
      this.dropUntil(after.sequence);
    }
  }

  /** Sender ms of a buffered packet's timestamp without moving the wrap state. */
  private senderMsPeek(ts: number): number {
    const wraps = ts > this.lastTimestamp && ts - this.lastTimestamp > 2 ** 31 ? this.timestampWraps - 1 : this.timestampWraps;
    return (wraps * 2 ** 32 + ts) / 1000;
  }

  private dropUntil(sequence: number): void {
    const missing = seqDiff(sequence, this.next);
    if (missing <= 0) return;
    this.stats.packetsDropped += missing;
    for (let s = this.next, n = 0; n < missing; s = seqAdd(s, 1), n++) {
      this.losses.delete(s);
      this.buffer.delete(s);
    }
    this.next = sequence;
  }

  onControl(type: number, subtype: number, info: number, cif: Uint8Array): void {
    this.lastHeard = Date.now();
    if (type === CONTROL.user && subtype === SUBTYPE_KMREQ) return void this.refreshKeys(Buffer.from(cif));
    if (type === CONTROL.ackack) {
      const sent = this.acksSent.get(info);
      this.acksSent.delete(info);
      if (sent !== undefined) {
        const rtt = (performance.now() - sent) * 1000;
        this.rttVarUs = (3 * this.rttVarUs + Math.abs(this.rttUs - rtt)) / 4;
        this.rttUs = (7 * this.rttUs + rtt) / 8;
      }
    } else if (type === CONTROL.shutdown) {
      this.close('caller shut down');
    }
  }

  /** An in-band key refresh (§6.1.6): new keys replace the ones they name; the message is echoed as KMRSP. */
  private async refreshKeys(message: Buffer): Promise<void> {
    if (!this.crypto) return;
    try {
      const keys = await openKeyMaterial(parseKeyMaterial(message), this.crypto.passphrase);
      if (keys.even) this.crypto.keys.even = keys.even;
      if (keys.odd) this.crypto.keys.odd = keys.odd;
      this.crypto.keys.salt = keys.salt;
      this.stats.keyRefreshes++;
      this.send(writeSrtControl({ type: CONTROL.user, subtype: SUBTYPE_KMRSP, info: 0, timestamp: this.nowUs(), destinationSocket: this.peerSocketId, cif: message }));
    } catch {
      // A refresh we cannot open leaves the old keys (no KMRSP: the caller resends it); packets under the new key
      // then count as undecryptable.
      this.stats.keyRefreshFailures++;
    }
  }

  private tick(): void {
    const now = Date.now();
    if (now - this.lastHeard > this.options.peerIdleTimeoutMs) return this.close('caller silent (peer idle timeout)');
    if (now - this.rateSample.at >= 1000) {
      // Payload bits/s received over the last second (retransmissions included).
      this.stats.bitsPerSecond = Math.round(((this.stats.bytesReceived - this.rateSample.bytes) * 8 * 1000) / (now - this.rateSample.at));
      this.rateSample = { bytes: this.stats.bytesReceived, at: now };
    }
    this.deliver();
    // Full ACK of everything delivered so far (§4.8.1), when it moved.
    if (this.next !== this.lastAcked || now % 1000 < ACK_INTERVAL_MS) {
      this.lastAcked = this.next;
      this.ackNumber = (this.ackNumber + 1) >>> 0 || 1;
      this.acksSent.set(this.ackNumber, performance.now());
      if (this.acksSent.size > 64) this.acksSent.delete(this.acksSent.keys().next().value!);
      this.control(CONTROL.ack, this.ackNumber, writeAck({ lastAcknowledged: this.next, rtt: this.rttUs, rttVariance: this.rttVarUs, availableBuffer: Math.max(2, FLOW_WINDOW - this.buffer.size), packetsReceivingRate: 0, estimatedLinkCapacity: 0, receivingRate: 0 }));
    }
    // Periodic NAK (§4.8.2): losses not NAKed for (RTT + 4 × variance) / 2, as libsrt times it — a lost
    // retransmission then gets a second chance within a 200 ms latency at 100 ms RTT.
    const interval = Math.max(MIN_NAK_INTERVAL_MS, (this.rttUs + 4 * this.rttVarUs) / 2000);
    const due: number[] = [];
    for (const [seq, at] of this.losses) {
      if (now - at >= interval) {
        due.push(seq);
        this.losses.set(seq, now);
      }
      if (due.length >= 256) break;
    }
    if (due.length > 0) {
      due.sort((a, b) => seqDiff(a, b));
      const ranges: [number, number][] = [];
      for (const s of due) {
        const last = ranges[ranges.length - 1];
        if (last && seqAdd(last[1], 1) === s) last[1] = s;
        else ranges.push([s, s]);
      }
      this.control(CONTROL.nak, 0, writeLossList(ranges));
      this.stats.naksSent++;
    }
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.control(CONTROL.shutdown, 0, Buffer.alloc(4));
    this.mapper.end(reason);
    this.onClose(this, reason);
  }
}

/** The SRT listener. `close()` is idempotent. */
export class SrtServer {
  private socket: Socket | undefined;
  private readonly cookieSecret = randomBytes(16);
  private readonly listenerSocketId = randomInt(1, 2 ** 31);
  private readonly sessions = new Map<number, SrtPeerSession>();
  /** Bytes sent to players that have left, by stream (bounded by the number of streams played). */
  private readonly sentByEndedViewers = new Map<string, number>();
  /** Conclusions being authorized or answered, by caller: repeated conclusions get the same answer. */
  private readonly pending = new Map<string, Pending>();
  private readonly startUs = process.hrtime.bigint();
  /** Datagrams dropped: unparsable, unknown socket, bad cookie. */
  readonly counters = { malformed: 0, unknownSocket: 0, badCookie: 0, rejected: 0 };
  /** The last caller refused: rejection code, reason (as logged), when (ms). */
  lastRejection: { code: number; reason: string; at: number } | undefined;

  constructor(
    private readonly options: SrtServerOptions,
    private readonly handlers: SrtHandlers,
    private readonly log: Logger,
  ) {}

  /** Binds the UDP port; resolves with the bound port. */
  async listen(): Promise<number> {
    const socket = createSocket({ type: isIPv4(this.options.host) || this.options.host === '0.0.0.0' ? 'udp4' : 'udp6', recvBufferSize: 4 * 1024 * 1024 });
    this.socket = socket;
    socket.on('message', (msg, rinfo) => this.onMessage(msg, rinfo));
    socket.on('error', (err) => this.log.error({ err }, 'SRT socket error'));
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.options.port, this.options.host, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const port = socket.address().port;
    this.log.info({ port }, 'SRT listening');
    return port;
  }

  /** Sessions now. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Callers playing `stream` now. */
  viewers(stream: string): SrtViewer[] {
    return [...this.sessions.values()].flatMap((s) => (s instanceof SrtSendSession && s.streamName === stream ? [this.viewerOf(s)] : []));
  }

  /** Bytes sent to SRT players of `stream` since the server started. */
  bytesSent(stream: string): number {
    let n = this.sentByEndedViewers.get(stream) ?? 0;
    for (const v of this.viewers(stream)) n += v.bytesSent;
    return n;
  }

  /** Ends viewer `id` of `stream`; false when there is none. */
  kick(stream: string, id: string, reason: string): boolean {
    const session = [...this.sessions.values()].find((s) => s instanceof SrtSendSession && s.streamName === stream && `srt-${s.socketId}` === id);
    session?.close(reason);
    return session !== undefined;
  }

  private viewerOf(s: SrtSendSession): SrtViewer {
    return { id: `srt-${s.socketId}`, stream: s.streamName, address: s.peer.address, startedAt: s.createdAt, bytesSent: s.stats.bytesSent, identity: s.identity };
  }

  private notifyViewer(event: 'joined' | 'left', viewer: SrtViewer): void {
    try {
      this.handlers.onViewer?.(event, viewer);
    } catch (err) {
      this.log.error({ err }, 'viewer listener threw');
    }
  }

  /** Publishing sessions' figures (RTT, latency, packets), for /metrics. */
  publisherStats(): { stream: string; latencyMs: number; rttMs: number; stats: SrtSession['stats'] }[] {
    return [...this.sessions.values()].flatMap((s) => (s instanceof SrtSession ? [{ stream: s.streamName, latencyMs: s.latencyMs, rttMs: s.rttUs / 1000, stats: { ...s.stats } }] : []));
  }

  /** Per-session figures (RTT, latency, packets), both directions. */
  sessionStats(): { stream: string; mode: 'publish' | 'request'; peer: string; latencyMs: number; rttMs: number; stats: Record<string, number> }[] {
    return [...this.sessions.values()].map((s) => ({ stream: s.streamName, mode: s.role, peer: `${s.peer.address}:${s.peer.port}`, latencyMs: s.latencyMs, rttMs: s.rttUs / 1000, stats: { ...s.stats } }));
  }

  private sendTo(rinfo: RemoteInfo): (b: Buffer) => void {
    return (b) => this.socket?.send(b, rinfo.port, rinfo.address);
  }

  /** SYN cookie for a caller in a minute (§4.3.1.1: the cookie binds the conclusion to this address). */
  private cookie(rinfo: RemoteInfo, minute: number): number {
    return createHmac('sha256', this.cookieSecret).update(`${rinfo.address}|${rinfo.port}|${minute}`).digest().readUInt32BE(0);
  }

  private onMessage(msg: Buffer, rinfo: RemoteInfo): void {
    let packet;
    try {
      packet = parseSrtPacket(msg);
    } catch {
      this.counters.malformed++;
      return;
    }
    if (packet.destinationSocket !== 0) {
      const session = this.sessions.get(packet.destinationSocket);
      if (!session || session.peer.address !== rinfo.address || session.peer.port !== rinfo.port) {
        this.counters.unknownSocket++;
        return;
      }
      if (packet.kind === 'data') session.onData(packet);
      else if (packet.type === CONTROL.handshake) this.onHandshake(packet.cif, rinfo);
      else session.onControl(packet.type, packet.subtype, packet.info, packet.cif);
      return;
    }
    if (packet.kind === 'control' && packet.type === CONTROL.handshake) this.onHandshake(packet.cif, rinfo);
    else this.counters.unknownSocket++;
  }

  private onHandshake(cif: Uint8Array, rinfo: RemoteInfo): void {
    let h: SrtHandshake;
    try {
      h = parseHandshake(cif);
    } catch {
      this.counters.malformed++;
      return;
    }
    const minute = Math.floor(Date.now() / 60_000);
    if (h.handshakeType === HANDSHAKE_TYPE.induction) {
      // Stateless: everything the conclusion needs is in the cookie.
      const response = writeHandshake({ ...h, version: 5, encryption: 0, extensionField: SRT_MAGIC, handshakeType: HANDSHAKE_TYPE.induction, socketId: this.listenerSocketId, cookie: this.cookie(rinfo, minute), peerAddress: peerAddressBytes(rinfo.address), extensions: [] });
      this.sendControl(rinfo, h.socketId, response);
      return;
    }
    if (h.handshakeType !== HANDSHAKE_TYPE.conclusion) return;
    if (h.cookie !== this.cookie(rinfo, minute) && h.cookie !== this.cookie(rinfo, minute - 1)) {
      this.counters.badCookie++;
      return;
    }
    const key = `${rinfo.address}|${rinfo.port}|${h.socketId}`;
    const known = this.pending.get(key);
    if (known) {
      if (known.response) this.socket?.send(known.response, rinfo.port, rinfo.address);
      return;
    }
    if (this.pending.size > 1000) this.sweepPending();
    const entry: Pending = { key, response: undefined, at: Date.now() };
    this.pending.set(key, entry);
    this.conclude(h, rinfo).then(
      (response) => {
        entry.response = response;
        this.socket?.send(response, rinfo.port, rinfo.address);
      },
      (err: unknown) => {
        // A bug, not the caller's fault: log it and forget the attempt (the caller's next conclusion tries again).
        this.log.error({ err, remote: `${rinfo.address}:${rinfo.port}` }, 'SRT conclusion failed on an internal error');
        this.pending.delete(key);
      },
    );
  }

  private sweepPending(): void {
    const now = Date.now();
    for (const [k, p] of this.pending) if (now - p.at > 10_000) this.pending.delete(k);
  }

  private sendControl(rinfo: RemoteInfo, destination: number, cif: Uint8Array): void {
    const timestamp = Number((process.hrtime.bigint() - this.startUs) / 1000n) >>> 0;
    this.socket?.send(writeSrtControl({ type: CONTROL.handshake, subtype: 0, info: 0, timestamp, destinationSocket: destination, cif }), rinfo.port, rinfo.address);
  }

  /** Decides a conclusion: the answer to send (a conclusion response or a rejection). */
  private async conclude(h: SrtHandshake, rinfo: RemoteInfo): Promise<Buffer> {
    const reject = (code: number, why: string): Buffer => {
      this.counters.rejected++;
      this.lastRejection = { code, reason: why, at: Date.now() };
      this.log.warn({ remote: `${rinfo.address}:${rinfo.port}`, code }, `SRT caller refused: ${why}`);
      return writeSrtControl({ type: CONTROL.handshake, subtype: 0, info: 0, timestamp: 0, destinationSocket: h.socketId, cif: writeHandshake({ ...h, handshakeType: code, extensions: [] }) });
    };
    if (h.version !== 5) return reject(REJECT.version, `handshake version ${h.version}`);
    const hsreqExt = h.extensions.find((e) => e.type === EXTENSION.hsreq);
    if (!hsreqExt) return reject(REJECT.version, 'no HSREQ (an SRT < 1.3 caller)');
    if (this.sessions.size >= this.options.maxSessions) return reject(REJECT.resource, 'too many SRT sessions');
    let hsreq;
    try {
      hsreq = parseHsExtension(hsreqExt.data);
    } catch {
      return reject(REJECT.rogue, 'malformed HSREQ');
    }
    const sid = h.extensions.find((e) => e.type === EXTENSION.sid);
    const remoteAddress = rinfo.address;
    const kmreq = h.extensions.find((e) => e.type === EXTENSION.kmreq);
    let request: SrtStreamRequest;
    try {
      request = parseSrtStreamId(sid ? parseStreamIdExtension(sid.data) : '', this.options.defaultStreamId);
    } catch (err) {
      const error = toGlasscastError(err);
      return reject(error.spec.srt, error.message);
    }
    const latencyMs = Math.max(this.options.latencyMs, hsreq.senderDelayMs, hsreq.receiverDelayMs);
    const target = resourceTarget(request.resource);
    const end = (s: SrtPeerSession, reason: string): void => {
      this.sessions.delete(s.socketId);
      this.pending.delete(`${rinfo.address}|${rinfo.port}|${h.socketId}`);
      this.log.info({ stream: s.streamName, mode: s.role, reason, stats: s.stats }, 'SRT session ended');
    };
    /** The caller's keys when the stream wants encryption, or a rejection; undefined for a clear session. */
    const keysFor = async (streamName: string, passphrase: string | undefined): Promise<{ passphrase: string; keys: StreamKeys } | Buffer | undefined> => {
      if (passphrase && !kmreq) return reject(REJECT.unsecure, `stream ${streamName} needs the SRT passphrase and the caller sent none`);
      if (!passphrase && kmreq) return reject(REJECT.unsecure, `the caller encrypts but stream ${streamName} has no SRT passphrase`);
      if (!passphrase || !kmreq) return undefined;
      try {
        return { passphrase, keys: await openKeyMaterial(parseKeyMaterial(kmreq.data), passphrase) };
      } catch (err) {
        if (err instanceof KeyMaterialError && err.reason === 'BAD_SECRET') return reject(REJECT.badSecret, `wrong SRT passphrase for stream ${streamName}`);
        return reject(REJECT.unsecure, `unusable key material: ${(err as Error).message}`);
      }
    };

    let session: SrtPeerSession;
    if (request.mode === 'request') {
      // Playback: the resource names the stream (`live/<name>` or `<name>`); played as any viewer is authorized.
      const streamName = target.name;
      let stream;
      let crypto;
      let identity: SrtViewerIdentity | undefined;
      try {
        identity = await this.handlers.authorizePlay({ stream: streamName, token: request.password, remoteAddress });
        stream = this.handlers.liveStream(streamName);
        if (!stream) throw new GlasscastError('STREAM_NOT_FOUND', `stream ${streamName.slice(0, 64)} is not live`);
        crypto = await keysFor(streamName, await this.handlers.playPassphrase(streamName));
        if (Buffer.isBuffer(crypto)) return crypto;
        // The passphrase lookup and key unwrapping waited: the stream may have ended meanwhile.
        stream = this.handlers.liveStream(streamName);
        if (!stream) throw new GlasscastError('STREAM_NOT_FOUND', `stream ${streamName.slice(0, 64)} is not live`);
      } catch (err) {
        const error = toGlasscastError(err);
        if (error.code === 'INTERNAL') this.log.error({ err }, 'SRT playback failed on an internal error');
        return reject(error.spec.srt, error.message);
      }
      const playing = new SrtSendSession(rinfo, h.socketId, h.initialSequence, latencyMs, streamName, stream, this.sendTo(rinfo), this.options.peerIdleTimeoutMs, this.log.child({ stream: streamName, egress: 'srt' }), (s, reason) => {
        end(s, reason);
        if (this.sentByEndedViewers.size < 10_000 || this.sentByEndedViewers.has(s.streamName)) this.sentByEndedViewers.set(s.streamName, (this.sentByEndedViewers.get(s.streamName) ?? 0) + s.stats.bytesSent);
        this.notifyViewer('left', this.viewerOf(s));
      }, crypto?.keys);
      playing.identity = identity;
      session = playing;
      this.notifyViewer('joined', this.viewerOf(playing));
      this.log.info({ stream: streamName, remote: `${rinfo.address}:${rinfo.port}`, latencyMs, encrypted: crypto !== undefined }, 'SRT playback started');
    } else {
      let streamName: string;
      let claimed: PublisherSession;
      let crypto: { passphrase: string; keys: StreamKeys } | undefined;
      const holder: { session?: SrtSession } = {};
      try {
        const authorized = await this.handlers.authorizePublish({ key: target.name, app: target.app, remoteAddress });
        streamName = authorized.streamName;
        const keys = await keysFor(streamName, authorized.srtPassphrase || undefined);
        if (Buffer.isBuffer(keys)) return keys;
        crypto = keys;
        // A caller returning after a network blip (OBS reconnects at once) while its old session has gone quiet
        // replaces it instead of waiting for the peer-idle timeout: the stream continues in its reconnect grace.
        for (const other of this.sessions.values()) {
          if (other instanceof SrtSession && other.streamName === streamName && Date.now() - other.lastHeard > TAKEOVER_SILENCE_MS) other.close('replaced by a returning caller');
        }
        claimed = this.handlers.claimForPublish(streamName, { protocol: 'srt', remoteAddress }, {
          streamClosed: (reason) => holder.session?.close(`stream closed: ${reason}`),
          stats: () => ({ counters: { ...(holder.session?.stats ?? {}), rttMs: (holder.session?.rttUs ?? 0) / 1000 }, info: { latencyMs: holder.session?.latencyMs } }),
        });
      } catch (err) {
        const error = toGlasscastError(err);
        if (error.code === 'INTERNAL') this.log.error({ err }, 'SRT publish failed on an internal error');
        return reject(error.spec.srt, error.message);
      }
      const mapper = new TsToStream(claimed, this.log.child({ stream: streamName, ingest: 'srt' }));
      const publishing = new SrtSession(rinfo, h.socketId, h.initialSequence, latencyMs, streamName, mapper, this.sendTo(rinfo), this.options, end, crypto);
      holder.session = publishing;
      session = publishing;
      this.log.info({ stream: streamName, remote: `${rinfo.address}:${rinfo.port}`, latencyMs, srtVersion: hsreq.srtVersion.toString(16), encrypted: crypto !== undefined }, 'SRT publish started');
    }
    this.sessions.set(session.socketId, session);
    const flags = SRT_FLAGS.crypt | SRT_FLAGS.tsbpdSender | SRT_FLAGS.tsbpdReceiver | SRT_FLAGS.tlpktDrop | SRT_FLAGS.periodicNak | SRT_FLAGS.rexmitFlag;
    const cif = writeHandshake({
      version: 5,
      encryption: 0,
      extensionField: kmreq ? 3 : 1, // HSRSP (and KMRSP) follow
      initialSequence: h.initialSequence,
      mtu: Math.min(h.mtu, MTU),
      flowWindow: Math.min(h.flowWindow, FLOW_WINDOW),
      handshakeType: HANDSHAKE_TYPE.conclusion,
      socketId: session.socketId,
      cookie: h.cookie,
      peerAddress: peerAddressBytes(rinfo.address),
      extensions: [
        { type: EXTENSION.hsrsp, data: writeHsExtension({ srtVersion: SRT_VERSION, flags, receiverDelayMs: latencyMs, senderDelayMs: latencyMs }) },
        // The listener confirms the key material by echoing it (HaiCrypt's KMRSP).
        ...(kmreq ? [{ type: EXTENSION.kmrsp, data: kmreq.data }] : []),
      ],
    });
    return writeSrtControl({ type: CONTROL.handshake, subtype: 0, info: 0, timestamp: 0, destinationSocket: h.socketId, cif });
  }

  /** Ends every session and closes the socket. Idempotent. */
  async close(): Promise<void> {
    for (const s of [...this.sessions.values()]) s.close('server shutting down');
    const socket = this.socket;
    this.socket = undefined;
    if (socket) await new Promise<void>((r) => socket.close(() => r()));
  }
}

/** The 16-byte peer address field: IPv4 as its 4 bytes in the first word (as libsrt writes it), IPv6 whole. */
function peerAddressBytes(address: string): Buffer {
  const out = Buffer.alloc(16);
  if (isIPv4(address)) {
    const parts = address.split('.').map(Number);
    // libsrt stores the in_addr's bytes as a host-order 32-bit word: reversed on the wire.
    out[0] = parts[3]!;
    out[1] = parts[2]!;
    out[2] = parts[1]!;
    out[3] = parts[0]!;
  }
  return out;
}
