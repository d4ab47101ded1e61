/**
 * WHEP (draft-ietf-wish-whep): WebRTC playback signaling over HTTP, one {@link WhepSource} per stream.
 *
 *   OPTIONS /whep/<name>                    CORS preflight; Accept-Post: application/sdp
 *   POST    /whep/<name>                    SDP offer → 201 + Location + SDP answer (+ Link rel="ice-server")
 *   PATCH   /whep/<name>/sessions/<id>      trickle ICE (application/trickle-ice-sdpfrag, RFC 8840) → 204
 *   DELETE  /whep/<name>/sessions/<id>      ends the session → 200
 */
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import type { Logger } from '../../core/logger.js';
import type { Rendition, Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { Subscriber } from '../../core/subscriber.js';
import { chooseH264Format, chooseOpusFormat } from '../../media/sdp/sdp.js';
import type { PeerTrack, WebRtcNetworkOptions } from '../../webrtc/webrtc-peer.js';
import { WebRtcPeer } from '../../webrtc/webrtc-peer.js';
import { applyTrickle, cors, created, hasType, linkIceServers, parseOffer, problem, SDP, TRICKLE } from '../../webrtc/signaling.js';
import type { MediaKind, OpusTranscoderFactory, RtpViewer, VideoReencoderFactory } from './whep-source.js';
import { WhepSource, withPayloadType } from './whep-source.js';
import { LayerPolicy } from './layer-policy.js';
import { LayerSwitch } from './whep-layer-switch.js';

/** Options of the WHEP server. */
export interface WhepServerOptions {
  network: WebRtcNetworkOptions;
  /** ICE servers announced to players in Link headers (STUN/TURN URLs). */
  playerIceServers: string[];
  /** A session that does not connect within this long is closed, ms. Default 15 000. */
  connectTimeoutMs: number;
  /** Most concurrent WHEP sessions (all streams). Default 1000. */
  maxSessions: number;
  /** Makes Opus from AAC once per stream; undefined = video only. */
  opus: OpusTranscoderFactory | undefined;
  /** Re-encodes sources with B-frames once per stream; undefined = send them as they are. */
  reencoder: VideoReencoderFactory | undefined;
}

/** WebRTC figures of one stream (REST API `webrtcStats`). */
export interface WhepStreamStats {
  viewers: number;
  framesDropped: number;
  retransmitted: number;
  keyframeRequests: number;
  /** Rendition switches completed by the current viewers. */
  layerSwitches: number;
  /** Viewers per layer id (`src`, `720p`, …). */
  viewersByLayer: Record<string, number>;
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
export interface WhepLayer {
  /** `src` or the rendition name (`720p`, …). */
  id: string;
  source: WhepSource;
  /** Target (rungs) or measured (source) video bits/s. */
  bitrate: number;
  width: number;
  height: number;
}

/** What a viewer chose: automatic adaptation, or one layer. */
export type LayerMode = 'auto' | 'manual';

/** One WHEP viewer. */
class WhepSession implements RtpViewer {
  readonly id = randomBytes(16).toString('hex');
  readonly etag = `"${randomBytes(8).toString('hex')}"`;
  private closed = false;
  private connectTimer: NodeJS.Timeout | undefined;
  readonly createdAt = Date.now();
  /** The viewer's ICE username fragment from its offer; a PATCH with another one is an ICE restart. */
  remoteUfrag: string | undefined;
  /** Which rendition this viewer's video comes from, and how it moves between them. */
  readonly layerSwitch: LayerSwitch;
  mode: LayerMode = 'auto';
  private readonly policy = new LayerPolicy(Date.now());

  constructor(
    readonly streamName: string,
    readonly peer: WebRtcPeer,
    private readonly source: WhepSource,
    private readonly mids: Partial<Record<MediaKind, { mid: string; payloadType: number }>>,
    private readonly onClose: (s: WhepSession, reason: string) => void,
    /** Asks the stream's publisher for a keyframe (WHIP: forwarded as a PLI; RTMP: cannot, returns false). */
    private readonly requestKeyframe: () => boolean,
    /** The stream's layers now, best first (the source, then renditions by bitrate). */
    private readonly layers: () => WhepLayer[],
    private readonly log: Logger,
  ) {
    this.layerSwitch = new LayerSwitch(
      source,
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
        this.log.info({ session: this.id.slice(0, 8), layer: layerId(to), mode: this.mode }, 'WHEP viewer switched rendition');
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
          const packet = kind === 'video' ? this.layerSwitch.retransmission(seq) : this.source.retransmission(kind, seq);
          if (!packet) continue;
          this.retransmitWindow.count++;
          this.stats.retransmitted++;
          this.peer.send(this.mids[kind]!.mid, withPayloadType(packet, this.payloadType(kind)));
        }
      }
    });
    this.peer.onOpen(() => {
      clearTimeout(this.connectTimer);
      this.source.addViewer(this);
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
    const layers = this.layers();
    const switching = this.layerSwitch.target !== undefined;
    const current = layers.findIndex((l) => l.source === (this.layerSwitch.target ?? this.layerSwitch.source));
    if (current < 0) return;
    const wanted = this.policy.onReport(Date.now(), report, layers, current, switching);
    if (wanted === undefined || this.mode !== 'auto') return;
    this.log.info({ session: this.id.slice(0, 8), from: layers[current]!.id, to: layers[wanted]!.id, ...report, estimate: this.policy.estimate }, 'WHEP viewer adapting rendition');
    this.layerSwitch.request(layers[wanted]!.source);
  }

  /**
   * Chooses a layer by id, or `auto`.
   * @returns false when no layer has that id.
   */
  selectLayer(id: string): boolean {
    if (id === 'auto') {
      this.mode = 'auto';
      return true;
    }
    const layer = this.layers().find((l) => l.id === id);
    if (!layer) return false;
    this.mode = 'manual';
    this.policy.manualSwitch(Date.now());
    this.layerSwitch.request(layer.source);
    return true;
  }

  payloadType(kind: MediaKind): number | undefined {
    return this.mids[kind]?.payloadType;
  }

  /** Audio goes straight out; video goes through the layer switch (it may come from a rendition). */
  sendPacket(kind: MediaKind, packet: Buffer, from: WhepSource, keyframeStart: boolean): void {
    if (kind === 'video') {
      this.layerSwitch.onPacket(packet, from, keyframeStart);
      return;
    }
    const target = this.mids[kind];
    if (target) this.peer.send(target.mid, packet);
  }

  /** The rendition this viewer watches stopped (its transcoder is restarting): back to the source. */
  sourceLost(from: WhepSource): void {
    if (from !== this.source && (this.layerSwitch.source === from || this.layerSwitch.target === from)) this.layerSwitch.request(this.source);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.connectTimer);
    this.layerSwitch.close();
    this.source.removeViewer(this);
    this.peer.close();
    this.onClose(this, reason);
  }
}

