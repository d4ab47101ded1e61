/**
 * WHEP (draft-ietf-wish-whep): WebRTC playback signaling over HTTP, one {@link WhepSource} per stream.
 *
 *   OPTIONS /whep/<name>                    CORS preflight; Accept-Post: application/sdp
 *   POST    /whep/<name>                    SDP offer → 201 + Location + SDP answer (+ Link rel="ice-server")
 *   PATCH   /whep/<name>/sessions/<id>      trickle ICE (application/trickle-ice-sdpfrag, RFC 8840) → 204
 *   DELETE  /whep/<name>/sessions/<id>      ends the session → 200
 *
 * A private stream's offer carries a playback token as `Authorization: Bearer` (checked by the
 * {@link WhepServerOptions.authorizePlay} the server is given; a refusal is 401/403 problem details and no peer).
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../core/logger.js';
import type { EntityStats } from '../../core/stats.js';
import { entityStats } from '../../core/stats.js';
import type { Rendition, Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { Subscriber } from '../../core/subscriber.js';
import { sendProblem } from '../../http/problem.js';
import { chooseH264Format, chooseOpusFormat, type SdpMediaSection } from '../../media/sdp/sdp.js';
import type { PeerTrack, WebRtcNetworkOptions } from '../../webrtc/webrtc-peer.js';
import { PeerConnectionUnavailableError, type PeerConnectionFactory } from '../../webrtc/peer-connection.js';
import { WebRtcPeer } from '../../webrtc/webrtc-peer.js';
import { applyTrickle, cors, created, hasType, linkIceServers, parseOffer, SDP, TRICKLE } from '../../webrtc/signaling.js';
import type { MediaKind, RtpViewer } from './whep-source.js';
import { WhepSource, withPayloadType } from './whep-source.js';
import { RenditionPolicy } from './rendition-policy.js';
import { RenditionSwitch } from './whep-rendition-switch.js';

/** Options of the WHEP server. */
export interface WhepServerOptions {
  network: WebRtcNetworkOptions;
  /** Where viewers' peer connections run: peer host processes (peer-hosts.ts); undefined = this process. */
  connections?: PeerConnectionFactory;
  /** ICE servers announced to players in Link headers (STUN/TURN URLs). */
  playerIceServers: string[];
  /** A session that does not connect within this long is closed, ms. Default 15 000. */
  connectTimeoutMs: number;
  /** Most concurrent WHEP sessions (all streams). Default 1000. */
  maxSessions: number;
  /**
   * Decides whether a viewer may play (visibility, playback token, admission hook). Resolves with who the viewer
   * is, or throws a GlasscastError (answered as problem details). Absent: everyone may play.
   */
  authorizePlay?: (request: { stream: string; token: string | undefined; clientAddress: string }) => Promise<ViewerIdentity | undefined>;
  /** Told when a viewer connects and when it leaves (webhooks). Must not throw. */
  onViewer?: (event: 'joined' | 'left', viewer: WhepViewerInfo) => void;
}

/** Who a viewer is, from its playback token. */
export interface ViewerIdentity {
  viewerId: string | undefined;
  tokenId: string | undefined;
  /** Token expiry, epoch ms. */
  expiresAt: number;
}

/** One WHEP viewer as the API lists it. */
export interface WhepViewerInfo {
  id: string;
  stream: string;
  address: string | undefined;
  /** Epoch ms. */
  startedAt: number;
  bytesSent: number;
  rendition: string;
  identity: ViewerIdentity | undefined;
  /** Why it left (`left` events only). */
  reason?: string;
}

/** WebRTC figures of one stream (REST API `webrtcStats`). */
export interface WhepStreamStats {
  viewers: number;
  framesDropped: number;
  retransmitted: number;
  keyframeRequests: number;
  /** Rendition switches completed by the current viewers. */
  renditionSwitches: number;
  /** Viewers per rendition id (`src`, `720p`, …). */
  viewersByRendition: Record<string, number>;
}

/** Cap on NACK retransmissions per viewer per second, so a hostile or broken receiver cannot amplify traffic. */
const MAX_RETRANSMITS_PER_SECOND = 500;
/** Length of the windows over which a viewer's NACKed share of video packets is measured, ms. */
const NACK_WINDOW_MS = 500;
/** Fewer video packets than this in a window say nothing about loss. */
const MIN_PACKETS_PER_NACK_WINDOW = 20;
/** Sequence numbers remembered as counted (a NACK repeated later is not new loss); a quarter of the number space. */
const MAX_COUNTED_NACKS = 16_384;

