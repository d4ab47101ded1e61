/** Reads an FLV file's tags (Adobe FLV v10.1 §E.3–E.4) for tests that feed real encoder output. */
import { readFileSync } from 'node:fs';

/** One FLV tag. `timestamp` is milliseconds. */
export interface FlvFileTag {
  tagType: number;
  timestamp: number;
  body: Buffer;
}

/** Reads every tag of an FLV file. */
export function readFlvFile(path: string): FlvFileTag[] {
  const data = readFileSync(path);
  if (data.toString('latin1', 0, 3) !== 'FLV') throw new Error(`${path} is not an FLV file`);
  let pos = data.readUInt32BE(5) + 4; // header size, then PreviousTagSize0
  const tags: FlvFileTag[] = [];
  while (pos + 11 <= data.length) {
    const tagType = data[pos]! & 0x1f;
    const size = data.readUIntBE(pos + 1, 3);
    const timestamp = (data.readUIntBE(pos + 4, 3) | (data[pos + 7]! << 24)) >>> 0;
    const body = data.subarray(pos + 11, pos + 11 + size);
    if (body.length < size) break;
    tags.push({ tagType, timestamp, body });
    pos += 11 + size + 4;
  }
  return tags;
}
