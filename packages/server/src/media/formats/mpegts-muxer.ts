/**
 * MPEG-TS muxer (ISO/IEC 13818-1), pure: one program of at most one video track (H.264 0x1B, HEVC 0x24) and one
 * audio track (AAC in ADTS 0x0F, Opus 0x06 with the "Opus" registration descriptor), as SRT playback sends it
 * and as ffmpeg/VLC read it. PAT and PMT (with CRC) go before every video keyframe (and at least every 500 ms of
 * audio-only), so a receiver that joins or loses packets finds the program again; the PCR rides on the video PID
 * (the audio PID when there is no video). Video access units become Annex B with an access unit delimiter and,
 * before keyframes, the parameter sets of the track; PES packets of video are unbounded (length 0).
 *
 * Input timestamps are in the track's timescale; output PTS/DTS are 90 kHz, 33 bits, starting where the first
 * access unit starts plus {@link MUX_DELAY_TICKS} (the PCR trails DTS by that much).
 */
import type { Track } from '../../core/track.js';
import { adtsHeader, parseAacConfig, type AacConfig } from '../codecs/aac.js';
import { parseAvcConfig } from '../codecs/h264.js';
import { parseHevcConfig } from '../codecs/hevc.js';
import { crc32Mpeg2, TS_PACKET_SIZE } from './mpegts-demuxer.js';

/** PIDs used. */
export const TS_PIDS = { pmt: 0x1000, video: 0x100, audio: 0x101 } as const;
/** How far DTS leads PCR, 90 kHz ticks (700 ms: ffmpeg's default muxdelay). */
export const MUX_DELAY_TICKS = 63_000;
const PAT_PID = 0;
const PROGRAM_NUMBER = 1;
/** PSI repetition when there is no video keyframe to anchor it, 90 kHz ticks. */
const PSI_INTERVAL_TICKS = 45_000;

interface Elementary {
  pid: number;
  streamType: number;
  streamId: number;
  trackId: number;
  timescale: number;
  kind: 'h264' | 'hevc' | 'aac' | 'opus';
  /** Video: parameter set NAL units put before keyframes. */
  parameterSets: Uint8Array[];
  aac: AacConfig | undefined;
  channels: number;
  descriptors: Buffer;
  cc: number;
}

const AUD_H264 = Buffer.from([0x09, 0xf0]);
const AUD_HEVC = Buffer.from([0x46, 0x01, 0x50]);
const START_CODE = Buffer.from([0, 0, 0, 1]);

/** Writes one program's transport stream from access units. */
export class MpegTsMuxer {
  private readonly streams: Elementary[] = [];
  private readonly byTrack = new Map<number, Elementary>();
  private patCc = 0;
  private pmtCc = 0;
  /** 90 kHz tick of the first access unit, per track timescale start (set by the first access unit). */
  private origin: { trackId: number; ticks: number } | undefined;
  private lastPsi = -Infinity;

  /**
   * @param tracks the tracks to carry (other kinds are ignored)
   * @throws MediaParseError when a track's configuration record does not parse
   */
  constructor(tracks: readonly Track[]) {
    for (const t of tracks) {
      if (t.kind === 'video' && (t.codec === 'h264' || t.codec === 'h265') && !this.streams.some((s) => s.pid === TS_PIDS.video)) {
        const hevc = t.codec === 'h265';
        const cfg = hevc ? parseHevcConfig(t.config) : parseAvcConfig(t.config);
        const sets = hevc ? [...(cfg as ReturnType<typeof parseHevcConfig>).vps, ...cfg.sps, ...cfg.pps] : [...cfg.sps, ...cfg.pps];
        this.add({ pid: TS_PIDS.video, streamType: hevc ? 0x24 : 0x1b, streamId: 0xe0, trackId: t.id, timescale: t.timescale, kind: hevc ? 'hevc' : 'h264', parameterSets: sets, aac: undefined, channels: 0, descriptors: Buffer.alloc(0), cc: 0 });
      } else if (t.kind === 'audio' && !this.streams.some((s) => s.pid === TS_PIDS.audio)) {
        if (t.codec === 'aac') {
          this.add({ pid: TS_PIDS.audio, streamType: 0x0f, streamId: 0xc0, trackId: t.id, timescale: t.timescale, kind: 'aac', parameterSets: [], aac: parseAacConfig(t.config), channels: 0, descriptors: Buffer.alloc(0), cc: 0 });
        } else if (t.codec === 'opus') {
          const channels = t.info.channels;
          // Registration descriptor "Opus", and the DVB extension descriptor with channel_config_code.
          const descriptors = Buffer.from([0x05, 4, 0x4f, 0x70, 0x75, 0x73, 0x7f, 2, 0x80, channels <= 2 ? channels : 2]);
          this.add({ pid: TS_PIDS.audio, streamType: 0x06, streamId: 0xbd, trackId: t.id, timescale: t.timescale, kind: 'opus', parameterSets: [], aac: undefined, channels, descriptors, cc: 0 });
        }
      }
    }
  }

