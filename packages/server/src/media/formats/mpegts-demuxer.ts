/**
 * MPEG-2 transport stream demuxer (ISO/IEC 13818-1), pure: bytes in (any split — SRT carries 1316-byte payloads,
 * other senders are not 188-aligned per datagram), events out. Reads the PAT and the first program's PMT
 * (§2.4.4, CRC-32 checked), reassembles PES packets (§2.4.3.6; bounded and unbounded — `PES_packet_length` 0 for
 * video — ended by the next `payload_unit_start_indicator`), checks continuity counters (§2.4.3.3: a gap
 * discards the PES being assembled and is reported, so the reader can drop to the next keyframe), reads the
 * adaptation field's `random_access_indicator`, and unwraps the 33-bit PTS/DTS (90 kHz) per PID.
 *
 * Stream types read: 0x1B H.264, 0x24 HEVC, 0x0F AAC (ADTS), 0x06 with a registration descriptor `Opus`; other
 * types are listed in the program and their PIDs ignored.
 */
import { unwrap } from '../time/timescale.js';

/** Bytes per TS packet. */
export const TS_PACKET_SIZE = 188;
/** Largest PES kept, bytes; a larger one is dropped and reported (a 4K keyframe is well under it). */
export const MAX_PES_BYTES = 16 * 1024 * 1024;
const SYNC = 0x47;
const PID_PAT = 0x0000;
const MAX_SECTION_BYTES = 4096;

/** Codecs this demuxer hands on. */
export type TsStreamKind = 'h264' | 'hevc' | 'aac' | 'opus';

/** One elementary stream of the program. */
export interface TsElementaryStream {
  pid: number;
  streamType: number;
  /** Undefined for a stream type this demuxer does not read. */
  kind: TsStreamKind | undefined;
  /** Opus: channels from the extension descriptor's channel_config_code (the Opus-in-TS mapping); 2 without one. */
  channels?: number;
}

/** What the demuxer found. Timestamps are 90 kHz ticks, unwrapped (they keep increasing past 2^33). */
export type TsDemuxEvent =
  | { type: 'program'; streams: TsElementaryStream[] }
  | { type: 'pes'; pid: number; kind: TsStreamKind; pts: number; dts: number; randomAccess: boolean; data: Uint8Array }
  | { type: 'discontinuity'; pid: number; reason: string };

interface PesAssembly {
  stream: TsElementaryStream;
  chunks: Uint8Array[];
  bytes: number;
  /** From the PES header: bytes of payload expected, or 0 for unbounded. */
  expected: number;
  pts: number;
  dts: number;
  randomAccess: boolean;
  /** True once a header started it (a stream joined mid-PES waits for the next start). */
  started: boolean;
}

/** MPEG-2 CRC-32 (polynomial 0x04C11DB7, no reflection, initial 0xFFFFFFFF), as PSI sections use (Annex A). */
export function crc32Mpeg2(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (const byte of data) {
    crc ^= byte << 24;
    for (let i = 0; i < 8; i++) crc = crc & 0x80000000 ? (crc << 1) ^ 0x04c11db7 : crc << 1;
  }
  return crc >>> 0;
}

/** Reads a 33-bit PTS/DTS field (§2.4.3.7: 4 marker-separated pieces in 5 bytes). */
function readTimestamp(b: Uint8Array, pos: number): number {
  return (((b[pos]! >> 1) & 0x07) * 2 ** 30) + ((b[pos + 1]! << 22) | ((b[pos + 2]! >> 1) << 15) | (b[pos + 3]! << 7) | (b[pos + 4]! >> 1));
}

/** Demuxes one transport stream. Feed with {@link push}; {@link flush} ends the last PES of each PID. */
export class MpegTsDemuxer {
  private remainder: Uint8Array = new Uint8Array(0);
  private pmtPid: number | undefined;
  private streams = new Map<number, TsElementaryStream>();
  private readonly sections = new Map<number, { bytes: number[] }>();
  private readonly continuity = new Map<number, number>();
  private readonly pes = new Map<number, PesAssembly>();
  private readonly lastTimestamp = new Map<number, number>();
  /** Bytes skipped looking for a sync byte, packets with a bad header, PSI sections with a bad CRC. */
  readonly counters = { skippedBytes: 0, badPackets: 0, badSections: 0, ccErrors: 0, droppedPes: 0 };

