/**
 * Who may watch a stream: its visibility (public and unlisted play without a token; private needs a playback
 * token for that stream), then the admission hook for a viewer's first request. Both egresses (WHEP, LL-HLS)
 * call {@link PlaybackGate.authorize}; neither knows about tokens or hooks.
 */
import type { GlasscastError as GlasscastErrorType } from '../core/errors.js';
import { GlasscastError } from '../core/errors.js';
import type { Visibility } from '../store/stream-store.js';
import type { AdmissionHook } from './admission.js';
import type { PlaybackGrant, PlaybackTokens } from './playback-tokens.js';

/** One play request as an egress sees it. */
export interface PlayRequest {
  stream: string;
  protocol: 'whep' | 'llhls' | 'srt' | 'vod' | 'thumbnail';
  /** A recording made while the stream was private stays private, whatever the stream is now. */
  private?: boolean;
  /** The playback token the viewer sent (Bearer or `?token=`), if any. */
  token: string | undefined;
  clientAddress: string;
  /** True for a viewer's first request (WHEP offer, LL-HLS multivariant playlist): the admission hook is asked. */
  entry: boolean;
}

/** The stream lookup the gate needs. */
export interface VisibilityLookup {
  /** The stream's visibility; undefined for a stream not configured (open publishing): public. */
  visibility(name: string): Promise<Visibility | undefined>;
}

/** Failed authorizations an address may make per minute before it gets 429s. */
export interface FailureLimiter {
  /** Throws `RATE_LIMITED` when `address` failed too often. */
  check(address: string): void;
  /** Counts a failure of `address`. */
  failed(address: string): void;
}

/** Decides playback. */
export class PlaybackGate {
  constructor(
    private readonly streams: VisibilityLookup,
    private readonly tokens: PlaybackTokens,
    private readonly admission: AdmissionHook,
    private readonly failures: FailureLimiter,
  ) {}

  /**
   * Resolves with the token's grant (undefined when the stream needs none and none was sent).
   * @throws GlasscastError `PLAYBACK_TOKEN_REQUIRED` / `_INVALID` / `_EXPIRED` (401), `PLAYBACK_FORBIDDEN` (403),
   *   `ADMISSION_DENIED` (403), `ADMISSION_UNAVAILABLE` (503), `RATE_LIMITED` (429) after many failures.
   */
  async authorize(request: PlayRequest): Promise<PlaybackGrant | undefined> {
    const visibility = request.private ? 'private' : ((await this.streams.visibility(request.stream)) ?? 'public');
    let grant: PlaybackGrant | undefined;
    if (visibility === 'private') {
      this.failures.check(request.clientAddress);
      try {
        if (!request.token) throw new GlasscastError('PLAYBACK_TOKEN_REQUIRED', `stream ${request.stream.slice(0, 64)} is private: a playback token is required`);
        grant = await this.tokens.verify(request.token, request.stream);
      } catch (err) {
        if ((err as GlasscastErrorType).code !== 'PLAYBACK_TOKEN_EXPIRED') this.failures.failed(request.clientAddress);
        throw err;
      }
    }
    if (request.entry) {
      await this.admission.check({ action: 'play', protocol: request.protocol, stream: request.stream, clientAddress: request.clientAddress, claims: grant ? { ...grant.claims } : null });
    }
    return grant;
  }
}