/** One rendition a WHEP viewer can watch: the stream as published (`src`) or a transcoded rung. */
export interface WhepRendition {
  /** `src` or the rendition name (`720p`, …). */
  id: string;
  source: WhepSource;
  /** Target (rungs) or measured (source) video bits/s. */
  bitrate: number;
  width: number;
  height: number;
}

/** What a viewer chose: automatic adaptation, or one rendition. */
export type RenditionMode = 'auto' | 'manual';

/** One WHEP viewer. */
class WhepSession implements RtpViewer {
  readonly id = randomBytes(16).toString('hex');
  readonly etag = `"${randomBytes(8).toString('hex')}"`;
  private closed = false;
  private opened = false;
  private connectTimer: NodeJS.Timeout | undefined;
  readonly createdAt = Date.now();
  /** The viewer's ICE username fragment from its offer; a PATCH with another one is an ICE restart. */
  remoteUfrag: string | undefined;
  /** The viewer's address as HTTP saw it (for stats). */
  remoteAddress: string | undefined;
  /** Who the viewer is (its playback token), if known. */
  identity: ViewerIdentity | undefined;
  /** Which rendition this viewer's video comes from, and how it moves between them. */
  readonly renditionSwitch: RenditionSwitch;
  mode: RenditionMode = 'auto';
  private readonly policy = new RenditionPolicy(Date.now());

  constructor(
    readonly streamName: string,
    readonly peer: WebRtcPeer,
    /** The group's source: its SSRC is announced, it sends the audio, and its timing is every rendition's. */
    private readonly source: WhepSource,
    /** Where the video starts: the best rendition when the viewer arrived (the source, or its B-frame-free copy). */
    private readonly firstVideo: WhepSource | undefined,
    private readonly mids: Partial<Record<MediaKind, { mid: string; payloadType: number }>>,
    private readonly onClose: (s: WhepSession, reason: string) => void,
    /** Asks the stream's publisher for a keyframe (WHIP: forwarded as a PLI; RTMP: cannot, returns false). */
    private readonly requestKeyframe: () => boolean,
    /** The stream's renditions now, best first (the source's picture, then rungs by bitrate). */
    private readonly renditions: () => WhepRendition[],
    private readonly log: Logger,
  ) {
    this.renditionSwitch = new RenditionSwitch(
      source,
      firstVideo ?? source,
      this,
      // Live packets already carry this viewer's payload type (each source patches once per type).
      (packet) => {
        const target = this.mids.video;
        if (!target) return;
        const w = this.nackWindow;
        w.sent++;
        w.firstSeq ??= packet.readUInt16BE(2);
        this.nackFloor ??= w.firstSeq;
        this.peer.send(target.mid, packet);
      },
      (to) => {
        this.policy.switchLanded(Date.now());
        this.nackWindow = { start: Date.now(), sent: 0, nacked: 0, firstSeq: undefined };
        this.nackFloor = undefined; // NACKs for the old rendition's packets say nothing about the new one
        this.nacked.clear();
        this.log.info({ session: this.id.slice(0, 8), layer: renditionId(to), mode: this.mode }, 'WHEP viewer switched rendition');
      },
    );
  }

  /** Video packets sent and sequence numbers NACKed for the first time in the current window (loss as NACKs show it). */
  private nackWindow: { start: number; sent: number; nacked: number; firstSeq: number | undefined } = { start: Date.now(), sent: 0, nacked: 0, firstSeq: undefined };
  /**
   * NACKs for packets before this outgoing sequence number are not counted: it is the first one sent in the
   * previous window, or since the last switch (loss of the old rendition says nothing about the new one).
   */
  private nackFloor: number | undefined;
  /** Sequence numbers counted since then: a NACK repeated for the same packet counts once. */
  private readonly nacked = new Set<number>();

