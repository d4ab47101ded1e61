/**
 * The platform's pure parts: playback tokens (mint, verify, expiry, another stream, revocation, forged and
 * random input), Standard Webhooks signatures against the reference package, the token query carried into
 * LL-HLS playlists (golden text), and the failed-authentication limiter.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SignJWT } from 'jose';
import { Webhook } from 'standardwebhooks';
import { FailureLimiter } from '../../src/auth/failure-limiter.js';
import { PlaybackTokens } from '../../src/auth/playback-tokens.js';
import { GlasscastError, RateLimitedError } from '../../src/core/errors.js';
import { withQuery } from '../../src/egress/llhls/llhls-playlist.js';
import { generateWebhookSecret } from '../../src/store/webhook-store.js';
import { signWebhook } from '../../src/webhooks/webhook-dispatcher.js';
import { seededRandom } from '../support/random.js';

const secret = new Uint8Array(32).fill(7);

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    assert.ok(err instanceof GlasscastError, `a GlasscastError, not ${String(err)}`);
    return err.code;
  }
}

describe('playback tokens (RFC 7519 JWT, HS256)', () => {
  it('verifies a minted token for its stream only, with its viewer id, until it expires or is revoked', async () => {
    const tokens = new PlaybackTokens({ secret });
    const minted = await tokens.mint('talk', 60, 'alice');
    const grant = await tokens.verify(minted.token, 'talk');
    assert.equal(grant.viewerId, 'alice');
    assert.equal(grant.tokenId, minted.tokenId);
    assert.ok(Math.abs(grant.expiresAt - Date.parse(minted.expiresAt)) < 1000);
    assert.equal(await code(tokens.verify(minted.token, 'other')), 'PLAYBACK_FORBIDDEN');
    tokens.revoke(minted.tokenId, grant.expiresAt);
    assert.equal(await code(tokens.verify(minted.token, 'talk')), 'PLAYBACK_FORBIDDEN');
  });

  it('refuses an expired token, one signed with another secret, an unsigned one and one without a stream', async () => {
    const tokens = new PlaybackTokens({ secret });
    const now = Math.floor(Date.now() / 1000);
    const expired = await new SignJWT({ stream: 'talk' }).setProtectedHeader({ alg: 'HS256' }).setIssuer('glasscast').setAudience('glasscast:playback').setExpirationTime(now - 5).sign(secret);
    assert.equal(await code(tokens.verify(expired, 'talk')), 'PLAYBACK_TOKEN_EXPIRED');
    const foreign = await new PlaybackTokens({ secret: new Uint8Array(32).fill(9) }).mint('talk', 60);
    assert.equal(await code(tokens.verify(foreign.token, 'talk')), 'PLAYBACK_TOKEN_INVALID');
    const header = Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url');
    const body = Buffer.from(JSON.stringify({ stream: 'talk', exp: now + 60 })).toString('base64url');
    assert.equal(await code(tokens.verify(`${header}.${body}.`, 'talk')), 'PLAYBACK_TOKEN_INVALID');
    const noStream = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setIssuer('glasscast').setAudience('glasscast:playback').setExpirationTime(now + 60).sign(secret);
    assert.equal(await code(tokens.verify(noStream, 'talk')), 'PLAYBACK_TOKEN_INVALID');
    assert.equal(await code(tokens.verify('x'.repeat(5000), 'talk')), 'PLAYBACK_TOKEN_INVALID');
  });

  it('answers 300 random and mutated tokens with a playback error, never a crash (fuzz)', async () => {
    const tokens = new PlaybackTokens({ secret });
    const good = (await tokens.mint('talk', 60)).token;
    const rand = seededRandom(11);
    for (let i = 0; i < 300; i++) {
      const chars = good.split('');
      const flips = 1 + Math.floor(rand() * 4);
      for (let f = 0; f < flips; f++) chars[Math.floor(rand() * chars.length)] = String.fromCharCode(32 + Math.floor(rand() * 95));
      const input = i % 3 === 0 ? chars.join('').slice(0, Math.floor(rand() * good.length)) : chars.join('');
      const result = await code(tokens.verify(input, 'talk'));
      assert.ok(['ok', 'PLAYBACK_TOKEN_INVALID', 'PLAYBACK_TOKEN_EXPIRED', 'PLAYBACK_FORBIDDEN'].includes(result), result);
    }
  });
});

describe('Standard Webhooks signatures', () => {
  it('signs so that the standardwebhooks package verifies, and not for a changed body', () => {
    const key = generateWebhookSecret();
    const body = JSON.stringify({ type: 'stream.started', timestamp: new Date().toISOString(), data: { name: 'talk' } });
    const ts = Math.floor(Date.now() / 1000);
    const headers = { 'webhook-id': 'msg_1', 'webhook-timestamp': String(ts), 'webhook-signature': signWebhook(key, 'msg_1', ts, body) };
    assert.deepEqual(new Webhook(key).verify(body, headers), JSON.parse(body));
    assert.throws(() => new Webhook(key).verify(body.replace('talk', 'tall'), headers));
  });

  it('matches the specification example (golden signature)', () => {
    // From the Standard Webhooks specification's reference test vector.
    const sig = signWebhook('whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw', 'msg_p5jXN8AQM9LWM0D4loKWxJek', 1614265330, '{"test": 2432232314}');
    assert.equal(sig, 'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=');
  });
});

describe('LL-HLS playlists carrying a token', () => {
  it('adds the query to every URI line and URI attribute (golden playlist)', () => {
    const playlist = [
      '#EXTM3U',
      '#EXT-X-MAP:URI="e1/init0.mp4"',
      '#EXT-X-PART:DURATION=0.33333,URI="e1/part12.m4s",INDEPENDENT=YES',
      '#EXTINF:2.00000,',
      'e1/seg3.m4s',
      '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e1/part13.m4s"',
      '#EXT-X-RENDITION-REPORT:URI="../720p/media.m3u8",LAST-MSN=3,LAST-PART=1',
      '',
    ].join('\n');
    assert.equal(
      withQuery(playlist, 'token=abc.def'),
      [
        '#EXTM3U',
        '#EXT-X-MAP:URI="e1/init0.mp4?token=abc.def"',
        '#EXT-X-PART:DURATION=0.33333,URI="e1/part12.m4s?token=abc.def",INDEPENDENT=YES',
        '#EXTINF:2.00000,',
        'e1/seg3.m4s?token=abc.def',
        '#EXT-X-PRELOAD-HINT:TYPE=PART,URI="e1/part13.m4s?token=abc.def"',
        '#EXT-X-RENDITION-REPORT:URI="../720p/media.m3u8?token=abc.def",LAST-MSN=3,LAST-PART=1',
        '',
      ].join('\n'),
    );
    assert.equal(withQuery(playlist, ''), playlist);
    assert.equal(withQuery('a.m3u8?x=1\n', 't=2'), 'a.m3u8?x=1&t=2\n');
  });
});

describe('failed authentications per address', () => {
  it('refuses an address past the limit until the minute ends, and no other address', () => {
    const limiter = new FailureLimiter(3);
    const t0 = 1_000_000;
    for (let i = 0; i < 3; i++) {
      limiter.check('10.0.0.1', t0);
      limiter.failed('10.0.0.1', t0);
    }
    assert.throws(() => limiter.check('10.0.0.1', t0 + 1000), (err: unknown) => err instanceof RateLimitedError && err.retryAfterSeconds === 59);
    limiter.check('10.0.0.2', t0 + 1000);
    limiter.check('10.0.0.1', t0 + 60_000);
  });
});
