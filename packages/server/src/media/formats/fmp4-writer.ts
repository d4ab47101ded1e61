/**
 * CMAF / fragmented MP4 writer (ISO/IEC 14496-12, ISO/IEC 23000-19): one init segment for all tracks, and
 * fragments (`moof` + `mdat`) holding any number of samples per track. Pure: bytes in, bytes out.
 */

/** A track as the init segment describes it. */
export type Fmp4Track =
  | {
      kind: 'video';
      id: number;
      /** Ticks per second of this track's timestamps (90 000 for video). */
      timescale: number;
      sampleEntry: 'avc1' | 'hvc1';
      configBox: 'avcC' | 'hvcC';
      /** The decoder configuration record carried in the config box. */
      config: Uint8Array;
      width: number;
      height: number;
    }
  | {
      kind: 'audio';
      id: number;
      /** Ticks per second: the sample rate. */
      timescale: number;
      sampleEntry: 'mp4a';
      /** AudioSpecificConfig. */
      config: Uint8Array;
      sampleRate: number;
      channels: number;
    };

/** One sample of a fragment, timestamps in the track's timescale. */
export interface Fmp4Sample {
  /** Ticks until the next sample's decode time. */
  duration: number;
  /** Presentation time minus decode time, in ticks (may be negative; written with trun version 1). */
  compositionOffset: number;
  keyframe: boolean;
  /** Sample bytes (length-prefixed NAL units for video, a raw frame for audio). */
  data: Uint8Array[];
}

/** A track's run of samples inside one fragment. */
export interface Fmp4TrackRun {
  trackId: number;
  /** Decode time of the first sample, ticks (tfdt). */
  baseDecodeTime: number;
  samples: Fmp4Sample[];
}

const UNITY_MATRIX = [0x10000, 0, 0, 0, 0x10000, 0, 0, 0, 0x40000000];

class ByteWriter {
  private chunks: Buffer[] = [];
  length = 0;
  put(b: Uint8Array): this {
    const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
    this.chunks.push(buf);
    this.length += buf.length;
    return this;
  }
  u8(v: number): this {
    return this.put(Buffer.from([v & 0xff]));
  }
  u16(v: number): this {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v & 0xffff);
    return this.put(b);
  }
  u32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(v >>> 0);
    return this.put(b);
  }
  i32(v: number): this {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v | 0);
    return this.put(b);
  }
  u64(v: number): this {
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(Math.max(0, Math.trunc(v))));
    return this.put(b);
  }
  zeros(n: number): this {
    return this.put(Buffer.alloc(n));
  }
  ascii(s: string): this {
    return this.put(Buffer.from(s, 'latin1'));
  }
  bytes(): Buffer {
    return Buffer.concat(this.chunks, this.length);
  }
}

function box(type: string, ...payload: Uint8Array[]): Buffer {
  const size = 8 + payload.reduce((n, p) => n + p.length, 0);
  const w = new ByteWriter().u32(size).ascii(type);
  for (const p of payload) w.put(p);
  return w.bytes();
}

function fullBox(type: string, version: number, flags: number, ...payload: Uint8Array[]): Buffer {
  const head = new ByteWriter().u8(version).u8(flags >> 16).u16(flags & 0xffff).bytes();
  return box(type, head, ...payload);
}

function matrix(w: ByteWriter): ByteWriter {
  for (const m of UNITY_MATRIX) w.u32(m);
  return w;
}

/** MPEG-4 descriptor with its expandable size field (ISO/IEC 14496-1 §8.3.3). */
function descriptor(tag: number, body: Uint8Array): Buffer {
  const sizeBytes: number[] = [];
  let n = body.length;
  do {
    sizeBytes.unshift(n & 0x7f);
    n >>= 7;
  } while (n > 0);
  for (let i = 0; i < sizeBytes.length - 1; i++) sizeBytes[i]! |= 0x80;
  return Buffer.concat([Buffer.from([tag, ...sizeBytes]), body]);
}

