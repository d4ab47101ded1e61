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
import type { Stream } from '../../core/stream.js';
import type { StreamObserver } from '../../core/stream-registry.js';
import type { Subscriber } from '../../core/subscriber.js';
import { MediaParseError } from '../../media/errors.js';
import { chooseH264Format, chooseOpusFormat, parseSdp, type SdpMediaSection } from '../../media/sdp/sdp.js';
import type { PeerTrack, WebRtcNetworkOptions } from '../../webrtc/webrtc-peer.js';
import { WebRtcPeer } from '../../webrtc/webrtc-peer.js';
import { applyTrickle, cors, created, hasType, linkIceServers, problem, SDP, TRICKLE } from '../../webrtc/signaling.js';
import type { MediaKind, OpusTranscoderFactory, RtpViewer, VideoReencoderFactory } from './whep-source.js';
import { WhepSource, withPayloadType } from './whep-source.js';

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

/** Cap on NACK retransmissions per viewer per second, so a hostile or broken receiver cannot amplify traffic. */
const MAX_RETRANSMITS_PER_SECOND = 500;

/** One WHEP viewer. */
class WhepSession implements RtpViewer {
  readonly id = randomBytes(16).toString('hex');
  readonly etag = `"${randomBytes(8).toString('hex')}"`;
  private closed = false;
  private connectTimer: NodeJS.Timeout | undefined;
  readonly createdAt = Date.now();
  /** The viewer's ICE username fragment from its offer; a PATCH with another one is an ICE restart. */
  remoteUfrag: string | undefined;

  constructor(
    readonly streamName: string,
    readonly peer: WebRtcPeer,
    private readonly source: WhepSource,
    private readonly mids: Partial<Record<MediaKind, { mid: string; payloadType: number }>>,
    private readonly onClose: (s: WhepSession, reason: string) => void,
    /** Asks the stream's publisher for a keyframe (WHIP: forwarded as a PLI; RTMP: cannot, returns false). */
    private readonly requestKeyframe: () => boolean,
  ) {}

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
      // A viewer that lost its picture: the next keyframe repairs it; ask the publisher to send it now if it can.
      if (feedback.keyframeRequests.length > 0) this.requestKeyframe();
      const now = Date.now();
      if (now - this.retransmitWindow.start > 1000) this.retransmitWindow = { start: now, count: 0 };
      for (const nack of feedback.nacks) {
        for (const seq of nack.sequenceNumbers) {
          if (this.retransmitWindow.count >= MAX_RETRANSMITS_PER_SECOND) return;
          const packet = this.source.retransmission(kind, seq);
          if (!packet) continue;
          this.retransmitWindow.count++;
          this.stats.retransmitted++;
          this.sendPacket(kind, withPayloadType(packet, this.payloadType(kind)));
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

  payloadType(kind: MediaKind): number | undefined {
    return this.mids[kind]?.payloadType;
  }

  /** Sends a packet that already carries this viewer's payload type (the source patches once per type). */
  sendPacket(kind: MediaKind, packet: Buffer): void {
    const target = this.mids[kind];
    if (target) this.peer.send(target.mid, packet);
  }

  close(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.connectTimer);
    this.source.removeViewer(this);
    this.peer.close();
    this.onClose(this, reason);
  }
}

interface SourceEntry {
  source: WhepSource;
  subscriber: Subscriber;
  stream: Stream;
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
    this.sources.set(stream.name, { source, subscriber, stream });
  }

  private removeSource(name: string): void {
    const entry = this.sources.get(name);
    if (!entry) return;
    this.sources.delete(name);
    for (const s of [...this.sessions.values()]) if (s.streamName === name) s.close('stream replaced');
    entry.subscriber.close();
    entry.source.close();
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
  streamStats(name: string): { viewers: number; framesDropped: number; retransmitted: number; keyframeRequests: number } {
    let viewers = 0;
    let retransmitted = 0;
    let keyframeRequests = 0;
    for (const s of this.sessions.values()) {
      if (s.streamName !== name) continue;
      viewers++;
      retransmitted += s.stats.retransmitted;
      keyframeRequests += s.stats.keyframeRequests;
    }
    return { viewers, framesDropped: this.sources.get(name)?.subscriber.droppedFrames ?? 0, retransmitted, keyframeRequests };
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
      let sections: SdpMediaSection[];
      try {
        sections = parseSdp(String(request.body)).media;
      } catch (err) {
        if (err instanceof MediaParseError) return problem(reply, 400, 'BAD_SDP', err.message);
        throw err;
      }
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
      );
      session.remoteUfrag = /a=ice-ufrag:(\S+)/.exec(String(request.body))?.[1];
      this.sessions.set(session.id, session);
      session.start(this.options.connectTimeoutMs);
      this.log.info({ stream: name, session: session.id.slice(0, 8) }, 'WHEP session created');
      linkIceServers(reply, this.options.playerIceServers);
      return created(reply, `/whep/${encodeURIComponent(name)}/sessions/${session.id}`, session.etag, answer);
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

    app.delete<{ Params: { name: string; id: string } }>('/whep/:name/sessions/:id', async (request, reply) => {
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return problem(reply, 404, 'SESSION_NOT_FOUND', 'no such WHEP session');
      session.close('viewer sent DELETE');
      return cors(reply).code(200).send();
    });
  }
}
