/**
 * Playback tokens: short-lived JWTs (RFC 7519) bound to one stream, minted by this server (HS256 with the
 * server's secret, RFC 7518 §3.2) or issued elsewhere and checked against that issuer's JWKS (ES256/RS256,
 * RFC 7517) when configured. Claims: `stream` (the stream name), `exp`, optional `sub` (viewer id), `jti`.
 *
 * A verified token is remembered until it expires (a *grant*), so LL-HLS, which carries the token on every
 * playlist, part and segment request, verifies once per viewer, not once per part.
 */
import { randomBytes } from 'node:crypto';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, SignJWT, type JWTPayload } from 'jose';
import { GlasscastError } from '../core/errors.js';

/** Issuer and audience of tokens this server mints. */
const ISSUER = 'glasscast';
const AUDIENCE = 'glasscast:playback';
/** Most grants remembered; the oldest go first. */
const MAX_GRANTS = 20_000;
/** Longest token a request may carry, characters. */
const MAX_TOKEN_LENGTH = 4096;

/** What a verified token allows. */
export interface PlaybackGrant {
  stream: string;
  /** Viewer id (`sub`), if the token names one. */
  viewerId: string | undefined;
  /** Token id (`jti`): kicking a viewer revokes it. */
  tokenId: string | undefined;
  /** Expiry, epoch ms. */
  expiresAt: number;
  /** Every claim, for the admission hook. */
  claims: JWTPayload;
}

/** Options of {@link PlaybackTokens}. */
export interface PlaybackTokensOptions {
  /** HS256 key (≥ 32 bytes). */
  secret: Uint8Array;
  /** An external issuer's JWKS URL; its ES256/RS256 tokens are accepted too. */
  jwksUrl?: string | undefined;
  /** Required `iss` of external tokens, if set. */
  issuer?: string | undefined;
  /** Required `aud` of external tokens, if set. */
  audience?: string | undefined;
}

/** Mints and verifies playback tokens; keeps grants and revocations in memory. */
export class PlaybackTokens {
  private readonly grants = new Map<string, PlaybackGrant>();
  /** Revoked token ids → until when (epoch ms; after the token's expiry the entry is useless). */
  private readonly revoked = new Map<string, number>();
  private readonly jwks: ReturnType<typeof createRemoteJWKSet> | undefined;

  constructor(private readonly options: PlaybackTokensOptions) {
    this.jwks = options.jwksUrl ? createRemoteJWKSet(new URL(options.jwksUrl), { timeoutDuration: 5000, cooldownDuration: 30_000 }) : undefined;
  }

  /**
   * A token for `stream`, valid for `ttlSeconds` (1 s – 7 days), naming `viewerId` if given.
   * @returns the compact JWT, its id and expiry (ISO 8601).
   */
  async mint(stream: string, ttlSeconds: number, viewerId?: string): Promise<{ token: string; tokenId: string; expiresAt: string }> {
    const tokenId = randomBytes(12).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ stream }).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setIssuer(ISSUER).setAudience(AUDIENCE).setIssuedAt(now).setExpirationTime(now + ttlSeconds).setJti(tokenId);
    if (viewerId) jwt.setSubject(viewerId);
    return { token: await jwt.sign(this.options.secret), tokenId, expiresAt: new Date((now + ttlSeconds) * 1000).toISOString() };
  }

  /**
   * The grant of `token` for `stream`.
   * @throws GlasscastError `PLAYBACK_TOKEN_INVALID` (malformed, bad signature, wrong issuer/audience),
   *   `PLAYBACK_TOKEN_EXPIRED`, `PLAYBACK_FORBIDDEN` (another stream's token, or revoked).
   */
  async verify(token: string, stream: string): Promise<PlaybackGrant> {
    const now = Date.now();
    let grant = this.grants.get(token);
    if (!grant) {
      grant = await this.verifyJwt(token);
      if (this.grants.size >= MAX_GRANTS) this.sweep(now);
      this.grants.set(token, grant);
    }
    if (grant.expiresAt <= now) throw new GlasscastError('PLAYBACK_TOKEN_EXPIRED', 'the playback token has expired');
    if (grant.stream !== stream) throw new GlasscastError('PLAYBACK_FORBIDDEN', 'the playback token is for another stream');
    if (grant.tokenId && this.revoked.has(grant.tokenId)) throw new GlasscastError('PLAYBACK_FORBIDDEN', 'the playback token was revoked');
    return grant;
  }

  /** Revokes a token id until `until` (epoch ms; its expiry). Grants of it stop working at once. */
  revoke(tokenId: string, until: number): void {
    this.revoked.set(tokenId, until);
  }

  private async verifyJwt(token: string): Promise<PlaybackGrant> {
    if (token.length > MAX_TOKEN_LENGTH) throw new GlasscastError('PLAYBACK_TOKEN_INVALID', 'the playback token is too long');
    let payload: JWTPayload;
    try {
      const header = JSON.parse(Buffer.from(token.split('.')[0] ?? '', 'base64url').toString('utf8')) as { alg?: unknown };
      if (header.alg === 'HS256') {
        payload = (await jwtVerify(token, this.options.secret, { issuer: ISSUER, audience: AUDIENCE, algorithms: ['HS256'] })).payload;
      } else if (this.jwks && (header.alg === 'ES256' || header.alg === 'RS256')) {
        payload = (await jwtVerify(token, this.jwks, { algorithms: ['ES256', 'RS256'], issuer: this.options.issuer, audience: this.options.audience })).payload;
      } else {
        throw new GlasscastError('PLAYBACK_TOKEN_INVALID', `playback tokens are HS256${this.jwks ? ', ES256 or RS256' : ''} JWTs`);
      }
    } catch (err) {
      if (err instanceof GlasscastError) throw err;
      if (err instanceof joseErrors.JWTExpired) throw new GlasscastError('PLAYBACK_TOKEN_EXPIRED', 'the playback token has expired');
      throw new GlasscastError('PLAYBACK_TOKEN_INVALID', 'the playback token is not valid');
    }
    if (typeof payload['stream'] !== 'string' || typeof payload.exp !== 'number') throw new GlasscastError('PLAYBACK_TOKEN_INVALID', 'the playback token names no stream or expiry');
    return { stream: payload['stream'], viewerId: payload.sub, tokenId: payload.jti, expiresAt: payload.exp * 1000, claims: payload };
  }

  /** Forgets expired grants and revocations (and the oldest half if still full). */
  private sweep(now: number): void {
    for (const [token, grant] of this.grants) if (grant.expiresAt <= now) this.grants.delete(token);
    for (const [id, until] of this.revoked) if (until <= now) this.revoked.delete(id);
    if (this.grants.size >= MAX_GRANTS) {
      let drop = this.grants.size / 2;
      for (const token of this.grants.keys()) {
        if (drop-- <= 0) break;
        this.grants.delete(token);
      }
    }
  }
}