  /** Counts the first NACK of each video packet; at the end of each window hands the NACKed share to the policy. */
  private countNacks(sequenceNumbers: readonly number[]): void {
    const w = this.nackWindow;
    for (const seq of sequenceNumbers) {
      if (this.nackFloor === undefined || ((seq - this.nackFloor) & 0xffff) >= 0x8000 || this.nacked.has(seq)) continue;
      if (this.nacked.size >= MAX_COUNTED_NACKS) this.nacked.clear();
      this.nacked.add(seq);
      w.nacked++;
    }
    const now = Date.now();
    if (now - w.start < NACK_WINDOW_MS) return;
    if (w.firstSeq !== undefined) this.nackFloor = w.firstSeq;
    this.nackWindow = { start: now, sent: 0, nacked: 0, firstSeq: undefined };
    if (w.sent >= MIN_PACKETS_PER_NACK_WINDOW) this.adapt({ nackFraction: Math.min(1, w.nacked / w.sent) });
  }

  /** Retransmissions in the current one-second window, and when it began (a flood of NACKs is capped). */
  private retransmitWindow = { start: 0, count: 0 };
  /** Counters for stats. */
  stats = { retransmitted: 0, keyframeRequests: 0 };

  /** Starts delivery once DTLS is up, and closes on failure or when never connected. */
  start(connectTimeoutMs: number): void {
    this.peer.onFeedback((mid, feedback) => {
      const kind = (Object.keys(this.mids) as MediaKind[]).find((k) => this.mids[k]?.mid === mid);
      if (!kind) return;
      this.stats.keyframeRequests += feedback.keyframeRequests.length;
      // A viewer that lost its picture: the next keyframe repairs it; ask the publisher to send it now if it can
      // (a keyframe of the source is one of every rendition too: they follow its keyframes).
      if (feedback.keyframeRequests.length > 0) this.requestKeyframe();
      if (kind === 'video') {
        this.adapt({ fractionLost: feedback.reports.find((r) => r.ssrc === this.source.videoSsrc)?.fractionLost, remb: feedback.remb });
        this.countNacks(feedback.nacks.flatMap((n) => n.sequenceNumbers));
      }
      const now = Date.now();
      if (now - this.retransmitWindow.start > 1000) this.retransmitWindow = { start: now, count: 0 };
      for (const nack of feedback.nacks) {
        for (const seq of nack.sequenceNumbers) {
          if (this.retransmitWindow.count >= MAX_RETRANSMITS_PER_SECOND) return;
          const packet = kind === 'video' ? this.renditionSwitch.retransmission(seq) : this.source.retransmission(kind, seq);
          if (!packet) continue;
          this.retransmitWindow.count++;
          this.stats.retransmitted++;
          this.peer.send(this.mids[kind]!.mid, withPayloadType(packet, this.payloadType(kind)));
        }
      }
    });
    this.peer.onOpen(() => {
      clearTimeout(this.connectTimer);
      this.opened = true;
      const video = this.mids.video ? this.firstVideo : undefined;
      if (video === this.source) this.source.addViewer(this);
      else {
        this.source.addViewer(this, ['audio']);
        video?.addViewer(this, ['video']);
      }
      // The cached GOP starts this viewer at once; a fresh keyframe (where the publisher can make one) keeps
      // the cache short for the next viewer.
      this.requestKeyframe();
    });
    this.peer.onStateChange((state) => {
      // libdatachannel reports "disconnected" when ICE consent fails (RFC 7675) and "failed" after it.
      if (state === 'failed' || state === 'closed' || state === 'disconnected') this.close(`peer ${state}`);
    });
    this.connectTimer = setTimeout(() => this.close('did not connect in time'), connectTimeoutMs);
    this.connectTimer.unref();
  }

  /** Feeds the automatic choice with a receiver report (loss 0–1), a NACK window (NACKed share 0–1) and/or REMB (bits/s). */
  private adapt(report: { fractionLost?: number; nackFraction?: number; remb?: number }): void {
    if (report.fractionLost === undefined && report.nackFraction === undefined && report.remb === undefined) return;
    const renditions = this.renditions();
    const switching = this.renditionSwitch.target !== undefined;
    const current = renditions.findIndex((l) => l.source === (this.renditionSwitch.target ?? this.renditionSwitch.source));
    if (current < 0) return;
    const wanted = this.policy.onReport(Date.now(), report, renditions, current, switching);
    if (wanted === undefined || this.mode !== 'auto') return;
    this.log.info({ session: this.id.slice(0, 8), from: renditions[current]!.id, to: renditions[wanted]!.id, ...report, estimate: this.policy.estimate }, 'WHEP viewer adapting rendition');
    this.renditionSwitch.request(renditions[wanted]!.source);
  }