  /** Feeds bytes; returns what they completed. Never throws on malformed input (it is counted and skipped). */
  push(bytes: Uint8Array): TsDemuxEvent[] {
    const out: TsDemuxEvent[] = [];
    let data = bytes;
    if (this.remainder.length > 0) {
      const joined = new Uint8Array(this.remainder.length + bytes.length);
      joined.set(this.remainder);
      joined.set(bytes, this.remainder.length);
      data = joined;
    }
    let pos = 0;
    while (data.length - pos >= TS_PACKET_SIZE) {
      if (data[pos] !== SYNC || (data.length - pos >= 2 * TS_PACKET_SIZE && data[pos + TS_PACKET_SIZE] !== SYNC)) {
        // Lost sync: move to the next byte that starts a packet followed by another packet start.
        pos++;
        this.counters.skippedBytes++;
        continue;
      }
      this.packet(data.subarray(pos, pos + TS_PACKET_SIZE), out);
      pos += TS_PACKET_SIZE;
    }
    this.remainder = data.slice(pos);
    return out;
  }

  /** Ends every PES being assembled (the sender stopped): returns them. */
  flush(): TsDemuxEvent[] {
    const out: TsDemuxEvent[] = [];
    for (const pid of [...this.pes.keys()]) this.finishPes(pid, out);
    return out;
  }

  private packet(p: Uint8Array, out: TsDemuxEvent[]): void {
    const transportError = (p[1]! & 0x80) !== 0;
    const unitStart = (p[1]! & 0x40) !== 0;
    const pid = ((p[1]! & 0x1f) << 8) | p[2]!;
    const scrambled = (p[3]! >> 6) & 0x03;
    const adaptation = (p[3]! >> 4) & 0x03;
    const cc = p[3]! & 0x0f;
    if (transportError || scrambled !== 0 || adaptation === 0) {
      this.counters.badPackets++;
      return;
    }
    let pos = 4;
    let randomAccess = false;
    if (adaptation & 0x02) {
      const length = p[4]!;
      if (length > 183) {
        this.counters.badPackets++;
        return;
      }
      if (length > 0) randomAccess = (p[5]! & 0x40) !== 0;
      pos += 1 + length;
    }
    if (!(adaptation & 0x01)) return; // adaptation field only: no payload, no CC increment
    if (pos > TS_PACKET_SIZE) {
      this.counters.badPackets++;
      return;
    }
    const payload = p.subarray(pos);
    // §2.4.3.3: the counter increments per packet with payload; one repeat is allowed (a duplicate).
    const last = this.continuity.get(pid);
    this.continuity.set(pid, cc);
    if (last !== undefined && cc === last) return;
    if (last !== undefined && cc !== ((last + 1) & 0x0f) && pid !== PID_PAT && pid !== this.pmtPid) {
      this.counters.ccErrors++;
      if (this.pes.has(pid)) {
        const assembly = this.pes.get(pid)!;
        if (assembly.started) out.push({ type: 'discontinuity', pid, reason: `continuity counter ${last} → ${cc}` });
        this.pes.set(pid, { ...assembly, chunks: [], bytes: 0, started: false });
      }
    }
    if (pid === PID_PAT || pid === this.pmtPid) this.psi(pid, unitStart, payload, out);
    else if (this.streams.get(pid)?.kind) this.pesPayload(pid, unitStart, randomAccess, payload, out);
  }

  /** Collects PSI sections (they may span packets) and reads complete ones. */
  private psi(pid: number, unitStart: boolean, payload: Uint8Array, out: TsDemuxEvent[]): void {
    let section = this.sections.get(pid);
    let pos = 0;
    if (unitStart) {
      const pointer = payload[0]!;
      pos = 1 + pointer;
      if (section && pointer > 0) section.bytes.push(...payload.subarray(1, 1 + pointer));
      if (section) this.section(pid, section.bytes, out);
      section = { bytes: [] };
      this.sections.set(pid, section);
    }
    if (!section || pos >= payload.length) return;
    for (let i = pos; i < payload.length && section.bytes.length < MAX_SECTION_BYTES; i++) section.bytes.push(payload[i]!);
    if (section.bytes.length >= 3) {
      const length = ((section.bytes[1]! & 0x0f) << 8) | section.bytes[2]!;
      if (section.bytes.length >= 3 + length) {
        this.section(pid, section.bytes.slice(0, 3 + length), out);
        this.sections.delete(pid);
      }
    }
  }