function esds(asc: Uint8Array): Buffer {
  const decoderSpecificInfo = descriptor(0x05, asc);
  const decoderConfig = descriptor(
    0x04,
    Buffer.concat([
      // objectTypeIndication 0x40 = MPEG-4 Audio; streamType 5 (audio) << 2 | upStream 0 | reserved 1
      new ByteWriter().u8(0x40).u8(0x15).u8(0).u16(0).u32(0).u32(0).bytes(),
      decoderSpecificInfo,
    ]),
  );
  const slConfig = descriptor(0x06, Buffer.from([0x02]));
  const es = descriptor(0x03, Buffer.concat([new ByteWriter().u16(0).u8(0).bytes(), decoderConfig, slConfig]));
  return fullBox('esds', 0, 0, es);
}

function sampleEntry(track: Fmp4Track): Buffer {
  if (track.kind === 'video') {
    const w = new ByteWriter()
      .zeros(6)
      .u16(1) // data_reference_index
      .zeros(16) // pre_defined, reserved, pre_defined[3]
      .u16(track.width)
      .u16(track.height)
      .u32(0x00480000) // 72 dpi
      .u32(0x00480000)
      .u32(0)
      .u16(1) // frame_count
      .zeros(32) // compressorname
      .u16(0x0018) // depth
      .u16(0xffff); // pre_defined = -1
    return box(track.sampleEntry, w.bytes(), box(track.configBox, track.config));
  }
  const w = new ByteWriter()
    .zeros(6)
    .u16(1)
    .zeros(8)
    .u16(track.channels)
    .u16(16) // samplesize
    .u16(0)
    .u16(0)
    .u32((track.sampleRate & 0xffff) * 0x10000); // 16.16 fixed point (ISO/IEC 14496-12 §12.2.3)
  return box(track.sampleEntry, w.bytes(), esds(track.config));
}

function trak(track: Fmp4Track): Buffer {
  const isVideo = track.kind === 'video';
  const tkhd = fullBox(
    'tkhd',
    0,
    0x000003, // track_enabled | track_in_movie
    matrix(
      new ByteWriter()
        .u32(0)
        .u32(0)
        .u32(track.id)
        .u32(0)
        .u32(0) // duration: unknown for a live fragmented file
        .zeros(8)
        .u16(0)
        .u16(0)
        .u16(isVideo ? 0 : 0x0100)
        .u16(0),
    )
      .u32(isVideo ? track.width * 0x10000 : 0)
      .u32(isVideo ? track.height * 0x10000 : 0)
      .bytes(),
  );
  const mdhd = fullBox('mdhd', 0, 0, new ByteWriter().u32(0).u32(0).u32(track.timescale).u32(0).u16(0x55c4).u16(0).bytes());
  const hdlr = fullBox(
    'hdlr',
    0,
    0,
    new ByteWriter()
      .u32(0)
      .ascii(isVideo ? 'vide' : 'soun')
      .zeros(12)
      .ascii(isVideo ? 'VideoHandler\0' : 'SoundHandler\0')
      .bytes(),
  );
  const mediaHeader = isVideo ? fullBox('vmhd', 0, 1, Buffer.alloc(8)) : fullBox('smhd', 0, 0, Buffer.alloc(4));
  const dinf = box('dinf', fullBox('dref', 0, 0, new ByteWriter().u32(1).bytes(), fullBox('url ', 0, 1)));
  const stbl = box(
    'stbl',
    fullBox('stsd', 0, 0, new ByteWriter().u32(1).bytes(), sampleEntry(track)),
    fullBox('stts', 0, 0, Buffer.alloc(4)),
    fullBox('stsc', 0, 0, Buffer.alloc(4)),
    fullBox('stsz', 0, 0, Buffer.alloc(8)),
    fullBox('stco', 0, 0, Buffer.alloc(4)),
  );
  return box('trak', tkhd, box('mdia', mdhd, hdlr, box('minf', mediaHeader, dinf, stbl)));
}

