/**
 * RTMP chunk stream (Adobe RTMP specification 1.0, §5.3): an incremental decoder that turns bytes into messages,
 * and an encoder that splits messages into chunks. Pure: no sockets. Every size is bounded so a hostile peer
 * cannot make it buffer without limit.
 */
import { MediaParseError } from '../../media/errors.js';

/** One reassembled RTMP message. `timestamp` is the 32-bit message timestamp in milliseconds (may wrap). */
export interface RtmpMessage {
  chunkStreamId: number;
  typeId: number;
  messageStreamId: number;
  timestamp: number;
  payload: Buffer;
}

/** Message type ids (RTMP spec §5.4 and §7.1). */
export const RTMP_TYPE = {
  setChunkSize: 1,
  abort: 2,
  acknowledgement: 3,
  userControl: 4,
  windowAckSize: 5,
  setPeerBandwidth: 6,
  audio: 8,
  video: 9,
  dataAmf3: 15,
  commandAmf3: 17,
  dataAmf0: 18,
  commandAmf0: 20,
  aggregate: 22,
} as const;

/** Limits of the decoder. */
export interface ChunkDecoderLimits {
  /** Largest message accepted, bytes. Default 32 MiB. */
  maxMessageSize: number;
  /** Most chunk streams with a message in progress at once. Default 64. */
  maxChunkStreams: number;
}

const DEFAULT_LIMITS: ChunkDecoderLimits = { maxMessageSize: 32 * 1024 * 1024, maxChunkStreams: 64 };

interface ChunkStreamState {
  timestamp: number;
  /** The last timestamp field (absolute for type 0, delta otherwise), reused by type-3 chunks. */
  timestampField: number;
  extended: boolean;
  length: number;
  typeId: number;
  messageStreamId: number;
  payload: Buffer | undefined;
  received: number;
}

/**
 * Incremental chunk decoder. Feed it whatever the socket delivered; it returns complete messages. It applies
 * Set Chunk Size and Abort (§5.4.1, §5.4.2) itself and still returns them.
 * @throws MediaParseError `RTMP_*` on a protocol violation; the caller closes the connection.
 */
export class RtmpChunkDecoder {
  private chunkSize = 128;
  private pending: Buffer = Buffer.alloc(0);
  private readonly streams = new Map<number, ChunkStreamState>();
  private readonly limits: ChunkDecoderLimits;
  /** Total bytes fed so far (for acknowledgements, §5.4.3). */
  bytesIn = 0;