/** `src` for a stream's own source, else its rendition name. */
function layerId(source: WhepSource): string {
  return source.group?.layer ?? SOURCE_LAYER;
}

/** Layer id of the stream as published. */
export const SOURCE_LAYER = 'src';

interface SourceEntry {
  source: WhepSource;
  subscriber: Subscriber;
  stream: Stream;
  /** Set for a rendition of a stream. */
  rendition: Rendition | undefined;
}

/** Owns WHEP sources and sessions. `close()` is idempotent. */
export class WhepServer implements StreamObserver {
  private readonly sources = new Map<string, SourceEntry>();
  private readonly sessions = new Map<string, WhepSession>();

  constructor(
    private readonly options: WhepServerOptions,
    private readonly log: Logger,
  ) {}

  streamCreated(stream: Stream): void {
    this.removeSource(stream.name);
    const source = new WhepSource(stream.name, this.log.child({ stream: stream.name, egress: 'whep' }), this.options.opus, this.options.reencoder);
    const subscriber = stream.subscribe(source, { maxQueue: 512, maxLagMs: 1000 });
    this.sources.set(stream.name, { source, subscriber, stream, rendition: undefined });
  }

  /** A rendition becomes a layer of its stream: packetized once, video only, timed like the source. */
  renditionCreated(source: Stream, rendition: Rendition): void {
    const leader = this.sources.get(source.name)?.source;
    if (!leader) return;
    const key = `${source.name}/${rendition.info.name}`;
    this.removeRendition(key);
    const layer = new WhepSource(key, this.log.child({ stream: key, egress: 'whep' }), undefined, undefined, { leader, layer: rendition.info.name });
    const subscriber = rendition.stream.subscribe(
      {
        onSessionStart: (s) => layer.onSessionStart(s),
        onAccessUnit: (au) => layer.onAccessUnit(au),
        onPublisherLost: () => layer.onPublisherLost(),
        onEnd: () => {
          layer.onPublisherLost(); // viewers on it move back to the source
          layer.onEnd();
          if (this.sources.get(key)?.source === layer) this.sources.delete(key);
        },
      },
      { maxQueue: 512, maxLagMs: 1000 },
    );
    this.sources.set(key, { source: layer, subscriber, stream: rendition.stream, rendition });
  }

  private removeRendition(key: string): void {
    const entry = this.sources.get(key);
    if (!entry) return;
    this.sources.delete(key);
    entry.source.onPublisherLost();
    entry.subscriber.close();
    entry.source.close();
  }