  private add(e: Elementary): void {
    this.streams.push(e);
    this.byTrack.set(e.trackId, e);
  }

  /** True when no track could be carried. */
  get empty(): boolean {
    return this.streams.length === 0;
  }

  private get pcrPid(): number {
    return this.streams.find((s) => s.pid === TS_PIDS.video)?.pid ?? this.streams[0]?.pid ?? TS_PIDS.audio;
  }

  /**
   * The TS packets of one access unit (a whole number of 188-byte packets), with PAT/PMT first when due.
   * Returns an empty buffer for a track this muxer does not carry.
   */
  writeAccessUnit(trackId: number, dts: number, pts: number, keyframe: boolean, payload: readonly Uint8Array[]): Buffer {
    const e = this.byTrack.get(trackId);
    if (!e) return Buffer.alloc(0);
    const to90k = (t: number): number => Math.round((t * 90_000) / e.timescale);
    if (!this.origin) this.origin = { trackId, ticks: to90k(dts) };
    // Every track's time is mapped on one clock (all tracks of a session share time zero).
    const d = to90k(dts) - this.origin.ticks + MUX_DELAY_TICKS;
    const p = to90k(pts) - this.origin.ticks + MUX_DELAY_TICKS;
    const out: Buffer[] = [];
    const isVideo = e.pid === TS_PIDS.video;
    if ((isVideo && keyframe) || d - this.lastPsi >= PSI_INTERVAL_TICKS) {
      out.push(this.pat(), this.pmt());
      this.lastPsi = d;
    }
    const body = this.elementaryPayload(e, keyframe, payload);
    const pcr = e.pid === this.pcrPid ? d - MUX_DELAY_TICKS : undefined;
    out.push(this.pes(e, p, isVideo ? d : undefined, body, keyframe, pcr));
    return Buffer.concat(out);
  }

  private elementaryPayload(e: Elementary, keyframe: boolean, payload: readonly Uint8Array[]): Buffer {
    if (e.kind === 'h264' || e.kind === 'hevc') {
      const parts: Uint8Array[] = [START_CODE, e.kind === 'h264' ? AUD_H264 : AUD_HEVC];
      if (keyframe) for (const ps of e.parameterSets) parts.push(START_CODE, ps);
      for (const nal of payload) parts.push(START_CODE, nal);
      return Buffer.concat(parts);
    }
    const frame = Buffer.concat(payload);
    if (e.kind === 'aac') return Buffer.concat([adtsHeader(e.aac!, frame.length), frame]);
    // Opus control header: prefix 0x3FF, no trim or extension flags, then the size as 0xFF runs.
    const size: number[] = [];
    for (let n = frame.length; ; n -= 255) {
      size.push(Math.min(n, 255));
      if (n < 255) break;
    }
    return Buffer.concat([Buffer.from([0x7f, 0xe0, ...size]), frame]);
  }

  private pat(): Buffer {
    const section = psiSection(0x00, 1 /* transport_stream_id */, Buffer.from([0, PROGRAM_NUMBER, 0xe0 | (TS_PIDS.pmt >> 8), TS_PIDS.pmt & 0xff]));
    return this.psiPacket(PAT_PID, section, this.patCc++);
  }

  private pmt(): Buffer {
    const entries = this.streams.map((s) => Buffer.concat([Buffer.from([s.streamType, 0xe0 | (s.pid >> 8), s.pid & 0xff, 0xf0 | (s.descriptors.length >> 8), s.descriptors.length & 0xff]), s.descriptors]));
    const pcr = this.pcrPid;
    const body = Buffer.concat([Buffer.from([0xe0 | (pcr >> 8), pcr & 0xff, 0xf0, 0x00]), ...entries]);
    return this.psiPacket(TS_PIDS.pmt, psiSection(0x02, PROGRAM_NUMBER, body), this.pmtCc++);
  }

  private psiPacket(pid: number, section: Buffer, cc: number): Buffer {
    const packet = Buffer.alloc(TS_PACKET_SIZE, 0xff);
    packet[0] = 0x47;
    packet[1] = 0x40 | (pid >> 8);
    packet[2] = pid & 0xff;
    packet[3] = 0x10 | (cc & 0x0f);
    packet[4] = 0; // pointer field
    section.copy(packet, 5);
    return packet;
  }