  constructor(limits: Partial<ChunkDecoderLimits> = {}) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
  }

  /** The peer's current chunk size. */
  get inChunkSize(): number {
    return this.chunkSize;
  }

  /** Decodes as much of `data` as possible. */
  push(data: Buffer): RtmpMessage[] {
    this.bytesIn += data.length;
    this.pending = this.pending.length === 0 ? data : Buffer.concat([this.pending, data]);
    const out: RtmpMessage[] = [];
    let pos = 0;
    for (;;) {
      const consumed = this.readChunk(this.pending, pos, out);
      if (consumed === 0) break;
      pos += consumed;
    }
    // Only a partial header can be left over (payload bytes are copied as they arrive); copy it so the
    // socket buffer it came in is not kept alive.
    this.pending = pos === this.pending.length ? Buffer.alloc(0) : Buffer.from(this.pending.subarray(pos));
    return out;
  }

  /** The chunk whose payload is still arriving: its stream and the payload bytes it still owes. */
  private midChunk: { state: ChunkStreamState; csid: number; remaining: number } | undefined;

  /** Reads one chunk header or payload piece at `start`; returns bytes consumed, or 0 if nothing can be read yet. */
  private readChunk(buf: Buffer, start: number, out: RtmpMessage[]): number {
    if (this.midChunk) return this.readPayload(buf, start, out);
    let pos = start;
    if (pos >= buf.length) return 0;
    const b0 = buf[pos++]!;
    const fmt = b0 >> 6;
    let csid = b0 & 0x3f;
    if (csid === 0) {
      if (pos + 1 > buf.length) return 0;
      csid = 64 + buf[pos++]!;
    } else if (csid === 1) {
      if (pos + 2 > buf.length) return 0;
      csid = 64 + buf[pos]! + buf[pos + 1]! * 256;
      pos += 2;
    }
    const headerLen = [11, 7, 3, 0][fmt]!;
    if (pos + headerLen > buf.length) return 0;

    let state = this.streams.get(csid);
    if (!state) {
      if (fmt !== 0) throw new MediaParseError('RTMP_BAD_CHUNK', `chunk stream ${csid} starts with a type-${fmt} chunk`);
      if (this.streams.size >= this.limits.maxChunkStreams) {
        throw new MediaParseError('RTMP_TOO_MANY_CHUNK_STREAMS', `more than ${this.limits.maxChunkStreams} chunk streams`);
      }
      state = { timestamp: 0, timestampField: 0, extended: false, length: 0, typeId: 0, messageStreamId: 0, payload: undefined, received: 0 };
    }
    const startsMessage = state.payload === undefined;
    let timestampField = state.timestampField;
    let length = state.length;
    let typeId = state.typeId;
    let messageStreamId = state.messageStreamId;
    if (fmt <= 2) timestampField = buf.readUIntBE(pos, 3);
    if (fmt <= 1) {
      length = buf.readUIntBE(pos + 3, 3);
      typeId = buf[pos + 6]!;
    }
    if (fmt === 0) messageStreamId = buf.readUInt32LE(pos + 7);
    pos += headerLen;
    // Extended timestamp (§5.3.1.3): present when the field is 0xFFFFFF, and on type-3 chunks whose
    // preceding header used it (as FFmpeg and librtmp send it).
    const extended = fmt === 3 ? state.extended : timestampField === 0xffffff;
    if (extended) {
      if (pos + 4 > buf.length) return 0;
      const ext = buf.readUInt32BE(pos);
      pos += 4;
      if (fmt !== 3 || startsMessage) timestampField = ext;
    }
    if (!startsMessage && fmt !== 3) {
      throw new MediaParseError('RTMP_BAD_CHUNK', `chunk stream ${csid}: new header in the middle of a message`);
    }
    if (length > this.limits.maxMessageSize) {
      throw new MediaParseError('RTMP_MESSAGE_TOO_LARGE', `message of ${length} bytes exceeds the ${this.limits.maxMessageSize}-byte limit`);
    }

    // The header is complete: commit it.
    if (startsMessage) {
      // A type-0 timestamp is absolute; otherwise the field is a delta (for type 3 the previous chunk's field).
      state.timestamp = fmt === 0 ? timestampField : (state.timestamp + timestampField) >>> 0;
      state.payload = Buffer.allocUnsafe(length);
      state.received = 0;
    }
    state.timestampField = timestampField;
    state.extended = extended;
    state.length = length;
    state.typeId = typeId;
    state.messageStreamId = messageStreamId;
    this.streams.set(csid, state);
    this.midChunk = { state, csid, remaining: Math.min(this.chunkSize, length - state.received) };
    // Zero-length messages complete here; others complete as their payload arrives.
    const consumedHeader = pos - start;
    return consumedHeader + this.readPayload(buf, pos, out);
  }

  private readPayload(buf: Buffer, pos: number, out: RtmpMessage[]): number {
    const mid = this.midChunk!;
    const state = mid.state;
    const n = Math.min(mid.remaining, buf.length - pos);
    buf.copy(state.payload!, state.received, pos, pos + n);
    state.received += n;
    mid.remaining -= n;
    if (mid.remaining > 0) return n;
    this.midChunk = undefined;
    if (state.received === state.length) {
      const msg: RtmpMessage = {
        chunkStreamId: mid.csid,
        typeId: state.typeId,
        messageStreamId: state.messageStreamId,
        timestamp: state.timestamp,
        payload: state.payload!,
      };
      state.payload = undefined;
      state.received = 0;
      this.applyControl(msg);
      out.push(msg);
    }
    // A zero-byte read that completed a chunk still made progress; report at least the header bytes via caller.
    return n === 0 && mid.remaining === 0 ? 0 : n;
  }

  private applyControl(msg: RtmpMessage): void {
    if (msg.messageStreamId !== 0 && msg.chunkStreamId !== 2) return;
    if (msg.typeId === RTMP_TYPE.setChunkSize) {
      if (msg.payload.length < 4) throw new MediaParseError('RTMP_BAD_CONTROL', 'Set Chunk Size shorter than 4 bytes');
      const size = msg.payload.readUInt32BE(0) & 0x7fffffff;
      if (size < 1) throw new MediaParseError('RTMP_BAD_CONTROL', 'Set Chunk Size of 0');
      this.chunkSize = size;
    } else if (msg.typeId === RTMP_TYPE.abort) {
      if (msg.payload.length < 4) throw new MediaParseError('RTMP_BAD_CONTROL', 'Abort Message shorter than 4 bytes');
      const state = this.streams.get(msg.payload.readUInt32BE(0));
      if (state) {
        state.payload = undefined;
        state.received = 0;
      }
    }
  }
}

/**
 * Encodes one message as chunks (§5.3): a type-0 chunk, then type-3 continuations every `chunkSize` bytes.
 * `timestamp` is in milliseconds; values ≥ 0xFFFFFF use the extended timestamp field.
 */
export function encodeRtmpMessage(
  msg: { chunkStreamId: number; typeId: number; messageStreamId: number; timestamp: number; payload: Uint8Array },
  chunkSize: number,
): Buffer {
  const csid = msg.chunkStreamId;
  if (csid < 2 || csid > 65599) throw new RangeError(`chunk stream id ${csid} out of range`);
  const basic = (fmt: number): Buffer => {
    if (csid < 64) return Buffer.from([(fmt << 6) | csid]);
    if (csid < 320) return Buffer.from([fmt << 6, csid - 64]);
    return Buffer.from([(fmt << 6) | 1, (csid - 64) & 0xff, (csid - 64) >> 8]);
  };
  const ts = msg.timestamp >>> 0;
  const extended = ts >= 0xffffff;
  const header = Buffer.alloc(11);
  header.writeUIntBE(extended ? 0xffffff : ts, 0, 3);
  header.writeUIntBE(msg.payload.length, 3, 3);
  header[6] = msg.typeId;
  header.writeUInt32LE(msg.messageStreamId, 7);
  const ext = extended ? Buffer.alloc(4) : Buffer.alloc(0);
  if (extended) ext.writeUInt32BE(ts);
  const parts: Buffer[] = [basic(0), header, ext];
  const payload = Buffer.from(msg.payload.buffer, msg.payload.byteOffset, msg.payload.byteLength);
  for (let off = 0; off < payload.length || off === 0; off += chunkSize) {
    if (off > 0) parts.push(basic(3), ext);
    parts.push(payload.subarray(off, off + chunkSize));
    if (payload.length === 0) break;
  }
  return Buffer.concat(parts);
}