  private removeSource(name: string): void {
    const entry = this.sources.get(name);
    if (!entry) return;
    this.sources.delete(name);
    for (const s of [...this.sessions.values()]) if (s.streamName === name) s.close('stream replaced');
    for (const key of [...this.sources.keys()]) if (key.startsWith(`${name}/`)) this.removeRendition(key);
    entry.subscriber.close();
    entry.source.close();
  }

  /**
   * The layers a viewer of `name` can watch now, best first: the source as published, then every rendition
   * that is live, by bitrate.
   */
  layers(name: string): WhepLayer[] {
    const origin = this.sources.get(name);
    if (!origin?.source.info()?.video) return [];
    const size = (stream: Stream): { width: number; height: number } => {
      const v = stream.tracks.find((t) => t.kind === 'video');
      return v?.kind === 'video' ? { width: v.info.width, height: v.info.height } : { width: 0, height: 0 };
    };
    const out: WhepLayer[] = [{ id: SOURCE_LAYER, source: origin.source, bitrate: origin.source.videoBitrate || Infinity, ...size(origin.stream) }];
    for (const r of origin.stream.renditions) {
      const entry = this.sources.get(`${name}/${r.info.name}`);
      if (entry && entry.stream.state === 'live' && entry.source.info()?.video) {
        out.push({ id: r.info.name, source: entry.source, bitrate: r.info.bitrate, width: r.info.width, height: r.info.height });
      }
    }
    // The source is the best layer even when its measured rate is below a rung's target (a static picture).
    return [out[0]!, ...out.slice(1).sort((a, b) => b.bitrate - a.bitrate)];
  }

  /** The source of a stream, if any. */
  source(name: string): WhepSource | undefined {
    return this.sources.get(name)?.source;
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
    let layerSwitches = 0;
    const viewersByLayer: Record<string, number> = {};
    for (const s of this.sessions.values()) {
      if (s.streamName !== name) continue;
      viewers++;
      retransmitted += s.stats.retransmitted;
      keyframeRequests += s.stats.keyframeRequests;
      layerSwitches += s.layerSwitch.switches;
      const layer = layerId(s.layerSwitch.source);
      viewersByLayer[layer] = (viewersByLayer[layer] ?? 0) + 1;
    }
    return { viewers, framesDropped: this.sources.get(name)?.subscriber.droppedFrames ?? 0, retransmitted, keyframeRequests, layerSwitches, viewersByLayer };
  }

  /** A viewer's layer state for the layer endpoint. */
  private layerState(session: WhepSession): { mode: LayerMode; current: string; pending: string | undefined; layers: { id: string; width: number; height: number; bitrate: number | undefined }[] } {
    return {
      mode: session.mode,
      current: layerId(session.layerSwitch.source),
      pending: session.layerSwitch.target && layerId(session.layerSwitch.target),
      layers: this.layers(session.streamName).map((l) => ({ id: l.id, width: l.width, height: l.height, bitrate: Number.isFinite(l.bitrate) ? l.bitrate : undefined })),
    };
  }

  /** Sessions open now. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Closes every session and source. Idempotent. */
  close(): void {
    for (const s of [...this.sessions.values()]) s.close('server shutting down');
    for (const name of [...this.sources.keys()]) this.removeSource(name);
  }

