/**
 * WHIP ingest (RFC 9725) at `/whip/<name>`: a browser or OBS 30+ POSTs an SDP offer with
 * `Authorization: Bearer <stream key>` and gets `201 Created`, a `Location` for the session, an `ETag` and the
 * answer (H.264 packetization-mode 1 + Opus); `PATCH` carries trickle ICE (RFC 8840); `DELETE` ends the publish.
 * Errors (problem details, codes from the catalogue): 401 wrong or missing key, 409 stream already has a
 * publisher (over any protocol), 415 not `application/sdp`, 400 bad SDP or no common codec, 404 unknown session.
 */
import { randomBytes, randomInt } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { GlasscastError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { PublisherHooks, PublisherInfo, PublisherSession } from '../../core/stream.js';
import { sendProblem } from '../../http/problem.js';
import { chooseH264Format, chooseOpusFormat, type SdpMediaSection } from '../../media/sdp/sdp.js';
import type { PeerTrack, WebRtcNetworkOptions } from '../../webrtc/webrtc-peer.js';
import { WebRtcPeer } from '../../webrtc/webrtc-peer.js';
import { applyTrickle, cors, created, hasType, linkIceServers, parseOffer, SDP, TRICKLE } from '../../webrtc/signaling.js';
import { type MediaKind, WhipToStream } from './whip-to-stream.js';


/** What the WHIP server needs from the rest of Glasscast. */
export interface WhipServerOptions {
  network: WebRtcNetworkOptions;
  /** STUN/TURN URLs announced to publishers in `Link` headers. */
  publisherIceServers: string[];
  /** Resolves a stream key to the stream it may publish. Rejects with `PUBLISH_KEY_INVALID`. */
  authorize(key: string, remoteAddress: string): Promise<{ streamName: string }>;
  /** Asked after the key is accepted (the admission hook); throws a GlasscastError to refuse. */
  admitPublish?: (name: string, remoteAddress: string) => Promise<void>;
  /** True when publishing needs no key (development). */
  open: boolean;
  /**
   * Claims the stream to publish on; only the returned handle feeds and releases it.
   * @throws GlasscastError `STREAM_ALREADY_PUBLISHING` when another publisher (any protocol) holds it.
   */
  claimForPublish(name: string, info: PublisherInfo, hooks: PublisherHooks): PublisherSession;
  /** Most a publisher may send (REMB), bits/s. */
  maxBitrate: number;
  /** A publisher that has not connected, or has sent no media for this long, is dropped, ms. */
  mediaTimeoutMs: number;
  /** Keyframe interval asked of publishers (PLI when none came for this long), ms. */
  keyframeIntervalMs: number;
}

/** Interval of the per-session tick (NACKs, gap timeouts, reports), ms. */
const TICK_MS = 40;
/** A publisher must complete ICE + DTLS within this, ms. */
const CONNECT_TIMEOUT_MS = 15_000;

/** One WHIP publish. */
class WhipSession {
  readonly id = randomBytes(16).toString('hex');
  readonly etag = `"${randomBytes(8).toString('hex')}"`;
  readonly createdAt = Date.now();
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  connected = false;
  /** The publisher's ICE username fragment from its offer; a PATCH with another one is an ICE restart. */
  remoteUfrag: string | undefined;

  constructor(
    readonly streamName: string,
    readonly peer: WebRtcPeer,
    readonly mapper: WhipToStream,
    readonly mids: Record<string, MediaKind>,
    private readonly mediaTimeoutMs: number,
    private readonly log: Logger,
    private readonly onClose: (s: WhipSession, reason: string) => void,
  ) {}

  /**
   * Runs `work` from a WebRTC library callback: nothing may escape into native code. A state error (the stream
   * was taken by another publisher or ended meanwhile) or a bug ends this publish only.
   */
  private guarded(work: () => void): void {
    try {
      work();
    } catch (err) {
      if (err instanceof GlasscastError) this.log.warn({ code: err.code }, `ending WHIP publish: ${err.message}`);
      else this.log.error({ err }, 'ending WHIP publish after an internal error');
      this.close(err instanceof GlasscastError ? err.message : 'internal error');
    }
  }

  start(): void {
    this.peer.onRtp((mid, packet) => {
      const kind = this.mids[mid];
      if (kind) this.guarded(() => this.mapper.onRtp(kind, packet));
    });
    this.peer.onRtcp((_mid, packet) => this.guarded(() => this.mapper.onRtcp(packet)));
    this.peer.onOpen(() => {
      this.connected = true;
    });
    this.peer.onStateChange((state) => {
      // "disconnected": ICE consent failed (RFC 7675) — the publisher vanished without DELETE.
      if (state === 'failed' || state === 'closed' || state === 'disconnected') this.close(`publisher connection ${state}`);
    });
    this.timer = setInterval(() => {
      const now = Date.now();
      this.guarded(() => this.mapper.tick(now));
      if (this.closed) return;
      if (!this.connected && now - this.createdAt > CONNECT_TIMEOUT_MS) this.close('publisher did not connect in time');
      else if (this.connected && now - Math.max(this.mapper.lastPacketAt, this.createdAt) > this.mediaTimeoutMs) this.close('publisher stopped sending');
    }, TICK_MS);
    this.timer.unref();
  }

  /** Ends the publish; `endStream` (DELETE) ends the stream at once instead of waiting for a reconnect. */
  close(reason: string, endStream = false): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.mapper.end(reason, endStream);
    this.peer.close();
    this.onClose(this, reason);
  }
}