  private section(pid: number, bytes: number[], out: TsDemuxEvent[]): void {
    if (bytes.length < 3 || bytes[0] === 0xff) return; // stuffing
    const length = ((bytes[1]! & 0x0f) << 8) | bytes[2]!;
    if (length < 9 || bytes.length < 3 + length) return; // incomplete: wait for the whole section
    const s = Uint8Array.from(bytes.slice(0, 3 + length));
    if (crc32Mpeg2(s) !== 0) {
      this.counters.badSections++;
      return;
    }
    const tableId = s[0]!;
    const end = s.length - 4; // before the CRC
    if (pid === PID_PAT && tableId === 0x00) {
      for (let i = 8; i + 4 <= end; i += 4) {
        const program = (s[i]! << 8) | s[i + 1]!;
        const programPid = ((s[i + 2]! & 0x1f) << 8) | s[i + 3]!;
        if (program !== 0) {
          this.pmtPid = programPid; // the first program is the one read
          break;
        }
      }
    } else if (pid === this.pmtPid && tableId === 0x02) {
      const programInfoLength = ((s[10]! & 0x0f) << 8) | s[11]!;
      const streams: TsElementaryStream[] = [];
      for (let i = 12 + programInfoLength; i + 5 <= end; ) {
        const streamType = s[i]!;
        const esPid = ((s[i + 1]! & 0x1f) << 8) | s[i + 2]!;
        const infoLength = ((s[i + 3]! & 0x0f) << 8) | s[i + 4]!;
        const descriptors = s.subarray(i + 5, Math.min(end, i + 5 + infoLength));
        const kind = kindOf(streamType, descriptors);
        streams.push(kind === 'opus' ? { pid: esPid, streamType, kind, channels: opusChannels(descriptors) } : { pid: esPid, streamType, kind });
        i += 5 + infoLength;
      }
      const same = streams.length === this.streams.size && streams.every((x) => this.streams.get(x.pid)?.streamType === x.streamType);
      if (!same) {
        this.streams = new Map(streams.map((x) => [x.pid, x]));
        for (const pid of [...this.pes.keys()]) if (!this.streams.has(pid)) this.pes.delete(pid);
        out.push({ type: 'program', streams });
      }
    }
  }

  private pesPayload(pid: number, unitStart: boolean, randomAccess: boolean, payload: Uint8Array, out: TsDemuxEvent[]): void {
    const stream = this.streams.get(pid)!;
    if (unitStart) {
      this.finishPes(pid, out);
      const header = parsePesHeader(payload);
      if (!header) {
        this.counters.badPackets++;
        this.pes.delete(pid);
        return;
      }
      const previous = this.lastTimestamp.get(pid);
      const dts = unwrap(previous, header.dts ?? header.pts, 33);
      // PTS is at or after DTS by less than half the 33-bit range: unwrap it against the DTS.
      const pts = unwrap(dts, header.pts, 33);
      this.lastTimestamp.set(pid, dts);
      const assembly: PesAssembly = { stream, chunks: [], bytes: 0, expected: header.payloadLength, pts, dts, randomAccess, started: true };
      this.pes.set(pid, assembly);
      this.append(pid, assembly, payload.subarray(header.headerLength), out);
      return;
    }
    const assembly = this.pes.get(pid);
    if (!assembly?.started) return; // joined mid-PES: wait for the next start
    this.append(pid, assembly, payload, out);
  }

  private append(pid: number, assembly: PesAssembly, bytes: Uint8Array, out: TsDemuxEvent[]): void {
    if (bytes.length === 0) return;
    if (assembly.bytes + bytes.length > MAX_PES_BYTES) {
      this.counters.droppedPes++;
      out.push({ type: 'discontinuity', pid, reason: `PES larger than ${MAX_PES_BYTES} bytes dropped` });
      this.pes.set(pid, { ...assembly, chunks: [], bytes: 0, started: false });
      return;
    }
    assembly.chunks.push(bytes.slice());
    assembly.bytes += bytes.length;
    if (assembly.expected > 0 && assembly.bytes >= assembly.expected) this.finishPes(pid, out);
  }

  private finishPes(pid: number, out: TsDemuxEvent[]): void {
    const a = this.pes.get(pid);
    this.pes.delete(pid);
    if (!a || !a.started || a.bytes === 0 || !a.stream.kind) return;
    const data = a.chunks.length === 1 ? a.chunks[0]! : Buffer.concat(a.chunks);
    out.push({ type: 'pes', pid, kind: a.stream.kind, pts: a.pts, dts: a.dts, randomAccess: a.randomAccess, data: a.expected > 0 ? data.subarray(0, a.expected) : data });
  }
}