  /**
   * Chooses a rendition by id, or `auto`.
   * @returns false when no rendition has that id.
   */
  selectRendition(id: string): boolean {
    if (id === 'auto') {
      this.mode = 'auto';
      return true;
    }
    const rendition = this.renditions().find((l) => l.id === id);
    if (!rendition) return false;
    this.mode = 'manual';
    this.policy.manualSwitch(Date.now());
    this.renditionSwitch.request(rendition.source);
    return true;
  }

  payloadType(kind: MediaKind): number | undefined {
    return this.mids[kind]?.payloadType;
  }

  /** Audio goes straight out; video goes through the rendition switch (it may come from a rendition). */
  sendPacket(kind: MediaKind, packet: Buffer, from: WhepSource, keyframeStart: boolean): void {
    if (kind === 'video') {
      this.renditionSwitch.onPacket(packet, from, keyframeStart);
      return;
    }
    const target = this.mids[kind];
    if (target) this.peer.send(target.mid, packet);
  }

  /** The rendition this viewer watches stopped (its transcoder is restarting): to the best one still playing. */
  sourceLost(from: WhepSource): void {
    if (this.renditionSwitch.source !== from && this.renditionSwitch.target !== from) return;
    const best = this.renditions().find((r) => r.source !== from);
    if (best) this.renditionSwitch.request(best.source);
  }

  /** Statistics of this viewer session. */
  getStats(): EntityStats {
    return entityStats('viewer', this.id, this.closed ? 'closed' : this.opened ? 'connected' : 'connecting', this.createdAt, {
      counters: { ...this.stats, packetsSent: this.peer.packetsSent, bytesSent: this.peer.bytesSent, packetsDropped: this.peer.packetsDropped, renditionSwitches: this.renditionSwitch.switches },
      info: { protocol: 'webrtc', stream: this.streamName, rendition: renditionId(this.renditionSwitch.source), mode: this.mode, remoteAddress: this.remoteAddress },
    });
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.connectTimer);
    this.renditionSwitch.close();
    this.source.removeViewer(this);
    this.peer.close();
    this.onClose(this, reason);
  }
}

/** The id a viewer sees: `src` for the source's picture (as published, or its B-frame-free copy), else the rung's name. */
function renditionId(source: WhepSource): string {
  return !source.group || source.group.role === 'bframe-free' ? SOURCE_RENDITION : source.group.rendition;
}

/** Rendition id of the stream's own picture. */
export const SOURCE_RENDITION = 'src';

/** One stream's sources: the group's source (leader) and one per video rendition, owned together. */
interface SourceGroup {
  stream: Stream;
  leader: WhepSource;
  subscriber: Subscriber;
  /** The reader feeding the leader's audio from the group's Opus rendition, if any. */
  audio: Subscriber | undefined;
  /** Video renditions by name (ladder rungs and the B-frame-free copy). */
  renditions: Map<string, { source: WhepSource; subscriber: Subscriber; rendition: Rendition }>;
}

/** Longest an offer waits for a B-frame source's copy to start, ms. */
const COPY_WAIT_MS = 4_000;

/** Readers of WebRTC egress: real-time, so they drop to the next keyframe rather than fall behind. */
const READER_OPTIONS = { maxQueue: 512, maxLagMs: 1000, label: 'whep' };

/** The media sections a viewer can receive on (RFC 8843: a `bundle-only` section with port 0 is not rejected). */
function receivable(s: SdpMediaSection): boolean {
  return !s.rejected && s.direction !== 'sendonly' && s.direction !== 'inactive' && s.mid !== undefined;
}

/** Owns WHEP sources and sessions. `close()` is idempotent. */
export class WhepServer implements StreamObserver {
  private readonly groups = new Map<string, SourceGroup>();
  private readonly sessions = new Map<string, WhepSession>();
  /** Bytes sent to viewers that have left, per stream (the egress total is this plus the live sessions'). */
  private readonly closedBytes = new Map<string, number>();

  constructor(
    private readonly options: WhepServerOptions,
    private readonly log: Logger,
  ) {}

