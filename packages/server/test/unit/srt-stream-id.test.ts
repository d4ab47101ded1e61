/**
 * SRT stream ids as users paste them (OBS, FFmpeg, vMix; SRT Access Control, MediaMTX, OvenMediaEngine), read into
 * one request: a table of inputs and what they mean, and the ids that are refused.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GlasscastError } from '../../src/core/errors.js';
import { parseSrtStreamId, resourceTarget, type SrtStreamRequest } from '../../src/ingest/srt/srt-stream-id.js';

const KEY = 'Jx0bq2-Fk_9aPq7Lm3Ns5Tv8Wx1Yz4Ab';

const TABLE: [string, string, Partial<SrtStreamRequest>][] = [
  ['OBS Stream Key field (the key alone)', KEY, { mode: 'publish', resource: KEY, dialect: 'plain' }],
  ['FFmpeg streamid=live/<key>', `live/${KEY}`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'plain' }],
  ['leading slash and NUL padding', `/live/${KEY}\0\0`, { mode: 'publish', resource: `live/${KEY}` }],
  ['Access Control publish', `#!::r=live/${KEY},m=publish`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'access-control' }],
  ['Access Control keys in any order, with user and user_* keys', `#!::m=publish,user_room=7,u=alice,r=live/${KEY},h=example.com,s=abc`, { mode: 'publish', resource: `live/${KEY}`, user: 'alice' }],
  ['Access Control without m is a request (the spec default)', '#!::r=live/main', { mode: 'request', resource: 'live/main' }],
  ['Access Control request', '#!::r=live/main,m=request', { mode: 'request', resource: 'live/main' }],
  ['MediaMTX publish', `publish:live/${KEY}`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'mediamtx' }],
  ['MediaMTX publish with user and password', `publish:${KEY}:bob:s3cret`, { mode: 'publish', resource: KEY, user: 'bob', password: 's3cret' }],
  ['MediaMTX read', 'read:live/main', { mode: 'request', resource: 'live/main', dialect: 'mediamtx' }],
  ['Access Control percent-encoded in the URL (ffmpeg passes it as typed)', `%23!%3A%3Ar%3Dlive%2F${KEY}%2Cm%3Dpublish`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'access-control' }],
  ['MediaMTX percent-encoded', `publish%3Alive%2F${KEY}`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'mediamtx' }],
  ['OvenMediaEngine vhost/app/stream', `default/live/${KEY}`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'ovenmediaengine' }],
  ['OvenMediaEngine percent-encoded srt:// URL', `srt%3A%2F%2Fglass.example%3A9999%2Flive%2F${KEY}`, { mode: 'publish', resource: `live/${KEY}`, dialect: 'ovenmediaengine' }],
];

describe('SRT stream id dialects', () => {
  for (const [what, id, expected] of TABLE) {
    it(`reads ${what}`, () => {
      const got = parseSrtStreamId(id);
      for (const [k, v] of Object.entries(expected)) assert.equal(got[k as keyof SrtStreamRequest], v, `${k} of ${JSON.stringify(id)}`);
    });
  }

  it('uses the configured default for an empty stream id, read with the same rules', () => {
    assert.deepEqual(parseSrtStreamId('', `#!::r=live/${KEY},m=publish`), { mode: 'publish', resource: `live/${KEY}`, user: undefined, password: undefined, dialect: 'access-control' });
    assert.equal(parseSrtStreamId('\0\0\0\0', KEY).resource, KEY);
  });

  it('names the key (publish) or stream (request) from the resource, with its app', () => {
    assert.deepEqual(resourceTarget(`live/${KEY}`), { app: 'live', name: KEY });
    assert.deepEqual(resourceTarget(KEY), { app: undefined, name: KEY });
  });

  const REFUSED: [string, string][] = [
    ['an empty id without a default', ''],
    ['an id over 512 bytes', 'x'.repeat(513)],
    ['control characters', 'live/\u0001key'],
    ['Access Control without a resource', '#!::m=publish'],
    ['Access Control with a bidirectional mode', '#!::r=live/x,m=bidirectional'],
    ['Access Control with a file type', '#!::r=live/x,m=publish,t=file'],
    ['Access Control pairs without =', '#!::r=live/x,publish'],
    ['a percent-encoded URL that is not one', 'srt%3A%2F%2F%%%'],
    ['a wrongly percent-encoded Access Control id', '%23!%3A%3Ar%3Dlive%2%'],
  ];
  for (const [what, id] of REFUSED) {
    it(`refuses ${what} with a 1400-class error`, () => {
      assert.throws(() => parseSrtStreamId(id), (err: unknown) => err instanceof GlasscastError && err.code === 'BAD_REQUEST' && err.spec.srt === 1400);
    });
  }
});