/** A PES header (§2.4.3.6): where the payload starts, its announced length (0: unbounded) and timestamps. */
function parsePesHeader(p: Uint8Array): { headerLength: number; payloadLength: number; pts: number; dts: number | undefined } | undefined {
  if (p.length < 9 || p[0] !== 0 || p[1] !== 0 || p[2] !== 1) return undefined;
  const packetLength = (p[4]! << 8) | p[5]!;
  if ((p[6]! & 0xc0) !== 0x80) return undefined; // streams without the optional header (padding, private 2) carry no media here
  const flags = p[7]! >> 6;
  const headerDataLength = p[8]!;
  const headerLength = 9 + headerDataLength;
  if (headerLength > p.length || flags === 1) return undefined;
  if (flags === 0) return undefined; // no PTS: nothing to time it by
  if (headerDataLength < (flags === 3 ? 10 : 5)) return undefined;
  const pts = readTimestamp(p, 9);
  const dts = flags === 3 ? readTimestamp(p, 14) : undefined;
  const payloadLength = packetLength === 0 ? 0 : packetLength - 3 - headerDataLength;
  if (packetLength !== 0 && payloadLength < 0) return undefined;
  return { headerLength, payloadLength, pts, dts };
}

function kindOf(streamType: number, descriptors: Uint8Array): TsStreamKind | undefined {
  if (streamType === 0x1b) return 'h264';
  if (streamType === 0x24) return 'hevc';
  if (streamType === 0x0f) return 'aac';
  if (streamType === 0x06) {
    // Registration descriptor (tag 0x05) with format_identifier "Opus" (the Opus-in-TS mapping, as ffmpeg writes it).
    for (let i = 0; i + 2 <= descriptors.length; ) {
      const tag = descriptors[i]!;
      const length = descriptors[i + 1]!;
      if (tag === 0x05 && length >= 4 && Buffer.from(descriptors.subarray(i + 2, i + 6)).toString('latin1') === 'Opus') return 'opus';
      i += 2 + length;
    }
  }
  return undefined;
}

/**
 * Channels of an Opus stream from its PMT descriptors: the DVB extension descriptor (tag 0x7F) with extension tag
 * 0x80 carries channel_config_code — 1–8 channels, 0x80 dual mono (2). Defaults to 2.
 */
function opusChannels(descriptors: Uint8Array): number {
  for (let i = 0; i + 2 <= descriptors.length; ) {
    const tag = descriptors[i]!;
    const length = descriptors[i + 1]!;
    if (tag === 0x7f && length >= 2 && descriptors[i + 2] === 0x80 && i + 3 < descriptors.length) {
      const code = descriptors[i + 3]!;
      if (code >= 1 && code <= 8) return code;
      if (code === 0x80) return 2;
    }
    i += 2 + length;
  }
  return 2;
}

/** Most Opus access units read from one PES (a PES holds a few; 120 ms of 2.5 ms frames is 48). */
const MAX_OPUS_UNITS = 64;

/**
 * Splits an Opus PES payload into Opus packets (the "Opus in MPEG-TS" mapping of VideoLAN/DVB, as ffmpeg's
 * mpegts muxer writes it): each access unit starts with a control header — 11 bits 0x3FF, start/end trim and control extension flags,
 * the size as a run of 0xFF bytes plus a last byte, then the optional trim fields and extension — followed by
 * the packet. Returns the packets (views into `data`); stops at the first malformed header.
 */
export function splitOpusAccessUnits(data: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  let pos = 0;
  while (pos + 2 <= data.length && out.length < MAX_OPUS_UNITS) {
    if (data[pos] !== 0x7f || (data[pos + 1]! & 0xe0) !== 0xe0) break;
    const flags = data[pos + 1]!;
    pos += 2;
    let size = 0;
    for (;;) {
      if (pos >= data.length) return out;
      const b = data[pos++]!;
      size += b;
      if (b !== 0xff) break;
    }
    if (flags & 0x10) pos += 2; // start trim
    if (flags & 0x08) pos += 2; // end trim
    if (flags & 0x04) {
      if (pos >= data.length) return out;
      pos += 1 + data[pos]!;
    }
    if (size === 0 || pos + size > data.length) break;
    out.push(data.subarray(pos, pos + size));
    pos += size;
  }
  return out;
}