/** Owns WHIP sessions. `close()` is idempotent. */
export class WhipServer {
  private readonly sessions = new Map<string, WhipSession>();

  constructor(
    private readonly options: WhipServerOptions,
    private readonly log: Logger,
  ) {}

  /** Publishes running now. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /** Ends every publish (streams enter their reconnect grace). Idempotent. */
  close(): void {
    for (const s of [...this.sessions.values()]) s.close('server shutting down');
  }

  /** Checks the Bearer key against the stream name; undefined when allowed, else the reason. */
  private async checkKey(name: string, authorization: string | undefined, remoteAddress: string): Promise<string | undefined> {
    const key = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '')?.[1];
    if (this.options.open) return undefined;
    if (!key) return 'missing Authorization: Bearer <stream key>';
    try {
      const { streamName } = await this.options.authorize(key, remoteAddress);
      return streamName === name ? undefined : 'this key does not publish this stream';
    } catch (err) {
      if (err instanceof GlasscastError && err.code === 'PUBLISH_KEY_INVALID') return 'invalid stream key';
      throw err;
    }
  }

  /** Registers the WHIP routes. */
  registerRoutes(app: FastifyInstance): void {
    if (!app.hasContentTypeParser(SDP)) {
      app.addContentTypeParser([SDP, TRICKLE], { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => done(null, body));
    }
    app.options('/whip/:name', async (_req, reply) => {
      linkIceServers(reply, this.options.publisherIceServers);
      return cors(reply).header('accept-post', SDP).code(204).send();
    });
    app.options('/whip/:name/sessions/:id', async (_req, reply) => cors(reply).code(204).send());

    app.post<{ Params: { name: string } }>('/whip/:name', async (request, reply) => {
      cors(reply);
      if (!hasType(request.headers['content-type'], SDP)) return sendProblem(reply, 'UNSUPPORTED_MEDIA_TYPE', 'the offer must be application/sdp');
      const name = request.params.name;
      const denied = await this.checkKey(name, request.headers.authorization, request.ip);
      if (denied) {
        this.log.warn({ stream: name.slice(0, 64), remote: request.ip }, `WHIP publish refused: ${denied}`);
        return sendProblem(reply.header('www-authenticate', 'Bearer'), 'PUBLISH_KEY_INVALID', denied);
      }
      await this.options.admitPublish?.(name, request.ip);
      const sections = parseOffer(reply, request.body);
      if (!Array.isArray(sections)) return sections;
      // RFC 8843: a port-0 `bundle-only` section is live media on the BUNDLE transport, wherever it is.
      const sending = (s: SdpMediaSection): boolean => !s.rejected && s.direction !== 'recvonly' && s.direction !== 'inactive' && s.mid !== undefined;
      const videoSection = sections.find((s) => s.kind === 'video' && sending(s));
      const h264 = videoSection && chooseH264Format(videoSection, 0x42);
      const audioSection = sections.find((s) => s.kind === 'audio' && sending(s));
      const opus = audioSection && chooseOpusFormat(audioSection);
      if (!videoSection?.mid || !h264) {
        const offered = videoSection?.formats.map((f) => f.name).join(', ') || 'no video';
        return sendProblem(reply, 'NO_COMMON_CODEC', `the offer needs H.264 (packetization-mode=1) video; it has ${offered}`);
      }
      // The claim refuses a second publisher whatever its protocol (RTMP, WHIP, SRT): the catalogue answers 409.
      // The session is made after the answer; the stream's hooks reach it through this holder.
      const holder: { session?: WhipSession } = {};
      let publisher: PublisherSession;
      try {
        publisher = this.options.claimForPublish(name, { protocol: 'whip', remoteAddress: request.ip }, {
          requestKeyframe: () => void holder.session?.mapper.requestKeyframe(),
          streamClosed: (reason) => holder.session?.close(`stream closed: ${reason}`),
          stats: () => ({ counters: { ...(holder.session?.mapper.stats ?? {}) }, info: { session: holder.session?.id.slice(0, 8) } }),
        });
      } catch (err) {
        if (err instanceof GlasscastError) return sendProblem(reply, err.code, err.message);
        throw err;
      }
      const ssrc = randomInt(1, 2 ** 32 - 1);
      const mids: Record<string, MediaKind> = { [videoSection.mid]: 'video' };
      const profileLevelId = h264.parameters.get('profile-level-id') ?? '42e01f';
      const tracks: PeerTrack[] = [
        {
          kind: 'video',
          direction: 'receive',
          mid: videoSection.mid,
          payloadType: h264.payloadType,
          codec: 'H264',
          // x-google-start-bitrate lets Chrome start near the target instead of ramping up from 300 kb/s.
          fmtp: `level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=${profileLevelId};x-google-start-bitrate=${Math.round(Math.min(this.options.maxBitrate, 2_500_000) / 1000)}`,
          ssrc,
        },
      ];
      const payloadTypes: Partial<Record<MediaKind, number>> = { video: h264.payloadType };
      if (audioSection?.mid && opus) {
        mids[audioSection.mid] = 'audio';
        payloadTypes.audio = opus.payloadType;
        tracks.push({ kind: 'audio', direction: 'receive', mid: audioSection.mid, payloadType: opus.payloadType, codec: 'opus', fmtp: undefined, ssrc });
      }
      const peer = new WebRtcPeer(`whip-${name}`, this.options.network, request.ip);
      const log = this.log.child({ stream: name });
      const mapper = new WhipToStream(publisher, log, {
        payloadTypes,
        opusChannels: Number(opus?.channels ?? 2) || 2,
        ssrc,
        maxBitrate: this.options.maxBitrate,
        keyframeIntervalMs: this.options.keyframeIntervalMs,
        sendRtcp: (kind, packet) => {
          const mid = kind === 'video' ? videoSection.mid : audioSection?.mid;
          if (mid !== undefined && payloadTypes[kind] !== undefined) peer.send(mid, packet);
        },
      });
      let answer: string;
      try {
        answer = await peer.answer(String(request.body), tracks);
      } catch (err) {
        peer.close();
        this.log.warn({ stream: name, err: (err as Error).message }, 'WHIP offer refused by the WebRTC library');
        mapper.end('offer refused');
        return sendProblem(reply, 'BAD_SDP', `offer refused: ${(err as Error).message}`);
      }
      const session = new WhipSession(name, peer, mapper, mids, this.options.mediaTimeoutMs, log, (s, reason) => {
        this.sessions.delete(s.id);
        log.info({ session: s.id.slice(0, 8), reason, ...s.mapper.stats }, 'WHIP publish ended');
      });
      holder.session = session;
      session.remoteUfrag = /a=ice-ufrag:(\S+)/.exec(String(request.body))?.[1];
      this.sessions.set(session.id, session);
      session.start();
      log.info({ session: session.id.slice(0, 8), remote: request.ip, audio: payloadTypes.audio !== undefined }, 'WHIP publish started');
      linkIceServers(reply, this.options.publisherIceServers);
      return created(reply, `/whip/${encodeURIComponent(name)}/sessions/${session.id}`, session.etag, answer);
    });

    app.patch<{ Params: { name: string; id: string } }>('/whip/:name/sessions/:id', async (request, reply) => {
      cors(reply);
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return sendProblem(reply, 'SESSION_NOT_FOUND', 'no such WHIP session');
      if (!hasType(request.headers['content-type'], TRICKLE)) return sendProblem(reply, 'UNSUPPORTED_MEDIA_TYPE', `PATCH takes ${TRICKLE}`);
      const failed = applyTrickle(session.peer, String(request.body), session.remoteUfrag, Object.keys(session.mids)[0] ?? '0');
      if (failed) return sendProblem(reply, failed.code, failed.message);
      return reply.code(204).send();
    });

    app.delete<{ Params: { name: string; id: string } }>('/whip/:name/sessions/:id', async (request, reply) => {
      cors(reply);
      const session = this.sessions.get(request.params.id);
      if (!session || session.streamName !== request.params.name) return sendProblem(reply, 'SESSION_NOT_FOUND', 'no such WHIP session');
      session.close('publisher sent DELETE', true);
      return reply.code(200).send();
    });
  }
}