  streamCreated(stream: Stream): void {
    this.removeGroup(stream.name, 'stream replaced');
    const leader = new WhepSource(stream.name);
    const group: SourceGroup = { stream, leader, subscriber: undefined as unknown as Subscriber, audio: undefined, renditions: new Map() };
    group.subscriber = stream.subscribe(
      {
        onSessionStart: (s) => leader.onSessionStart(s),
        onAccessUnit: (au) => leader.onAccessUnit(au),
        onPublisherLost: () => leader.onPublisherLost(),
        onEnd: () => {
          if (this.groups.get(stream.name) === group) this.removeGroup(stream.name, 'stream ended');
        },
      },
      READER_OPTIONS,
    );
    this.groups.set(stream.name, group);
  }

  /**
   * A rendition joins a stream's group: a video rendition becomes a WHEP rendition (packetized once, video only,
   * timed like the source); the Opus audio rendition feeds the source's audio.
   */
  renditionCreated(source: Stream, rendition: Rendition): void {
    const group = this.groups.get(source.name);
    if (!group || group.stream !== source) return;
    const info = rendition.info;
    if (info.kind === 'audio') {
      if (info.codec !== 'opus') return;
      group.audio?.close();
      group.audio = rendition.stream.subscribe(group.leader.attachAudio(), { ...READER_OPTIONS, label: 'whep-audio' });
      return;
    }
    if (info.codec !== 'h264') return;
    this.removeRendition(group, info.name);
    const layer = new WhepSource(`${source.name}/${info.name}`, { leader: group.leader, rendition: info.name, role: info.role });
    const entry = { source: layer, subscriber: undefined as unknown as Subscriber, rendition };
    entry.subscriber = rendition.stream.subscribe(
      {
        onSessionStart: (s) => layer.onSessionStart(s),
        onAccessUnit: (au) => layer.onAccessUnit(au),
        onPublisherLost: () => layer.onPublisherLost(),
        onEnd: () => {
          if (group.renditions.get(info.name) === entry) this.removeRendition(group, info.name);
        },
      },
      READER_OPTIONS,
    );
    group.renditions.set(info.name, entry);
  }

  private removeRendition(group: SourceGroup, name: string): void {
    const entry = group.renditions.get(name);
    if (!entry) return;
    group.renditions.delete(name);
    entry.source.onPublisherLost(); // its viewers move to another rendition
    entry.subscriber.close();
    entry.source.close();
  }

  private removeGroup(name: string, reason: string): void {
    const group = this.groups.get(name);
    if (!group) return;
    this.groups.delete(name);
    for (const s of [...this.sessions.values()]) if (s.streamName === name) s.close(reason);
    for (const r of [...group.renditions.keys()]) this.removeRendition(group, r);
    group.audio?.close();
    group.subscriber.close();
    group.leader.close();
  }

  /**
   * The renditions a viewer of `name` can watch now, best first: the source's picture (as published, or its
   * B-frame-free copy when the source has B-frames), then every live ladder rung by bitrate.
   */
  renditions(name: string): WhepRendition[] {
    const group = this.groups.get(name);
    if (!group?.leader.info()?.video) return [];
    const size = (stream: Stream): { width: number; height: number } => {
      const v = stream.tracks.find((t) => t.kind === 'video');
      return v?.kind === 'video' ? { width: v.info.width, height: v.info.height } : { width: 0, height: 0 };
    };
    const out: WhepRendition[] = [];
    const top = group.stream.videoWithoutBFrames();
    if (top === group.stream) {
      out.push({ id: SOURCE_RENDITION, source: group.leader, bitrate: group.leader.videoBitrate || Infinity, ...size(group.stream) });
    } else if (top) {
      const copy = [...group.renditions.values()].find((r) => r.rendition.stream === top);
      if (copy?.source.info()?.video) out.push({ id: SOURCE_RENDITION, source: copy.source, bitrate: copy.source.videoBitrate || copy.rendition.info.bitrate, ...size(top) });
    }
    const rungs: WhepRendition[] = [];
    for (const r of group.renditions.values()) {
      if (r.rendition.info.role !== 'ladder' || r.rendition.stream.state !== 'live' || !r.source.info()?.video) continue;
      rungs.push({ id: r.rendition.info.name, source: r.source, bitrate: r.rendition.info.bitrate, width: r.rendition.info.width, height: r.rendition.info.height });
    }
    // The source's picture is the best rendition even when its measured rate is below a rung's target (a static picture).
    return [...out, ...rungs.sort((a, b) => b.bitrate - a.bitrate)];
  }

