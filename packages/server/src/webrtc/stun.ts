/**
 * The little of STUN (RFC 8489) that the ICE-TCP listener needs before it hands a connection to the ICE agent:
 * recognise a message, and read a Binding request's USERNAME (`<receiver ufrag>:<sender ufrag>`, RFC 8445 §7.2.2)
 * to find the session it is for. Authentication (MESSAGE-INTEGRITY) stays with the ICE agent that owns the
 * session's password; nothing here trusts the username beyond routing.
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
