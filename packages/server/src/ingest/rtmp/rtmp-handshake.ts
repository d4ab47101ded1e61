/**
 * RTMP handshake, server side (Adobe RTMP specification 1.0 §5.2): the plain form (S2 echoes C1) and the
 * digest form that Flash Player, OBS (librtmp) and FFmpeg send when C1 carries a client version. In the digest
 * form the client checks an HMAC-SHA256 digest in S1 and a signature in S2 and refuses a server without them.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** Size of C1/S1/C2/S2. */
export const HANDSHAKE_SIZE = 1536;
/** The only plain RTMP version (C0/S0). */
export const RTMP_VERSION = 3;

const RANDOM_CRUD = Buffer.from([
  0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57, 0x6e, 0xec, 0x5d, 0x2d,
  0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
]);
const GENUINE_FMS = Buffer.concat([Buffer.from('Genuine Adobe Flash Media Server 001', 'latin1'), RANDOM_CRUD]);
const GENUINE_FP = Buffer.concat([Buffer.from('Genuine Adobe Flash Player 001', 'latin1'), RANDOM_CRUD]);
const FP_KEY_LEN = 30;
const FMS_KEY_LEN = 36;
const DIGEST_LEN = 32;
/** Version the server reports in S1 bytes 4–7 (a Flash Media Server 3.5-style value). */
const SERVER_VERSION = Buffer.from([0x04, 0x05, 0x00, 0x01]);

function hmac(key: Uint8Array, ...data: Uint8Array[]): Buffer {
  const h = createHmac('sha256', key);
  for (const d of data) h.update(d);
  return h.digest();
}

/** Offset of the 32-byte digest in a 1536-byte C1/S1 for scheme 0 (digest after time+version) or 1 (after the key block). */
function digestOffset(block: Buffer, scheme: 0 | 1): number {
  const base = scheme === 0 ? 8 : 772;
  const sum = block[base]! + block[base + 1]! + block[base + 2]! + block[base + 3]!;
  return (sum % 728) + base + 4;
}

function digestAt(block: Buffer, offset: number, key: Uint8Array): Buffer {
  return hmac(key, block.subarray(0, offset), block.subarray(offset + DIGEST_LEN));
}

/** Finds the client digest in C1 by trying both schemes; undefined if C1 has none (a plain handshake). */
export function findClientDigest(c1: Buffer): { scheme: 0 | 1; digest: Buffer } | undefined {
  for (const scheme of [0, 1] as const) {
    const offset = digestOffset(c1, scheme);
    const expected = digestAt(c1, offset, GENUINE_FP.subarray(0, FP_KEY_LEN));
    const actual = c1.subarray(offset, offset + DIGEST_LEN);
    if (timingSafeEqual(expected, actual)) return { scheme, digest: Buffer.from(actual) };
  }
  return undefined;
}

/**
 * Builds S0+S1+S2 for a C1. When C1 carries a valid client digest, S1 gets a server digest at the same scheme's
 * offset and S2 is signed with a key derived from the client digest; otherwise S1 is random and S2 echoes C1.
 */
export function buildServerHandshake(c1: Buffer): { response: Buffer; digest: boolean } {
  const s0 = Buffer.from([RTMP_VERSION]);
  const s1 = randomBytes(HANDSHAKE_SIZE);
  s1.writeUInt32BE(Math.floor(Date.now() / 1000) >>> 0, 0);
  const client = c1.readUInt32BE(4) !== 0 ? findClientDigest(c1) : undefined;
  if (!client) {
    s1.writeUInt32BE(0, 4);
    return { response: Buffer.concat([s0, s1, c1]), digest: false };
  }
  SERVER_VERSION.copy(s1, 4);
  const offset = digestOffset(s1, client.scheme);
  digestAt(s1, offset, GENUINE_FMS.subarray(0, FMS_KEY_LEN)).copy(s1, offset);
  const s2 = randomBytes(HANDSHAKE_SIZE);
  const key = hmac(GENUINE_FMS, client.digest);
  hmac(key, s2.subarray(0, HANDSHAKE_SIZE - DIGEST_LEN)).copy(s2, HANDSHAKE_SIZE - DIGEST_LEN);
  return { response: Buffer.concat([s0, s1, s2]), digest: true };
}

/** Builds a client C1 with a scheme-0 digest, as Flash Player/librtmp do (used by tests and benchmarks). */
export function buildDigestC1(): Buffer {
  const c1 = randomBytes(HANDSHAKE_SIZE);
  c1.writeUInt32BE(0, 0);
  Buffer.from([0x80, 0x00, 0x07, 0x02]).copy(c1, 4);
  const offset = digestOffset(c1, 0);
  digestAt(c1, offset, GENUINE_FP.subarray(0, FP_KEY_LEN)).copy(c1, offset);
  return c1;
}

/** Checks that S1 carries a valid server digest (what a digest-checking client such as librtmp verifies). */
export function verifyServerDigest(s1: Buffer): boolean {
  for (const scheme of [0, 1] as const) {
    const offset = digestOffset(s1, scheme);
    if (timingSafeEqual(digestAt(s1, offset, GENUINE_FMS.subarray(0, FMS_KEY_LEN)), s1.subarray(offset, offset + DIGEST_LEN))) return true;
  }
  return false;
}
