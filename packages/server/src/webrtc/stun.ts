/**
 * The little of STUN (RFC 8489) Glasscast speaks itself. The ICE-TCP listener, before it hands a connection to the ICE agent:
 * recognise a message, and read a Binding request's USERNAME (`<receiver ufrag>:<sender ufrag>`, RFC 8445 §7.2.2)
 * to find the session it is for. Authentication (MESSAGE-INTEGRITY) stays with the ICE agent that owns the
 * session's password; nothing here trusts the username beyond routing. The STUN server of venue mode
 * (stun-server.ts): answer a Binding request with the address it came from.
 */
import { MediaParseError } from '../media/errors.js';

/** The magic cookie of every RFC 5389/8489 message (§5). */
export const STUN_MAGIC_COOKIE = 0x2112a442;
/** Binding request message type (§18.2: method 0x001, class request). */
export const STUN_BINDING_REQUEST = 0x0001;
/** USERNAME attribute type (§14.3). */
const ATTR_USERNAME = 0x0006;
/** Longest USERNAME allowed (§14.3: < 509 bytes). */
const MAX_USERNAME_BYTES = 508;
/** STUN header length, bytes (§5). */
export const STUN_HEADER_BYTES = 20;

/** True when `packet` looks like a STUN message: two zero top bits, the magic cookie, a length that fits (§5, RFC 7983 §7). */
export function isStun(packet: Buffer): boolean {
  if (packet.length < STUN_HEADER_BYTES || (packet[0]! & 0xc0) !== 0) return false;
  const length = packet.readUInt16BE(2);
  return packet.readUInt32BE(4) === STUN_MAGIC_COOKIE && length % 4 === 0 && STUN_HEADER_BYTES + length <= packet.length;
}

/**
 * The USERNAME of a STUN Binding request, as `{ local, remote }` ufrags from the receiver's view
 * (`local` = the ufrag of the agent it is sent to).
 * @throws MediaParseError when `packet` is not a Binding request, an attribute overruns the message, or it has no
 * USERNAME of the form `a:b`.
 */
export function readBindingUsername(packet: Buffer): { local: string; remote: string } {
  if (!isStun(packet)) throw new MediaParseError('STUN_NOT_STUN', 'not a STUN message');
  if (packet.readUInt16BE(0) !== STUN_BINDING_REQUEST) throw new MediaParseError('STUN_NOT_BINDING', 'not a STUN Binding request');
  const end = STUN_HEADER_BYTES + packet.readUInt16BE(2);
  let at = STUN_HEADER_BYTES;
  while (at + 4 <= end) {
    const type = packet.readUInt16BE(at);
    const length = packet.readUInt16BE(at + 2);
    const valueEnd = at + 4 + length;
    if (valueEnd > end) throw new MediaParseError('STUN_ATTRIBUTE_OVERRUN', 'STUN attribute overruns the message');
    if (type === ATTR_USERNAME) {
      if (length > MAX_USERNAME_BYTES) throw new MediaParseError('STUN_USERNAME_TOO_LONG', 'STUN USERNAME too long');
      const username = packet.toString('utf8', at + 4, valueEnd);
      const colon = username.indexOf(':');
      if (colon <= 0 || colon === username.length - 1) throw new MediaParseError('STUN_USERNAME_MALFORMED', 'STUN USERNAME is not "local:remote"');
      return { local: username.slice(0, colon), remote: username.slice(colon + 1) };
    }
    at = valueEnd + ((4 - (length % 4)) % 4);
  }
  throw new MediaParseError('STUN_NO_USERNAME', 'STUN Binding request without USERNAME');
}

/** Binding success response type (§18.2: method 0x001, class success response). */
export const STUN_BINDING_SUCCESS = 0x0101;
/** XOR-MAPPED-ADDRESS attribute type (§14.2). */
const ATTR_XOR_MAPPED_ADDRESS = 0x0020;
/** FINGERPRINT attribute type (§14.7). */
const ATTR_FINGERPRINT = 0x8028;
/** XORed into FINGERPRINT's CRC-32 (§14.7: "STUN" in ASCII). */
const FINGERPRINT_XOR = 0x5354554e;

