/**
 * SRT encryption primitives (draft-sharabayko-srt-01 §6, §3.2.2): RFC 3394's own key wrap vector, PBKDF2 as
 * HaiCrypt uses it (salt's last 8 bytes, 2,048 rounds), Key Material messages both ways, AES-CTR with the SRT IV
 * (its own inverse, bound to the sequence number), a wrong passphrase caught by the wrap's integrity check, and
 * malformed key material refused with a parse error (fuzz). Interoperation with libsrt is in
 * test/integration/srt-encryption.test.ts.
 */
import assert from 'node:assert/strict';
import { pbkdf2Sync } from 'node:crypto';
import { describe, it } from 'node:test';
import { MediaParseError } from '../../src/media/errors.js';
import { cryptPayload, deriveKek, KEY_FLAGS, KeyMaterialError, makeKeyMaterial, openKeyMaterial, parseKeyMaterial, passphraseProblem, unwrapKeys, wrapKeys, writeKeyMaterial } from '../../src/ingest/srt/srt-crypto.js';
import { seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s/g, ''), 'hex');

describe('SRT encryption primitives', () => {
  it('wraps and unwraps keys as RFC 3394 §4.1 and §4.6 say', () => {
    const kek128 = hex('000102030405060708090A0B0C0D0E0F');
    const data128 = hex('00112233445566778899AABBCCDDEEFF');
    assert.deepEqual(wrapKeys(kek128, data128), hex('1FA68B0A8112B447 AEF34BD8FB5A7B82 9D3E862371D2CFE5'));
    const kek256 = hex('000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F');
    const data256 = hex('00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F');
    const wrapped = wrapKeys(kek256, data256);
    assert.deepEqual(wrapped, hex('28C9F404C4B810F4 CBCCB35CFB87F826 3F5786E2D80ED326 CBC7F0E71A99F43B FB988B9B7A02DD21'));
    assert.deepEqual(unwrapKeys(kek256, wrapped), data256);
    const tampered = Buffer.from(wrapped);
    tampered[5]! ^= 1;
    assert.throws(() => unwrapKeys(kek256, tampered), (e: unknown) => e instanceof KeyMaterialError && e.reason === 'BAD_SECRET');
  });

  it('derives the KEK with PBKDF2-HMAC-SHA1 over the salt’s last 8 bytes, 2,048 rounds', async () => {
    const salt = hex('00112233445566778899aabbccddeeff');
    const kek = await deriveKek('a passphrase', salt, 24);
    assert.equal(kek.length, 24);
    assert.deepEqual(kek, pbkdf2Sync('a passphrase', salt.subarray(8), 2048, 24, 'sha1'));
  });

  for (const keyLength of [16, 24, 32] as const) {
    it(`carries AES-${keyLength * 8} even and odd keys through a Key Material message`, async () => {
      const { km, keys } = await makeKeyMaterial('correct-horse-battery', keyLength, KEY_FLAGS.both);
      const bytes = writeKeyMaterial(km);
      assert.equal(bytes.length, 16 + 16 + 8 + 2 * keyLength);
      assert.equal(bytes.readUInt16BE(1), 0x2029, 'HaiCrypt signature');
      const parsed = parseKeyMaterial(bytes);
      assert.equal(parsed.keyLength, keyLength);
      assert.equal(parsed.keyFlags, KEY_FLAGS.both);
      const opened = await openKeyMaterial(parsed, 'correct-horse-battery');
      assert.deepEqual(opened.even, keys.even);
      assert.deepEqual(opened.odd, keys.odd);
      await assert.rejects(openKeyMaterial(parsed, 'wrong-horse-battery'), (e: unknown) => e instanceof KeyMaterialError && e.reason === 'BAD_SECRET');
    });
  }

  it('encrypts payloads with AES-CTR under an IV of salt and sequence number', async () => {
    const { keys } = await makeKeyMaterial('correct-horse-battery', 16);
    const payload = Buffer.alloc(1316, 0x47);
    const sealed = cryptPayload(keys.even!, keys.salt, 1234, payload);
    assert.notDeepEqual(sealed, payload);
    assert.deepEqual(cryptPayload(keys.even!, keys.salt, 1234, sealed), payload, 'CTR is its own inverse');
    assert.notDeepEqual(cryptPayload(keys.even!, keys.salt, 1235, payload), sealed, 'the sequence number is in the IV');
    assert.notDeepEqual(sealed.subarray(0, 16), sealed.subarray(16, 32), 'the block counter moves');
  });

  it('checks passphrase lengths (10–79)', () => {
    assert.equal(passphraseProblem('0123456789'), undefined);
    assert.match(passphraseProblem('short') ?? '', /10–79/);
    assert.match(passphraseProblem('x'.repeat(80)) ?? '', /10–79/);
  });

  it('refuses malformed key material with a parse error, never another exception (fuzz)', async () => {
    const { km } = await makeKeyMaterial('correct-horse-battery', 16);
    const good = writeKeyMaterial(km);
    assert.throws(() => parseKeyMaterial(good.subarray(0, good.length - 1)), MediaParseError);
    const rand = seededRandom(7);
    for (let i = 0; i < 3000; i++) {
      const d = i % 2 ? Buffer.from(good) : Buffer.alloc(Math.floor(rand() * 120));
      for (let k = 0; k < (i % 2 ? 3 : d.length); k++) d[Math.floor(rand() * d.length)] = Math.floor(rand() * 256);
      try {
        parseKeyMaterial(d);
      } catch (err) {
        assert.ok(err instanceof MediaParseError, String(err));
      }
    }
  });
});
