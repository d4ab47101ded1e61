/**
 * AMF0 encoder and decoder (Adobe "Action Message Format -- AMF 0", December 2007), as used by RTMP command and
 * data messages. Objects decode to null-prototype records so hostile keys such as "__proto__" stay plain data.
 */
import { MediaParseError } from '../errors.js';

/** A decoded AMF0 value. ECMA arrays and anonymous objects both decode to {@link Amf0Object}. */
export type Amf0Value = number | boolean | string | null | undefined | Date | Amf0Value[] | Amf0Object;
/** An AMF0 object or ECMA array: string keys to values. */
export interface Amf0Object {
  [key: string]: Amf0Value;
}

const MARKER = {
  number: 0x00,
  boolean: 0x01,
  string: 0x02,
  object: 0x03,
  null: 0x05,
  undefined: 0x06,
  reference: 0x07,
  ecmaArray: 0x08,
  objectEnd: 0x09,
  strictArray: 0x0a,
  date: 0x0b,
  longString: 0x0c,
  unsupported: 0x0d,
  xmlDocument: 0x0f,
  typedObject: 0x10,
  avmPlus: 0x11,
} as const;

/** Nesting limit for objects and arrays: RTMP commands are shallow, hostile input is not. */
export const AMF0_MAX_DEPTH = 16;
/** Limit on entries in one object or array. */
export const AMF0_MAX_ENTRIES = 4096;

class Amf0Reader {
  pos = 0;
  constructor(private readonly buf: Uint8Array) {}

  private need(n: number): void {
    if (this.pos + n > this.buf.length) {
      throw new MediaParseError('AMF0_TRUNCATED', `AMF0: value truncated at byte ${this.pos} (needs ${n} more)`);
    }
  }

  private u8(): number {
    this.need(1);
    return this.buf[this.pos++]!;
  }

  private u16(): number {
    this.need(2);
    const v = (this.buf[this.pos]! << 8) | this.buf[this.pos + 1]!;
    this.pos += 2;
    return v;
  }

  private u32(): number {
    this.need(4);
    const b = this.buf;
    const v = b[this.pos]! * 0x1000000 + ((b[this.pos + 1]! << 16) | (b[this.pos + 2]! << 8) | b[this.pos + 3]!);
    this.pos += 4;
    return v;
  }

  private f64(): number {
    this.need(8);
    const v = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, 8).getFloat64(0);
    this.pos += 8;
    return v;
  }

  private utf8(len: number): string {
    this.need(len);
    const s = Buffer.from(this.buf.buffer, this.buf.byteOffset + this.pos, len).toString('utf8');
    this.pos += len;
    return s;
  }

  get done(): boolean {
    return this.pos >= this.buf.length;
  }

  value(depth: number): Amf0Value {
    if (depth > AMF0_MAX_DEPTH) throw new MediaParseError('AMF0_TOO_DEEP', `AMF0: nesting deeper than ${AMF0_MAX_DEPTH}`);
    const marker = this.u8();
    switch (marker) {
      case MARKER.number:
        return this.f64();
      case MARKER.boolean:
        return this.u8() !== 0;
      case MARKER.string:
        return this.utf8(this.u16());
      case MARKER.longString:
      case MARKER.xmlDocument:
        return this.utf8(this.u32());
      case MARKER.object:
        return this.properties(depth);
      case MARKER.typedObject:
        this.utf8(this.u16()); // class name, not kept
        return this.properties(depth);
      case MARKER.ecmaArray:
        this.u32(); // associative count is advisory; the object-end marker terminates (AMF0 §2.10)
        return this.properties(depth);
      case MARKER.strictArray: {
        const count = this.u32();
        if (count > AMF0_MAX_ENTRIES) throw new MediaParseError('AMF0_TOO_LARGE', `AMF0: strict array of ${count} entries`);
        const out: Amf0Value[] = [];
        for (let i = 0; i < count; i++) out.push(this.value(depth + 1));
        return out;
      }
      case MARKER.date: {
        const ms = this.f64();
        this.u16(); // time zone, reserved (AMF0 §2.13)
        return new Date(ms);
      }
      case MARKER.null:
        return null;
      case MARKER.undefined:
      case MARKER.unsupported:
        return undefined;
      case MARKER.reference:
        this.u16();
        return undefined; // references are not produced by RTMP encoders; decode as undefined, never follow
      default:
        throw new MediaParseError('AMF0_BAD_MARKER', `AMF0: unknown type marker 0x${marker.toString(16)} at byte ${this.pos - 1}`);
    }
  }

  private properties(depth: number): Amf0Object {
    const obj: Amf0Object = Object.create(null) as Amf0Object;
    for (let i = 0; ; i++) {
      if (i > AMF0_MAX_ENTRIES) throw new MediaParseError('AMF0_TOO_LARGE', `AMF0: object with over ${AMF0_MAX_ENTRIES} entries`);
      const key = this.utf8(this.u16());
      if (key === '') {
        // Empty key followed by the object-end marker closes the object (AMF0 §2.11).
        const end = this.u8();
        if (end !== MARKER.objectEnd) throw new MediaParseError('AMF0_BAD_OBJECT', 'AMF0: empty key not followed by object-end');
        return obj;
      }
      obj[key] = this.value(depth + 1);
    }
  }
}

