/**
 * SRT encryption (draft-sharabayko-srt-01 §6, with the Key Material message of §3.2.2), as libsrt's HaiCrypt does
 * it: the sender makes a random stream encrypting key (SEK, 16/24/32 bytes = AES-128/192/256) and a 16-byte salt;
 * the key encrypting key (KEK) is PBKDF2-HMAC-SHA1 of the passphrase over the salt's last 8 bytes, 2,048
 * iterations (§6.1.4); the SEK travels wrapped with the KEK (AES key wrap, RFC 3394) in a KMREQ — in the
 * conclusion handshake, and again in-band (user control packet, subtype KMREQ) when the sender refreshes keys.
 * Two keys can be live, even and odd (the data packet's KK field says which); a refresh announces the next key
 * before switching to it. Payloads are AES-CTR (§6.2.2): the IV is 80 zero bits, the packet's 32-bit sequence
 * number, a 16-bit block counter, with its first 112 bits XORed with the salt's first 112 bits.
 *
 * Wrong passphrase = the key wrap's integrity check fails ({@link KeyMaterialError} `BAD_SECRET`).
 * Node's crypto (OpenSSL) does the AES, key wrap and PBKDF2.
 */
import { createCipheriv, createDecipheriv, pbkdf2, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { MediaParseError } from '../../media/errors.js';

const pbkdf2Async = promisify(pbkdf2);

/** Passphrase length bounds (libsrt's SRTO_PASSPHRASE: 10–79 characters). */
export const PASSPHRASE_MIN = 10;
export const PASSPHRASE_MAX = 79;
/** The KEK derivation's iteration count and salt bytes used (HaiCrypt: HAICRYPT_PBKDF2_ITER_CNT, _SALT_LEN). */
const PBKDF2_ITERATIONS = 2048;
const PBKDF2_SALT_BYTES = 8;
/** RFC 3394 §2.2.3.1 default initial value. */
const KEY_WRAP_IV = Buffer.from('a6a6a6a6a6a6a6a6', 'hex');
const KM_HEADER = 16;
const SALT_BYTES = 16;
/** Key Material message fields (§3.2.2). */
const KM = { version: 1, packetType: 2, sign: 0x2029, cipherAesCtr: 2, seSrt: 2 } as const;

/** KK: which keys a Key Material message or a data packet uses. */
export const KEY_FLAGS = { none: 0, even: 1, odd: 2, both: 3 } as const;

/** A parsed Key Material message (§3.2.2). */
export interface KeyMaterial {
  /** KK: 1 even, 2 odd, 3 both. */
  keyFlags: number;
  /** 2 = AES-CTR (the only cipher SRT live mode uses). */
  cipher: number;
  salt: Buffer;
  /** SEK length, bytes: 16, 24 or 32. */
  keyLength: number;
  /** The wrapped key(s): an 8-byte integrity block then KLen bytes per key. */
  wrapped: Buffer;
}

/** Thrown when key material cannot be used: `BAD_SECRET` (wrong passphrase) or `UNSUPPORTED` (cipher, lengths). */
export class KeyMaterialError extends Error {
  override readonly name = 'KeyMaterialError';
  constructor(
    readonly reason: 'BAD_SECRET' | 'UNSUPPORTED',
    message: string,
  ) {
    super(message);
  }
}

/**
 * Parses a Key Material message (handshake KMREQ/KMRSP extension or user control packet CIF).
 * @throws MediaParseError `SRT_BAD_KM` for a wrong signature, version or packet type, or lengths that do not add up.
 */
export function parseKeyMaterial(d: Uint8Array): KeyMaterial {
  if (d.length < KM_HEADER) throw new MediaParseError('SRT_BAD_KM', `SRT: key material of ${d.length} bytes`);
  const b = Buffer.from(d.buffer, d.byteOffset, d.byteLength);
  const version = (b[0]! >> 4) & 0x07;
  const packetType = b[0]! & 0x0f;
  if (version !== KM.version || packetType !== KM.packetType || b.readUInt16BE(1) !== KM.sign) throw new MediaParseError('SRT_BAD_KM', 'SRT: not a key material message (version, type or signature)');
  const keyFlags = b[3]! & 0x03;
  const saltLength = b[14]! * 4;
  const keyLength = b[15]! * 4;
  const keys = keyFlags === KEY_FLAGS.both ? 2 : 1;
  const wrappedLength = 8 + keys * keyLength;
  if (keyFlags === 0 || saltLength !== SALT_BYTES || ![16, 24, 32].includes(keyLength)) throw new MediaParseError('SRT_BAD_KM', `SRT: key material with KK ${keyFlags}, salt ${saltLength} B, key ${keyLength} B`);
  if (d.length < KM_HEADER + saltLength + wrappedLength) throw new MediaParseError('SRT_BAD_KM', 'SRT: key material shorter than its keys');
  return {
    keyFlags,
    cipher: b[8]!,
    salt: Buffer.from(b.subarray(KM_HEADER, KM_HEADER + saltLength)),
    keyLength,
    wrapped: Buffer.from(b.subarray(KM_HEADER + saltLength, KM_HEADER + saltLength + wrappedLength)),
  };
}

/** Writes a Key Material message (the sender's side; tests and the SRT sender use it). */
export function writeKeyMaterial(km: KeyMaterial): Buffer {
  const b = Buffer.alloc(KM_HEADER + km.salt.length + km.wrapped.length);
  b[0] = (KM.version << 4) | KM.packetType;
  b.writeUInt16BE(KM.sign, 1);
  b[3] = km.keyFlags & 0x03;
  b[8] = km.cipher;
  b[10] = KM.seSrt;
  b[14] = km.salt.length / 4;
  b[15] = km.keyLength / 4;
  km.salt.copy(b, KM_HEADER);
  km.wrapped.copy(b, KM_HEADER + km.salt.length);
  return b;
}

/** The KEK for a passphrase and salt (§6.1.4), `keyLength` bytes. Async: 2,048 HMAC rounds stay off the loop. */
export async function deriveKek(passphrase: string, salt: Buffer, keyLength: number): Promise<Buffer> {
  return pbkdf2Async(passphrase, salt.subarray(salt.length - PBKDF2_SALT_BYTES), PBKDF2_ITERATIONS, keyLength, 'sha1');
}

function wrapCipher(keyLength: number): string {
  return `id-aes${keyLength * 8}-wrap`;
}

/** Wraps key data with a KEK (RFC 3394 §2.2.1). */
export function wrapKeys(kek: Buffer, keys: Buffer): Buffer {
  const c = createCipheriv(wrapCipher(kek.length), kek, KEY_WRAP_IV);
  return Buffer.concat([c.update(keys), c.final()]);
}

/**
 * Unwraps key data (RFC 3394 §2.2.2).
 * @throws KeyMaterialError `BAD_SECRET` when the integrity check fails (the KEK, so the passphrase, is wrong).
 */
export function unwrapKeys(kek: Buffer, wrapped: Buffer): Buffer {
  try {
    const d = createDecipheriv(wrapCipher(kek.length), kek, KEY_WRAP_IV);
    return Buffer.concat([d.update(wrapped), d.final()]);
  } catch {
    throw new KeyMaterialError('BAD_SECRET', 'SRT: the key material does not unwrap with this passphrase');
  }
}

/** The stream keys in force: even and/or odd SEK with their salt. */
export interface StreamKeys {
  salt: Buffer;
  even: Buffer | undefined;
  odd: Buffer | undefined;
}

/**
 * The stream keys a Key Material message carries, unwrapped with the passphrase.
 * @throws KeyMaterialError `UNSUPPORTED` (not AES-CTR) or `BAD_SECRET` (wrong passphrase).
 */
export async function openKeyMaterial(km: KeyMaterial, passphrase: string): Promise<StreamKeys> {
  if (km.cipher !== KM.cipherAesCtr) throw new KeyMaterialError('UNSUPPORTED', `SRT: cipher ${km.cipher} (only AES-CTR is used in live mode)`);
  const kek = await deriveKek(passphrase, km.salt, km.keyLength);
  const keys = unwrapKeys(kek, km.wrapped);
  const first = keys.subarray(0, km.keyLength);
  if (km.keyFlags === KEY_FLAGS.both) return { salt: km.salt, even: first, odd: keys.subarray(km.keyLength) };
  return km.keyFlags === KEY_FLAGS.even ? { salt: km.salt, even: first, odd: undefined } : { salt: km.salt, even: undefined, odd: first };
}

/** Makes key material for a sender: a fresh salt and SEK(s), wrapped with the passphrase's KEK. */
export async function makeKeyMaterial(passphrase: string, keyLength: 16 | 24 | 32, keyFlags: number = KEY_FLAGS.even): Promise<{ km: KeyMaterial; keys: StreamKeys }> {
  const salt = randomBytes(SALT_BYTES);
  const even = keyFlags & KEY_FLAGS.even ? randomBytes(keyLength) : undefined;
  const odd = keyFlags & KEY_FLAGS.odd ? randomBytes(keyLength) : undefined;
  const kek = await deriveKek(passphrase, salt, keyLength);
  const wrapped = wrapKeys(kek, Buffer.concat([even ?? Buffer.alloc(0), odd ?? Buffer.alloc(0)]));
  return { km: { keyFlags, cipher: KM.cipherAesCtr, salt, keyLength, wrapped }, keys: { salt, even, odd } };
}

/**
 * AES-CTR over one data packet's payload (§6.2.2/§6.3.2; the same operation encrypts and decrypts).
 * @param sequence the packet's sequence number (the IV's packet index)
 */
export function cryptPayload(key: Buffer, salt: Buffer, sequence: number, payload: Uint8Array): Buffer {
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(sequence >>> 0, 10);
  for (let i = 0; i < 14; i++) iv[i] = iv[i]! ^ salt[i]!;
  const c = createCipheriv(`aes-${key.length * 8}-ctr`, key, iv);
  return Buffer.concat([c.update(payload), c.final()]);
}

/** Checks a passphrase's length; returns an error sentence or undefined. */
export function passphraseProblem(passphrase: string): string | undefined {
  if (passphrase.length < PASSPHRASE_MIN || passphrase.length > PASSPHRASE_MAX) return `an SRT passphrase has ${PASSPHRASE_MIN}–${PASSPHRASE_MAX} characters (this one has ${passphrase.length})`;
  return undefined;
}