  /** Packetizes one PES (§2.4.3.6) into TS packets; the first carries PCR and the random access indicator. */
  private pes(e: Elementary, pts: number, dts: number | undefined, body: Buffer, randomAccess: boolean, pcr: number | undefined): Buffer {
    const hasDts = dts !== undefined && dts !== pts;
    const headerData = hasDts ? 10 : 5;
    const header = Buffer.alloc(9 + headerData);
    header.writeUIntBE(0x000001, 0, 3);
    header[3] = e.streamId;
    const length = 3 + headerData + body.length;
    header.writeUInt16BE(e.pid === TS_PIDS.video || length > 0xffff ? 0 : length, 4);
    header[6] = 0x80;
    header[7] = hasDts ? 0xc0 : 0x80;
    header[8] = headerData;
    writeTimestamp(header, 9, hasDts ? 0x3 : 0x2, pts);
    if (hasDts) writeTimestamp(header, 14, 0x1, dts);
    const data = Buffer.concat([header, body]);
    const packets: Buffer[] = [];
    for (let pos = 0, first = true; pos < data.length; first = false) {
      const packet = Buffer.alloc(TS_PACKET_SIZE);
      packet[0] = 0x47;
      packet[1] = (first ? 0x40 : 0) | (e.pid >> 8);
      packet[2] = e.pid & 0xff;
      // Adaptation field: PCR and random access on the first packet; stuffing where the payload runs out.
      const adaptation: number[] = [];
      if (first && (pcr !== undefined || randomAccess)) {
        adaptation.push((randomAccess ? 0x40 : 0) | (pcr !== undefined ? 0x10 : 0));
        if (pcr !== undefined) {
          const base = ((pcr % 2 ** 33) + 2 ** 33) % 2 ** 33;
          adaptation.push(Math.floor(base / 2 ** 25) & 0xff, Math.floor(base / 2 ** 17) & 0xff, Math.floor(base / 2 ** 9) & 0xff, Math.floor(base / 2) & 0xff, ((base & 1) << 7) | 0x7e, 0x00);
        }
      }
      // `field` is the adaptation field after its length byte; undefined: no adaptation field.
      let field: number[] | undefined = adaptation.length > 0 ? adaptation : undefined;
      let room = TS_PACKET_SIZE - 4 - (field ? 1 + field.length : 0);
      const remaining = data.length - pos;
      if (remaining < room) {
        // Stuffing in the adaptation field so the payload ends the packet exactly (§2.4.3.5).
        let stuffing = room - remaining;
        if (!field) {
          field = [];
          stuffing--; // the length byte itself
          if (stuffing > 0) {
            field.push(0x00); // flags
            stuffing--;
          }
        }
        for (; stuffing > 0; stuffing--) field.push(0xff);
        room = remaining;
      }
      packet[3] = (field ? 0x30 : 0x10) | (e.cc & 0x0f);
      e.cc = (e.cc + 1) & 0x0f;
      let at = 4;
      if (field) {
        packet[at++] = field.length;
        for (const b of field) packet[at++] = b;
      }
      data.copy(packet, at, pos, pos + room);
      pos += room;
      packets.push(packet);
    }
    return Buffer.concat(packets);
  }
}

/** A PSI section with its CRC (§2.4.4): table id, id extension, version 0, current, section 0 of 0. */
function psiSection(tableId: number, idExtension: number, body: Buffer): Buffer {
  const length = 5 + body.length + 4;
  const head = Buffer.from([tableId, 0xb0 | (length >> 8), length & 0xff, idExtension >> 8, idExtension & 0xff, 0xc1, 0x00, 0x00]);
  const withoutCrc = Buffer.concat([head, body]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32Mpeg2(withoutCrc));
  return Buffer.concat([withoutCrc, crc]);
}

/** A 33-bit PES timestamp in its 5-byte form with the 4-bit prefix (§2.4.3.7). */
function writeTimestamp(b: Buffer, at: number, prefix: number, ticks: number): void {
  const t = ((ticks % 2 ** 33) + 2 ** 33) % 2 ** 33;
  b[at] = (prefix << 4) | (Math.floor(t / 2 ** 30) << 1) | 1;
  b.writeUInt16BE(((Math.floor(t / 2 ** 15) & 0x7fff) << 1) | 1, at + 1);
  b.writeUInt16BE(((t & 0x7fff) << 1) | 1, at + 3);
}
