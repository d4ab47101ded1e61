/**
 * SRT packets (draft-sharabayko-srt-01 §3), pure: the 16-byte header of data and control packets, the handshake
 * CIF with its extensions (§3.2.1: HSREQ/HSRSP, KMREQ/KMRSP, SID, others kept as bytes), ACK, NAK loss lists,
 * ACKACK, keepalive, shutdown and drop request. Parsers check every length and throw {@link MediaParseError};
 * a listener drops such a datagram and counts it.
 */
import { MediaParseError } from '../../media/errors.js';

/** Sequence numbers are 31 bits (§3.1). */
export const SEQ_MODULO = 2 ** 31;
/** Message numbers are 26 bits (§3.1). */
export const MSG_MODULO = 2 ** 26;
/** Largest datagram read, bytes (an SRT MTU is at most 1500). */
export const MAX_DATAGRAM = 1500;
const HEADER = 16;

/** Control packet types (§3.2). */
export const CONTROL = { handshake: 0, keepalive: 1, ack: 2, nak: 3, congestion: 4, shutdown: 5, ackack: 6, dropRequest: 7, peerError: 8, user: 0x7fff } as const;

/** Handshake types (§3.2.1, Table 4); 1000 and above are rejection reasons. */
export const HANDSHAKE_TYPE = { done: 0xfffffffd, agreement: 0xfffffffe, conclusion: 0xffffffff, waveahand: 0, induction: 1 } as const;

/** Handshake extension types (§3.2.1, Table 5). */
export const EXTENSION = { hsreq: 1, hsrsp: 2, kmreq: 3, kmrsp: 4, sid: 5, congestion: 6, filter: 7, group: 8 } as const;

/** The magic code a listener puts in the induction response's extension field (§4.3.1.1). */
export const SRT_MAGIC = 0x4a17;

/** HSREQ/HSRSP flags (§3.2.1.1.1). */
export const SRT_FLAGS = { tsbpdSender: 0x01, tsbpdReceiver: 0x02, crypt: 0x04, tlpktDrop: 0x08, periodicNak: 0x10, rexmitFlag: 0x20, stream: 0x40, packetFilter: 0x80 } as const;

/** A data packet (§3.1). `timestamp` is µs since the sender's socket start (32 bits, wraps). */
export interface SrtDataPacket {
  kind: 'data';
  sequence: number;
  /** Packet position flags: 0b10 first, 0b01 last, 0b11 solo, 0b00 middle. */
  position: number;
  inOrder: boolean;
  /** Encryption key flags: 0 none, 1 even, 2 odd. */
  keyFlags: number;
  retransmitted: boolean;
  messageNumber: number;
  timestamp: number;
  destinationSocket: number;
  payload: Uint8Array;
}

/** A control packet (§3.2). `cif` is the control information field, typed by the helpers below. */
export interface SrtControlPacket {
  kind: 'control';
  type: number;
  subtype: number;
  /** Type-specific information (ACK number for ACK/ACKACK, message number for a drop request). */
  info: number;
  timestamp: number;
  destinationSocket: number;
  cif: Uint8Array;
}

/** Either packet. */
export type SrtPacket = SrtDataPacket | SrtControlPacket;

/**
 * Parses one datagram.
 * @throws MediaParseError `SRT_TRUNCATED` (shorter than a header) or `SRT_TOO_LARGE`.
 */
export function parseSrtPacket(d: Uint8Array): SrtPacket {
  if (d.length < HEADER) throw new MediaParseError('SRT_TRUNCATED', `SRT: ${d.length}-byte datagram is shorter than a header`);
  if (d.length > MAX_DATAGRAM) throw new MediaParseError('SRT_TOO_LARGE', `SRT: ${d.length}-byte datagram is over ${MAX_DATAGRAM}`);
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  const w0 = v.getUint32(0);
  const w1 = v.getUint32(4);
  const timestamp = v.getUint32(8);
  const destinationSocket = v.getUint32(12);
  if ((w0 & 0x80000000) === 0) {
    return {
      kind: 'data',
      sequence: w0,
      position: w1 >>> 30,
      inOrder: (w1 & 0x20000000) !== 0,
      keyFlags: (w1 >>> 27) & 0x03,
      retransmitted: (w1 & 0x04000000) !== 0,
      messageNumber: w1 & 0x03ffffff,
      timestamp,
      destinationSocket,
      payload: d.subarray(HEADER),
    };
  }
  return { kind: 'control', type: (w0 >>> 16) & 0x7fff, subtype: w0 & 0xffff, info: w1, timestamp, destinationSocket, cif: d.subarray(HEADER) };
}

