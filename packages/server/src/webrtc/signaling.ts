/**
 * HTTP signaling pieces shared by WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep): CORS, offer parsing, ICE
 * server `Link` headers (RFC 9725 §4.6) and trickle ICE fragments (RFC 8840) applied to a peer.
 */
import type { FastifyReply } from 'fastify';
import type { ErrorCode } from '../core/errors.js';
import { sendProblem } from '../http/problem.js';
import { MediaParseError } from '../media/errors.js';
import { parseSdp, type SdpMediaSection } from '../media/sdp/sdp.js';
import type { WebRtcPeer } from './webrtc-peer.js';

/** The SDP media type. */
export const SDP = 'application/sdp';
/** The trickle ICE fragment media type (RFC 8840 §9.1). */
export const TRICKLE = 'application/trickle-ice-sdpfrag';

/** Adds the CORS headers browsers need to POST offers and read `Location`/`Link`/`ETag`. */
export function cors(reply: FastifyReply): FastifyReply {
  return reply
    .header('access-control-allow-origin', '*')
    .header('access-control-allow-methods', 'OPTIONS, POST, PATCH, DELETE')
    .header('access-control-allow-headers', 'content-type, authorization, if-match')
    .header('access-control-expose-headers', 'location, link, etag');
}

/** Adds one `Link: <url>; rel="ice-server"` per STUN/TURN URL. */
export function linkIceServers(reply: FastifyReply, urls: readonly string[]): FastifyReply {
  if (urls.length > 0) reply.header('link', urls.map((url) => `<${url}>; rel="ice-server"`).join(', '));
  return reply;
}

/** True when the request's media type (without parameters) is `type`. */
export function hasType(contentType: string | undefined, type: string): boolean {
  return contentType?.split(';')[0]?.trim() === type;
}

/**
 * Applies a trickle ICE fragment's candidates to `peer`. Returns the error to answer, or undefined when applied:
 * `ICE_RESTART_UNSUPPORTED` (405) for a new ufrag (this WebRTC library cannot renew credentials mid-session),
 * `BAD_CANDIDATE` (400) for a malformed candidate.
 */
export function applyTrickle(peer: WebRtcPeer, fragment: string, remoteUfrag: string | undefined, defaultMid: string): { code: ErrorCode; message: string } | undefined {
  const ufrag = /a=ice-ufrag:(\S+)/.exec(fragment)?.[1];
  if (ufrag !== undefined && ufrag !== remoteUfrag) {
    return { code: 'ICE_RESTART_UNSUPPORTED', message: 'ICE restart is not supported; start a new session' };
  }
  let mid = defaultMid;
  for (const line of fragment.split(/\r?\n/)) {
    if (line.startsWith('a=mid:')) mid = line.slice(6).trim();
    else if (line.startsWith('a=candidate:')) {
      try {
        peer.addRemoteCandidate(line.slice(2), mid);
      } catch {
        return { code: 'BAD_CANDIDATE', message: 'malformed ICE candidate' };
      }
    }
  }
  return undefined;
}

/**
 * The media sections of an SDP offer, or the 400 answer when it does not parse (RFC 9725 §4.2 / WHEP: a bad
 * offer is the client's error).
 */
export function parseOffer(reply: FastifyReply, body: unknown): SdpMediaSection[] | FastifyReply {
  try {
    return parseSdp(String(body)).media;
  } catch (err) {
    if (err instanceof MediaParseError) return sendProblem(cors(reply), 'BAD_SDP', err.message);
    throw err;
  }
}

/** Answers a POSTed offer: `201 Created` with the session's `Location`, its `ETag` and the SDP answer. */
export function created(reply: FastifyReply, location: string, etag: string, answer: string): FastifyReply {
  return cors(reply).code(201).header('location', location).header('etag', etag).header('cache-control', 'no-store').type(SDP).send(answer);
}