/** Writes a CMAF init segment (`ftyp` + `moov` with `mvex`) describing `tracks`. */
export function writeInitSegment(tracks: readonly Fmp4Track[]): Buffer {
  const ftyp = box('ftyp', new ByteWriter().ascii('iso6').u32(0).ascii('iso6').ascii('cmfc').ascii('iso5').ascii('mp41').bytes());
  const nextTrackId = Math.max(0, ...tracks.map((t) => t.id)) + 1;
  const mvhd = fullBox(
    'mvhd',
    0,
    0,
    matrix(new ByteWriter().u32(0).u32(0).u32(1000).u32(0).u32(0x00010000).u16(0x0100).zeros(10))
      .zeros(24)
      .u32(nextTrackId)
      .bytes(),
  );
  const mvex = box(
    'mvex',
    ...tracks.map((t) => fullBox('trex', 0, 0, new ByteWriter().u32(t.id).u32(1).u32(0).u32(0).u32(0).bytes())),
  );
  return Buffer.concat([ftyp, box('moov', mvhd, ...tracks.map(trak), mvex)]);
}

// Sample flags (ISO/IEC 14496-12 §8.8.3.1): sample_depends_on = 2 for sync samples; 1 + non-sync for others.
const SYNC_SAMPLE_FLAGS = 0x02000000;
const NON_SYNC_SAMPLE_FLAGS = 0x01010000;
// trun flags: data-offset, sample-duration, sample-size, sample-flags, sample-composition-time-offset.
const TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400 | 0x000800;

/**
 * Writes one fragment: `moof` (mfhd + one `traf` per run) followed by one `mdat` with the runs' samples in
 * order. `sequenceNumber` is the mfhd sequence (starts at 1, increases by one per fragment).
 */
export function writeFragment(sequenceNumber: number, runs: readonly Fmp4TrackRun[]): Buffer {
  const nonEmpty = runs.filter((r) => r.samples.length > 0);
  const sampleSize = (s: Fmp4Sample): number => s.data.reduce((n, d) => n + d.length, 0);
  // The trun data offsets depend on the moof size, which does not depend on the offsets' values.
  const trafs = (offsets: number[]): Buffer[] =>
    nonEmpty.map((run, i) => {
      const trun = new ByteWriter().u32(run.samples.length).i32(offsets[i]!);
      for (const s of run.samples) {
        trun
          .u32(s.duration)
          .u32(sampleSize(s))
          .u32(s.keyframe ? SYNC_SAMPLE_FLAGS : NON_SYNC_SAMPLE_FLAGS)
          .i32(s.compositionOffset);
      }
      return box(
        'traf',
        fullBox('tfhd', 0, 0x020000, new ByteWriter().u32(run.trackId).bytes()), // default-base-is-moof
        fullBox('tfdt', 1, 0, new ByteWriter().u64(run.baseDecodeTime).bytes()),
        fullBox('trun', 1, TRUN_FLAGS, trun.bytes()),
      );
    });
  const mfhd = fullBox('mfhd', 0, 0, new ByteWriter().u32(sequenceNumber).bytes());
  const moofSize = box('moof', mfhd, ...trafs(nonEmpty.map(() => 0))).length;
  const offsets: number[] = [];
  let offset = moofSize + 8;
  for (const run of nonEmpty) {
    offsets.push(offset);
    offset += run.samples.reduce((n, s) => n + sampleSize(s), 0);
  }
  const moof = box('moof', mfhd, ...trafs(offsets));
  const mdat = new ByteWriter().u32(offset - moofSize).ascii('mdat');
  for (const run of nonEmpty) for (const s of run.samples) for (const d of s.data) mdat.put(d);
  return Buffer.concat([moof, mdat.bytes()]);
}