/** Writes a data packet. */
export function writeSrtData(p: Omit<SrtDataPacket, 'kind'>): Buffer {
  const b = Buffer.alloc(HEADER + p.payload.length);
  b.writeUInt32BE(p.sequence & 0x7fffffff, 0);
  b.writeUInt32BE((((p.position & 0x03) << 30) | (p.inOrder ? 0x20000000 : 0) | ((p.keyFlags & 0x03) << 27) | (p.retransmitted ? 0x04000000 : 0) | (p.messageNumber & 0x03ffffff)) >>> 0, 4);
  b.writeUInt32BE(p.timestamp >>> 0, 8);
  b.writeUInt32BE(p.destinationSocket >>> 0, 12);
  b.set(p.payload, HEADER);
  return b;
}

/** Writes a control packet. */
export function writeSrtControl(p: Omit<SrtControlPacket, 'kind'>): Buffer {
  const b = Buffer.alloc(HEADER + p.cif.length);
  b.writeUInt32BE((0x80000000 | ((p.type & 0x7fff) << 16) | (p.subtype & 0xffff)) >>> 0, 0);
  b.writeUInt32BE(p.info >>> 0, 4);
  b.writeUInt32BE(p.timestamp >>> 0, 8);
  b.writeUInt32BE(p.destinationSocket >>> 0, 12);
  b.set(p.cif, HEADER);
  return b;
}

/** One handshake extension: its type and contents (without the type/length words). */
export interface SrtHandshakeExtension {
  type: number;
  data: Uint8Array;
}

/** The handshake CIF (§3.2.1). */
export interface SrtHandshake {
  version: number;
  /** Encryption field: 0 none, 2/3/4 = AES-128/192/256 (in the induction response: the listener's advertised cipher). */
  encryption: number;
  /** Extension field: SRT_MAGIC in an induction response; in a conclusion, flags 1 HSREQ, 2 KMREQ, 4 CONFIG. */
  extensionField: number;
  initialSequence: number;
  mtu: number;
  flowWindow: number;
  /** A HANDSHAKE_TYPE or a rejection reason (≥ 1000). */
  handshakeType: number;
  socketId: number;
  cookie: number;
  /** The peer's IP address as 16 bytes (IPv4 in the first 4, in the order libsrt writes them). */
  peerAddress: Uint8Array;
  extensions: SrtHandshakeExtension[];
}

const HANDSHAKE_CIF = 48;

/**
 * Parses a handshake CIF and its extensions.
 * @throws MediaParseError `SRT_BAD_HANDSHAKE` for a short CIF or an extension running past the end.
 */
export function parseHandshake(cif: Uint8Array): SrtHandshake {
  if (cif.length < HANDSHAKE_CIF) throw new MediaParseError('SRT_BAD_HANDSHAKE', `SRT: handshake CIF of ${cif.length} bytes (needs ${HANDSHAKE_CIF})`);
  const v = new DataView(cif.buffer, cif.byteOffset, cif.byteLength);
  const extensions: SrtHandshakeExtension[] = [];
  for (let pos = HANDSHAKE_CIF; pos + 4 <= cif.length; ) {
    const type = v.getUint16(pos);
    const words = v.getUint16(pos + 2);
    const end = pos + 4 + words * 4;
    if (end > cif.length) throw new MediaParseError('SRT_BAD_HANDSHAKE', `SRT: handshake extension ${type} runs past the packet`);
    extensions.push({ type, data: cif.subarray(pos + 4, end) });
    pos = end;
  }
  return {
    version: v.getUint32(0),
    encryption: v.getUint16(4),
    extensionField: v.getUint16(6),
    initialSequence: v.getUint32(8) & 0x7fffffff,
    mtu: v.getUint32(12),
    flowWindow: v.getUint32(16),
    handshakeType: v.getUint32(20),
    socketId: v.getUint32(24),
    cookie: v.getUint32(28),
    peerAddress: cif.subarray(32, 48),
    extensions,
  };
}