/**
 * Decodes every AMF0 value in `data` (an RTMP command or data message body).
 * @throws MediaParseError (`AMF0_*`) on truncated, unknown, too deep or too large input.
 */
export function decodeAmf0(data: Uint8Array): Amf0Value[] {
  const reader = new Amf0Reader(data);
  const values: Amf0Value[] = [];
  while (!reader.done) values.push(reader.value(0));
  return values;
}

function encodeString(parts: Buffer[], s: string, withMarker: boolean): void {
  const bytes = Buffer.from(s, 'utf8');
  if (bytes.length > 0xffff) {
    if (!withMarker) throw new RangeError('AMF0: object key longer than 65535 bytes');
    const head = Buffer.alloc(5);
    head[0] = MARKER.longString;
    head.writeUInt32BE(bytes.length, 1);
    parts.push(head, bytes);
    return;
  }
  const head = Buffer.alloc(withMarker ? 3 : 2);
  if (withMarker) head[0] = MARKER.string;
  head.writeUInt16BE(bytes.length, withMarker ? 1 : 0);
  parts.push(head, bytes);
}

function encodeValue(parts: Buffer[], v: Amf0Value): void {
  if (typeof v === 'number') {
    const b = Buffer.alloc(9);
    b[0] = MARKER.number;
    b.writeDoubleBE(v, 1);
    parts.push(b);
  } else if (typeof v === 'boolean') {
    parts.push(Buffer.from([MARKER.boolean, v ? 1 : 0]));
  } else if (typeof v === 'string') {
    encodeString(parts, v, true);
  } else if (v === null) {
    parts.push(Buffer.from([MARKER.null]));
  } else if (v === undefined) {
    parts.push(Buffer.from([MARKER.undefined]));
  } else if (v instanceof Date) {
    const b = Buffer.alloc(11);
    b[0] = MARKER.date;
    b.writeDoubleBE(v.getTime(), 1);
    parts.push(b);
  } else if (Array.isArray(v)) {
    const head = Buffer.alloc(5);
    head[0] = MARKER.strictArray;
    head.writeUInt32BE(v.length, 1);
    parts.push(head);
    for (const item of v) encodeValue(parts, item);
  } else {
    parts.push(Buffer.from([MARKER.object]));
    for (const [key, item] of Object.entries(v)) {
      encodeString(parts, key, false);
      encodeValue(parts, item);
    }
    parts.push(Buffer.from([0, 0, MARKER.objectEnd]));
  }
}

/** Encodes values back to back as AMF0 (objects as anonymous objects, arrays as strict arrays). */
export function encodeAmf0(...values: Amf0Value[]): Buffer {
  const parts: Buffer[] = [];
  for (const v of values) encodeValue(parts, v);
  return Buffer.concat(parts);
}

/** Encodes an ECMA array (marker 0x08), the shape of `onMetaData`. */
export function encodeAmf0EcmaArray(obj: Amf0Object): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(5);
  head[0] = MARKER.ecmaArray;
  head.writeUInt32BE(Object.keys(obj).length, 1);
  parts.push(head);
  for (const [key, item] of Object.entries(obj)) {
    encodeString(parts, key, false);
    encodeValue(parts, item);
  }
  parts.push(Buffer.from([0, 0, MARKER.objectEnd]));
  return Buffer.concat(parts);
}