/**
 * The transaction ID (12 bytes) of a Binding request (RFC 8489 §5), whatever attributes it carries: a plain
 * STUN server answers any well-formed request and trusts none of it.
 * @throws MediaParseError when `packet` is not a STUN Binding request, or an attribute overruns the message.
 */
export function readBindingRequest(packet: Buffer): Buffer {
  if (!isStun(packet)) throw new MediaParseError('STUN_NOT_STUN', 'not a STUN message');
  if (packet.readUInt16BE(0) !== STUN_BINDING_REQUEST) throw new MediaParseError('STUN_NOT_BINDING', 'not a STUN Binding request');
  const end = STUN_HEADER_BYTES + packet.readUInt16BE(2);
  for (let at = STUN_HEADER_BYTES; at + 4 <= end; ) {
    const length = packet.readUInt16BE(at + 2);
    const valueEnd = at + 4 + length;
    if (valueEnd > end) throw new MediaParseError('STUN_ATTRIBUTE_OVERRUN', 'STUN attribute overruns the message');
    at = valueEnd + ((4 - (length % 4)) % 4);
  }
  return Buffer.from(packet.subarray(8, 20));
}

/**
 * A Binding success response (RFC 8489 §6.3.3) telling the client the transport address its request came from:
 * XOR-MAPPED-ADDRESS (§14.2, IPv4 or IPv6) and FINGERPRINT (§14.7).
 * @param transactionId the request's 12-byte transaction ID.
 * @param address the source IP as Node reports it (`1.2.3.4`, `::1`, `::ffff:1.2.3.4`).
 * @throws Error when `address` is not an IP address.
 */
export function writeBindingSuccess(transactionId: Buffer, address: string, port: number): Buffer {
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address)?.[1];
  const ip = v4 ? Buffer.from(v4.split('.').map(Number)) : ipv6Bytes(address);
  const attr = Buffer.alloc(4 + 4 + ip.length);
  attr.writeUInt16BE(ATTR_XOR_MAPPED_ADDRESS, 0);
  attr.writeUInt16BE(4 + ip.length, 2);
  attr.writeUInt8(v4 ? 0x01 : 0x02, 5);
  attr.writeUInt16BE(port ^ (STUN_MAGIC_COOKIE >>> 16), 6);
  const xorKey = Buffer.concat([Buffer.from([0x21, 0x12, 0xa4, 0x42]), transactionId]);
  for (let i = 0; i < ip.length; i++) attr[8 + i] = ip[i]! ^ xorKey[i]!;
  const message = Buffer.alloc(STUN_HEADER_BYTES + attr.length + 8);
  message.writeUInt16BE(STUN_BINDING_SUCCESS, 0);
  message.writeUInt16BE(attr.length + 8, 2);
  message.writeUInt32BE(STUN_MAGIC_COOKIE, 4);
  transactionId.copy(message, 8, 0, 12);
  attr.copy(message, STUN_HEADER_BYTES);
  const at = STUN_HEADER_BYTES + attr.length;
  message.writeUInt16BE(ATTR_FINGERPRINT, at);
  message.writeUInt16BE(4, at + 2);
  message.writeUInt32BE((crc32(message.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0, at + 4);
  return message;
}

/** The 16 bytes of an IPv6 address in text form (`::` compression allowed). */
function ipv6Bytes(address: string): Buffer {
  const [head, tail, extra] = address.split('::');
  if (extra !== undefined || !/^[0-9a-f:]+$/i.test(address)) throw new Error(`not an IP address: ${address.slice(0, 64)}`);
  const words = (s: string | undefined): number[] => (s ? s.split(':').map((w) => Number.parseInt(w, 16)) : []);
  const h = words(head);
  const t = words(tail);
  const all = tail === undefined ? h : [...h, ...Array<number>(8 - h.length - t.length).fill(0), ...t];
  if (all.length !== 8 || all.some((w) => !(w >= 0 && w <= 0xffff))) throw new Error(`not an IP address: ${address.slice(0, 64)}`);
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** CRC-32 (ISO-HDLC, reflected, as zlib's), which FINGERPRINT uses (RFC 8489 §14.7). */
function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte;
    for (let k = 0; k < 8; k++) crc = crc & 1 ? (crc >>> 1) ^ 0xedb88320 : crc >>> 1;
  }
  return (crc ^ 0xffffffff) >>> 0;
}