/** Writes a handshake CIF with its extensions (each padded to 4-byte words). */
export function writeHandshake(h: SrtHandshake): Buffer {
  const size = HANDSHAKE_CIF + h.extensions.reduce((n, e) => n + 4 + Math.ceil(e.data.length / 4) * 4, 0);
  const b = Buffer.alloc(size);
  b.writeUInt32BE(h.version >>> 0, 0);
  b.writeUInt16BE(h.encryption, 4);
  b.writeUInt16BE(h.extensionField, 6);
  b.writeUInt32BE(h.initialSequence & 0x7fffffff, 8);
  b.writeUInt32BE(h.mtu >>> 0, 12);
  b.writeUInt32BE(h.flowWindow >>> 0, 16);
  b.writeUInt32BE(h.handshakeType >>> 0, 20);
  b.writeUInt32BE(h.socketId >>> 0, 24);
  b.writeUInt32BE(h.cookie >>> 0, 28);
  b.set(h.peerAddress.subarray(0, 16), 32);
  let pos = HANDSHAKE_CIF;
  for (const e of h.extensions) {
    const words = Math.ceil(e.data.length / 4);
    b.writeUInt16BE(e.type, pos);
    b.writeUInt16BE(words, pos + 2);
    b.set(e.data, pos + 4);
    pos += 4 + words * 4;
  }
  return b;
}

/** HSREQ/HSRSP contents (§3.2.1.1): SRT version, flags, TSBPD delays in ms. */
export interface SrtHsExtension {
  /** e.g. 0x010503 for 1.5.3. */
  srtVersion: number;
  flags: number;
  /** The receiver's TSBPD delay, ms. */
  receiverDelayMs: number;
  /** The sender's TSBPD delay, ms. */
  senderDelayMs: number;
}

/** Parses HSREQ/HSRSP contents. @throws MediaParseError `SRT_BAD_HANDSHAKE` when shorter than 12 bytes. */
export function parseHsExtension(d: Uint8Array): SrtHsExtension {
  if (d.length < 12) throw new MediaParseError('SRT_BAD_HANDSHAKE', 'SRT: HSREQ/HSRSP shorter than 12 bytes');
  const v = new DataView(d.buffer, d.byteOffset, d.byteLength);
  return { srtVersion: v.getUint32(0), flags: v.getUint32(4), receiverDelayMs: v.getUint16(8), senderDelayMs: v.getUint16(10) };
}

/** Writes HSREQ/HSRSP contents. */
export function writeHsExtension(e: SrtHsExtension): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt32BE(e.srtVersion >>> 0, 0);
  b.writeUInt32BE(e.flags >>> 0, 4);
  b.writeUInt16BE(e.receiverDelayMs & 0xffff, 8);
  b.writeUInt16BE(e.senderDelayMs & 0xffff, 10);
  return b;
}

/**
 * The stream id of a SID extension (§3.2.1.3). libsrt writes it as 32-bit words with each word's bytes reversed
 * (the string copied into little-endian words, then the words sent in network order); trailing NULs pad it.
 */
export function parseStreamIdExtension(d: Uint8Array): string {
  const bytes = Buffer.alloc(d.length);
  for (let i = 0; i + 4 <= d.length; i += 4) for (let k = 0; k < 4; k++) bytes[i + k] = d[i + 3 - k]!;
  return bytes.toString('utf8').replace(/\0+$/, '');
}

/** Writes a SID extension's contents (the inverse of {@link parseStreamIdExtension}). */
export function writeStreamIdExtension(streamId: string): Buffer {
  const text = Buffer.from(streamId, 'utf8');
  const padded = Buffer.alloc(Math.ceil(text.length / 4) * 4);
  text.copy(padded);
  const out = Buffer.alloc(padded.length);
  for (let i = 0; i < padded.length; i += 4) for (let k = 0; k < 4; k++) out[i + k] = padded[i + 3 - k]!;
  return out;
}