  /** Registers the WHEP routes. */
  registerRoutes(app: FastifyInstance): void {
    if (!app.hasContentTypeParser(SDP)) {
      app.addContentTypeParser([SDP, TRICKLE], { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body));
    }

    app.options('/whep/:name', async (_req, reply) => cors(reply).header('accept-post', SDP).code(204).send());
    app.options('/whep/:name/sessions/:id', async (_req, reply) => cors(reply).code(204).send());

    app.post<{ Params: { name: string } }>('/whep/:name', async (request, reply) => {
      if (!hasType(request.headers['content-type'], SDP)) {
        return problem(reply, 415, 'UNSUPPORTED_MEDIA_TYPE', 'the offer must be application/sdp');
      }
      const name = request.params.name;
      const source = this.source(name);
      const info = source?.info();
      if (!source || !info?.video) return problem(reply, 404, 'STREAM_NOT_FOUND', `stream ${name} is not live over WebRTC`);
      if (this.sessions.size >= this.options.maxSessions) return problem(reply, 503, 'LIMIT_EXCEEDED', 'too many WebRTC viewers');
      const sections = parseOffer(reply, request.body);
      if (!Array.isArray(sections)) return sections;
      const videoSection = sections.find((s) => s.kind === 'video' && !s.rejected && s.direction !== 'sendonly' && s.direction !== 'inactive');
      const format = videoSection && chooseH264Format(videoSection, info.video.profileIdc);
      if (!videoSection?.mid || !format) {
        return problem(reply, 400, 'NO_COMMON_CODEC', 'the offer has no receivable video section with H.264 packetization-mode=1');
      }
      const peer = new WebRtcPeer(`whep-${name}`, this.options.network, this.log);
      const mids: Partial<Record<MediaKind, { mid: string; payloadType: number }>> = {
        video: { mid: videoSection.mid, payloadType: format.payloadType },
      };
      const tracks: PeerTrack[] = [
        {
          kind: 'video',
          direction: 'send',
          mid: videoSection.mid,
          payloadType: format.payloadType,
          codec: 'H264',
          fmtp: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${format.parameters.get('profile-level-id') ?? info.video.profileLevelId}`,
          ssrc: info.video.ssrc,
        },
      ];
      const audioSection = sections.find((s) => s.kind === 'audio' && !s.rejected && s.direction !== 'sendonly' && s.direction !== 'inactive');
      const opus = audioSection && chooseOpusFormat(audioSection);
      if (info.audio && audioSection?.mid && opus) {
        mids.audio = { mid: audioSection.mid, payloadType: opus.payloadType };
        tracks.push({ kind: 'audio', direction: 'send', mid: audioSection.mid, payloadType: opus.payloadType, codec: 'opus', fmtp: undefined, ssrc: info.audio.ssrc });
      }
      let answer: string;
      try {
        answer = await peer.answer(String(request.body), tracks);
      } catch (err) {
        peer.close();
        return problem(reply, 400, 'BAD_SDP', `offer refused: ${(err as Error).message}`);
      }
      const stream = this.sources.get(name)?.stream;
      const session = new WhepSession(
        name,
        peer,
        source,
        mids,
        (s, reason) => {
          this.sessions.delete(s.id);
          this.log.info({ stream: name, session: s.id.slice(0, 8), reason }, 'WHEP session closed');
        },
        () => stream?.requestKeyframe() ?? false,
        () => this.layers(name),
        this.log.child({ stream: name }),
      );
      session.remoteUfrag = /a=ice-ufrag:(\S+)/.exec(String(request.body))?.[1];
      this.sessions.set(session.id, session);
      session.start(this.options.connectTimeoutMs);
      this.log.info({ stream: name, session: session.id.slice(0, 8) }, 'WHEP session created');
      linkIceServers(reply, this.options.playerIceServers);
      const location = `/whep/${encodeURIComponent(name)}/sessions/${session.id}`;
      // WHEP's layer extension (draft-ietf-wish-whep-01 §4.4): where the viewer picks a rendition.
      reply.header('link', [reply.getHeader('link'), `<${location}/layer>; rel="urn:ietf:params:whep:ext:core:layer"`].filter(Boolean).join(', '));
      return created(reply, location, session.etag, answer);
    });

    app.patch<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id', async (request, reply) => {
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return problem(reply, 404, 'SESSION_NOT_FOUND', 'no such WHEP session');
      if (!hasType(request.headers['content-type'], TRICKLE)) {
        return problem(reply, 415, 'UNSUPPORTED_MEDIA_TYPE', `PATCH takes ${TRICKLE}`);
      }
      const failed = applyTrickle(session.peer, String(request.body), session.remoteUfrag, '0');
      if (failed) return problem(reply, failed.status, failed.code, failed.message);
      return cors(reply).code(204).send();
    });

    app.options('/whep/:name/sessions/:id/layer', async (_req, reply) => cors(reply).header('access-control-allow-methods', 'GET, POST, OPTIONS').code(204).send());

    // GET: the layers and which one this viewer gets; POST {"encodingId": "<id>" | "auto"} chooses (the switch
    // lands at the next keyframe of the chosen rendition).
    app.get<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id/layer', async (request, reply) => {
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return problem(reply, 404, 'SESSION_NOT_FOUND', 'no such WHEP session');
      return cors(reply).header('cache-control', 'no-store').send(this.layerState(session));
    });
    app.post<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id/layer', async (request, reply) => {
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return problem(reply, 404, 'SESSION_NOT_FOUND', 'no such WHEP session');
      const body = request.body as { encodingId?: unknown } | undefined;
      const id = typeof body?.encodingId === 'string' ? body.encodingId : undefined;
      if (!id) return problem(reply, 400, 'BAD_REQUEST', 'send {"encodingId": "<layer id>"} or {"encodingId": "auto"}');
      if (!session.selectLayer(id)) return problem(reply, 400, 'LAYER_NOT_FOUND', `no layer "${id.slice(0, 20)}"; see GET for the layers`);
      return cors(reply).header('cache-control', 'no-store').send(this.layerState(session));
    });

    app.delete<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id', async (request, reply) => {
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return problem(reply, 404, 'SESSION_NOT_FOUND', 'no such WHEP session');
      session.close('viewer sent DELETE');
      return cors(reply).code(200).send();
    });
  }
}