  /** The group's source of a stream, if any. */
  source(name: string): WhepSource | undefined {
    return this.groups.get(name)?.leader;
  }

  /**
   * True when WebRTC is offered for `name`: it has H.264 video (played from the source, or from its B-frame-free
   * copy, which an offer waits for while it starts) or, for an audio-only stream, Opus audio.
   */
  playable(name: string): boolean {
    return this.groups.get(name)?.leader.info() !== undefined;
  }

  /**
   * WebRTC figures of one stream: viewers connected now, access units dropped before packetizing because the
   * server fell behind real time (all viewers then resume at the next keyframe), and, over the current
   * viewers, packets retransmitted for NACKs and keyframe requests (PLI/FIR) received.
   */
  streamStats(name: string): WhepStreamStats {
    let viewers = 0;
    let retransmitted = 0;
    let keyframeRequests = 0;
    let renditionSwitches = 0;
    const viewersByRendition: Record<string, number> = {};
    for (const s of this.sessions.values()) {
      if (s.streamName !== name) continue;
      viewers++;
      retransmitted += s.stats.retransmitted;
      keyframeRequests += s.stats.keyframeRequests;
      renditionSwitches += s.renditionSwitch.switches;
      const id = renditionId(s.renditionSwitch.source);
      viewersByRendition[id] = (viewersByRendition[id] ?? 0) + 1;
    }
    const group = this.groups.get(name);
    let framesDropped = group?.subscriber.droppedFrames ?? 0;
    for (const r of group?.renditions.values() ?? []) framesDropped += r.subscriber.droppedFrames;
    return { viewers, framesDropped, retransmitted, keyframeRequests, renditionSwitches, viewersByRendition };
  }

  /** Statistics of the viewer sessions of `name`. */
  viewerStats(name: string): EntityStats[] {
    return [...this.sessions.values()].filter((s) => s.streamName === name).map((s) => s.getStats());
  }

  /** A viewer's rendition state for the layer endpoint (WHEP's layer extension: its JSON names are the boundary). */
  private renditionState(session: WhepSession): { mode: RenditionMode; current: string; pending: string | undefined; layers: { id: string; width: number; height: number; bitrate: number | undefined }[] } {
    return {
      mode: session.mode,
      current: renditionId(session.renditionSwitch.source),
      pending: session.renditionSwitch.target && renditionId(session.renditionSwitch.target),
      layers: this.renditions(session.streamName).map((l) => ({ id: l.id, width: l.width, height: l.height, bitrate: Number.isFinite(l.bitrate) ? l.bitrate : undefined })),
    };
  }

  /** Sessions open now. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** The viewers of `name` now. */
  viewers(name: string): WhepViewerInfo[] {
    return [...this.sessions.values()].filter((s) => s.streamName === name).map((s) => this.viewerInfo(s));
  }

  private viewerInfo(s: WhepSession, reason?: string): WhepViewerInfo {
    return { id: s.id, stream: s.streamName, address: s.remoteAddress, startedAt: s.createdAt, bytesSent: s.peer.bytesSent, rendition: renditionId(s.renditionSwitch.source), identity: s.identity, reason };
  }

  /** Bytes sent to viewers of `name` since the server started (left and current), for metrics and history. */
  bytesSent(name: string): number {
    let total = this.closedBytes.get(name) ?? 0;
    for (const s of this.sessions.values()) if (s.streamName === name) total += s.peer.bytesSent;
    return total;
  }

  /** Ends one viewer session of `name` (an operator's kick). Returns false when there is no such session. */
  kick(name: string, id: string, reason: string): boolean {
    const session = this.session(name, id);
    if (!session) return false;
    session.close(reason);
    return true;
  }

  /** Closes every session and source. Idempotent. */
  close(): void {
    for (const s of [...this.sessions.values()]) s.close('server shutting down');
    for (const name of [...this.groups.keys()]) this.removeGroup(name, 'server shutting down');
  }

  private notifyViewer(event: 'joined' | 'left', viewer: WhepViewerInfo): void {
    try {
      this.options.onViewer?.(event, viewer);
    } catch (err) {
      this.log.error({ err }, 'viewer listener threw');
    }
  }