/** A full ACK's CIF (§3.2.4): figures the receiver reports. */
export interface SrtAck {
  /** The sequence number after the last packet received in order. */
  lastAcknowledged: number;
  /** µs. */
  rtt: number;
  /** µs. */
  rttVariance: number;
  /** Packets of free receive buffer. */
  availableBuffer: number;
  /** Packets/s. */
  packetsReceivingRate: number;
  /** Packets/s. */
  estimatedLinkCapacity: number;
  /** Bytes/s. */
  receivingRate: number;
}

/** Writes a full ACK's CIF. */
export function writeAck(a: SrtAck): Buffer {
  const b = Buffer.alloc(28);
  const values = [a.lastAcknowledged & 0x7fffffff, a.rtt, a.rttVariance, a.availableBuffer, a.packetsReceivingRate, a.estimatedLinkCapacity, a.receivingRate];
  values.forEach((x, i) => b.writeUInt32BE(Math.max(0, Math.min(0xffffffff, Math.round(x))) >>> 0, i * 4));
  return b;
}

/** Parses an ACK CIF (a light ACK has only the first field). @throws MediaParseError `SRT_BAD_ACK` when empty. */
export function parseAck(cif: Uint8Array): Partial<SrtAck> & { lastAcknowledged: number } {
  if (cif.length < 4) throw new MediaParseError('SRT_BAD_ACK', 'SRT: ACK without its sequence number');
  const v = new DataView(cif.buffer, cif.byteOffset, cif.byteLength);
  const field = (i: number): number | undefined => (cif.length >= (i + 1) * 4 ? v.getUint32(i * 4) : undefined);
  return { lastAcknowledged: v.getUint32(0) & 0x7fffffff, rtt: field(1), rttVariance: field(2), availableBuffer: field(3), packetsReceivingRate: field(4), estimatedLinkCapacity: field(5), receivingRate: field(6) };
}

/**
 * Encodes lost sequence numbers as a NAK loss list (§3.2.5, Appendix A): a single number as itself; a range as its
 * first with the top bit set, then its last. `ranges` are inclusive [first, last].
 */
export function writeLossList(ranges: readonly [number, number][]): Buffer {
  const words: number[] = [];
  for (const [first, last] of ranges) {
    if (first === last) words.push(first & 0x7fffffff);
    else words.push((0x80000000 | (first & 0x7fffffff)) >>> 0, last & 0x7fffffff);
  }
  const b = Buffer.alloc(words.length * 4);
  words.forEach((w, i) => b.writeUInt32BE(w, i * 4));
  return b;
}

/**
 * Reads a NAK loss list into inclusive ranges.
 * @throws MediaParseError `SRT_BAD_NAK` for a range start without its end or a list that is not whole words.
 */
export function parseLossList(cif: Uint8Array): [number, number][] {
  if (cif.length % 4 !== 0) throw new MediaParseError('SRT_BAD_NAK', 'SRT: NAK loss list is not whole 32-bit words');
  const v = new DataView(cif.buffer, cif.byteOffset, cif.byteLength);
  const out: [number, number][] = [];
  for (let i = 0; i < cif.length; i += 4) {
    const w = v.getUint32(i);
    if (w & 0x80000000) {
      if (i + 4 >= cif.length) throw new MediaParseError('SRT_BAD_NAK', 'SRT: NAK range without its last sequence number');
      out.push([w & 0x7fffffff, v.getUint32(i + 4) & 0x7fffffff]);
      i += 4;
    } else {
      out.push([w, w]);
    }
  }
  return out;
}

/** `a − b` in sequence-number space (31 bits, wrapping): positive when `a` is after `b`. */
export function seqDiff(a: number, b: number): number {
  let d = (a - b) % SEQ_MODULO;
  if (d > SEQ_MODULO / 2) d -= SEQ_MODULO;
  else if (d < -SEQ_MODULO / 2) d += SEQ_MODULO;
  return d;
}

/** The sequence number `n` after `s`. */
export function seqAdd(s: number, n: number): number {
  return (((s + n) % SEQ_MODULO) + SEQ_MODULO) % SEQ_MODULO;
}