  /** The viewer session `id` of stream `name`, or a 404 problem. */
  private session(name: string, id: string): WhepSession | undefined {
    const session = this.sessions.get(id);
    return session && session.streamName === name ? session : undefined;
  }

  /** Registers the WHEP routes. */
  registerRoutes(app: FastifyInstance): void {
    if (!app.hasContentTypeParser(SDP)) {
      app.addContentTypeParser([SDP, TRICKLE], { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body));
    }

    app.options('/whep/:name', async (_req, reply) => cors(reply).header('accept-post', SDP).code(204).send());
    app.options('/whep/:name/sessions/:id', async (_req, reply) => cors(reply).code(204).send());

    app.post<{ Params: { name: string } }>('/whep/:name', async (request, reply) => {
      cors(reply);
      if (!hasType(request.headers['content-type'], SDP)) return sendProblem(reply, 'UNSUPPORTED_MEDIA_TYPE', 'the offer must be application/sdp');
      const name = request.params.name;
      // Authorization first: a private stream's existence or state is not told to a viewer without a token.
      const identity = await this.options.authorizePlay?.({ stream: name, token: /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1], clientAddress: request.ip });
      const group = this.groups.get(name);
      const info = group?.leader.info();
      if (!group || !info) return sendProblem(reply, 'STREAM_NOT_FOUND', `stream ${name.slice(0, 64)} is not live over WebRTC`);
      let renditions = this.renditions(name);
      if (info.video && renditions.length === 0) {
        // A B-frame source whose B-frame-free copy is still starting (or its transcoder restarting): wait a little,
        // as a viewer arriving with the stream would otherwise fall back to LL-HLS for good.
        const hungUp = new AbortController();
        reply.raw.once('close', () => hungUp.abort());
        for (let waited = 0; waited < COPY_WAIT_MS && renditions.length === 0 && !hungUp.signal.aborted; waited += 100) {
          await new Promise((r) => setTimeout(r, 100));
          renditions = this.renditions(name);
        }
        if (renditions.length === 0) return sendProblem(reply.header('retry-after', '1'), 'NOT_READY', `stream ${name.slice(0, 64)} is still starting its WebRTC rendition; retry in a second`);
      }
      if (this.sessions.size >= this.options.maxSessions) return sendProblem(reply, 'LIMIT_EXCEEDED', 'too many WebRTC viewers');
      const sections = parseOffer(reply, request.body);
      if (!Array.isArray(sections)) return sections;
      const mids: Partial<Record<MediaKind, { mid: string; payloadType: number }>> = {};
      const tracks: PeerTrack[] = [];
      // Each kind is answered on the first receivable section of that kind, wherever it is in the offer.
      const videoSection = sections.find((s) => s.kind === 'video' && receivable(s));
      const format = info.video && videoSection ? chooseH264Format(videoSection, info.video.profileIdc) : undefined;
      if (info.video && videoSection && format) {
        mids.video = { mid: videoSection.mid!, payloadType: format.payloadType };
        tracks.push({
          kind: 'video',
          direction: 'send',
          mid: videoSection.mid!,
          payloadType: format.payloadType,
          codec: 'H264',
          fmtp: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${format.parameters.get('profile-level-id') ?? info.video.profileLevelId}`,
          ssrc: info.video.ssrc,
        });
      }
      const audioSection = sections.find((s) => s.kind === 'audio' && receivable(s));
      const opus = audioSection && chooseOpusFormat(audioSection);
      if (info.audio && audioSection && opus) {
        mids.audio = { mid: audioSection.mid!, payloadType: opus.payloadType };
        tracks.push({ kind: 'audio', direction: 'send', mid: audioSection.mid!, payloadType: opus.payloadType, codec: 'opus', fmtp: undefined, ssrc: info.audio.ssrc });
      }
      if (info.video ? !mids.video : !mids.audio) {
        const wanted = info.video ? 'video section with H.264 packetization-mode=1' : 'audio section with Opus (this stream is audio only)';
        return sendProblem(reply, 'NO_COMMON_CODEC', `the offer has no receivable ${wanted}`);
      }
      const peer = new WebRtcPeer(`whep-${name}`, this.options.network, request.ip, this.options.connections);
      let answer: string;
      try {
        answer = await peer.answer(String(request.body), tracks);
      } catch (err) {
        peer.close();
        // A peer host that ended or hung is the server's trouble, not the offer's: the player may try again.
        if (err instanceof PeerConnectionUnavailableError) return sendProblem(reply.header('retry-after', '1'), 'NOT_READY', `${err.message}; retry in a second`);
        return sendProblem(reply, 'BAD_SDP', `offer refused: ${(err as Error).message}`);
      }
      const session = new WhepSession(
        name,
        peer,
        group.leader,
        renditions[0]?.source,
        mids,
        (s, reason) => {
          this.sessions.delete(s.id);
          this.closedBytes.set(name, (this.closedBytes.get(name) ?? 0) + s.peer.bytesSent);
          this.notifyViewer('left', this.viewerInfo(s, reason));
          this.log.info({ stream: name, session: s.id.slice(0, 8), reason }, 'WHEP session closed');
        },
        () => group.stream.requestKeyframe(),
        () => this.renditions(name),
        this.log.child({ stream: name }),
      );
      session.remoteUfrag = /a=ice-ufrag:(\S+)/.exec(String(request.body))?.[1];
      session.remoteAddress = request.ip;
      session.identity = identity;
      this.sessions.set(session.id, session);
      this.notifyViewer('joined', this.viewerInfo(session));
      session.start(this.options.connectTimeoutMs);
      this.log.info({ stream: name, session: session.id.slice(0, 8), video: mids.video !== undefined, audio: mids.audio !== undefined }, 'WHEP session created');
      linkIceServers(reply, this.options.playerIceServers);
      const location = `/whep/${encodeURIComponent(name)}/sessions/${session.id}`;
      // WHEP's layer extension (draft-ietf-wish-whep-01 §4.4): where the viewer picks a rendition.
      if (mids.video) reply.header('link', [reply.getHeader('link'), `<${location}/layer>; rel="urn:ietf:params:whep:ext:core:layer"`].filter(Boolean).join(', '));
      return created(reply, location, session.etag, answer);
    });

    app.patch<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id', async (request, reply) => {
      cors(reply);
      const session = this.session(request.params.name, request.params.id);
      if (!session) return sendProblem(reply, 'SESSION_NOT_FOUND', 'no such WHEP session');
      if (!hasType(request.headers['content-type'], TRICKLE)) return sendProblem(reply, 'UNSUPPORTED_MEDIA_TYPE', `PATCH takes ${TRICKLE}`);
      const failed = applyTrickle(session.peer, String(request.body), session.remoteUfrag, '0');
      if (failed) return sendProblem(reply, failed.code, failed.message);
      return reply.code(204).send();
    });

    app.options('/whep/:name/sessions/:id/layer', async (_req, reply) => cors(reply).header('access-control-allow-methods', 'GET, POST, OPTIONS').code(204).send());

    // GET: the renditions and which one this viewer gets; POST {"encodingId": "<id>" | "auto"} chooses (the
    // switch lands at the next keyframe of the chosen rendition). `encodingId` is the extension's word.
    app.get<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id/layer', async (request, reply) => {
      cors(reply);
      const session = this.session(request.params.name, request.params.id);
      if (!session) return sendProblem(reply, 'SESSION_NOT_FOUND', 'no such WHEP session');
      return reply.header('cache-control', 'no-store').send(this.renditionState(session));
    });
    app.post<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id/layer', async (request, reply) => {
      cors(reply);
      const session = this.session(request.params.name, request.params.id);
      if (!session) return sendProblem(reply, 'SESSION_NOT_FOUND', 'no such WHEP session');
      const body = request.body as { encodingId?: unknown } | undefined;
      const id = typeof body?.encodingId === 'string' && body.encodingId.length <= 64 ? body.encodingId : undefined;
      if (!id) return sendProblem(reply, 'BAD_REQUEST', 'send {"encodingId": "<rendition id>"} or {"encodingId": "auto"}');
      if (!session.selectRendition(id)) return sendProblem(reply, 'RENDITION_NOT_FOUND', `no rendition "${id.slice(0, 20)}"; see GET for the renditions`);
      return reply.header('cache-control', 'no-store').send(this.renditionState(session));
    });

    app.delete<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id', async (request, reply) => {
      cors(reply);
      const session = this.session(request.params.name, request.params.id);
      if (!session) return sendProblem(reply, 'SESSION_NOT_FOUND', 'no such WHEP session');
      session.close('viewer sent DELETE');
      return reply.code(200).send();
    });
  }
}
