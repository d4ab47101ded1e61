/**
 * Maps an MPEG-TS publish (SRT's payload) into a core Stream, the "into the stream" half like RTMP's: the
 * demuxer's PES packets become access units — H.264/HEVC Annex B split into NAL units with the parameter sets
 * moved onto the track (a change of them starts a new session), AAC ADTS split per frame with the
 * AudioSpecificConfig built from the first header. Timestamps: video PES PTS/DTS are 90 kHz already (unwrapped);
 * audio is counted in samples from the PES PTS. A continuity gap on video drops pictures until the next keyframe.
 * Opus in TS (registration descriptor "Opus") is split per access unit, its OpusHead made from the PMT's channel
 * count; the derived-media path bridges it to AAC for LL-HLS as it does for WHIP's Opus.
 */
import type { Logger } from '../../core/logger.js';
import type { PublisherSession } from '../../core/stream.js';
import type { AudioTrack, Track, VideoTrack } from '../../core/track.js';
import { AAC_SAMPLE_RATES, AdtsFrameReader, buildAacConfig } from '../../media/codecs/aac.js';
import { AUDIO_CODECS, VIDEO_CODECS, type VideoCodec } from '../../media/codecs/codec-table.js';
import { buildAvcConfig, splitAnnexB } from '../../media/codecs/h264.js';
import { buildHevcConfig } from '../../media/codecs/hevc.js';
import { buildOpusHead } from '../../media/codecs/opus.js';
import { MpegTsDemuxer, splitOpusAccessUnits, type TsDemuxEvent, type TsStreamKind } from '../../media/formats/mpegts-demuxer.js';
import { opusPacketSamples } from '../../media/formats/ogg.js';
import { rescale, VIDEO_TIMESCALE } from '../../media/time/timescale.js';

const VIDEO_TRACK_ID = 1;
const AUDIO_TRACK_ID = 2;
const OPUS_TIMESCALE = 48_000;
/** How long (media time, 90 kHz) to wait for the second track before starting with the one at hand. */
const TRACK_WAIT_TICKS = VIDEO_TIMESCALE;
/** PES packets held while waiting for the tracks. */
const MAX_PENDING = 256;

type Pes = Extract<TsDemuxEvent, { type: 'pes' }>;

/** Parameter set NAL types per codec: [VPS (HEVC only), SPS, PPS]. */
const PARAMETER_SETS: Record<VideoCodec, { vps: number | undefined; sps: number; pps: number; aud: number }> = {
  h264: { vps: undefined, sps: 7, pps: 8, aud: 9 },
  h265: { vps: 32, sps: 33, pps: 34, aud: 35 },
};

/** Feeds a Stream from MPEG-TS bytes. `end()` releases it. */
export class TsToStream {
  private readonly demuxer = new MpegTsDemuxer();
  private videoKind: VideoCodec | undefined;
  private videoPid: number | undefined;
  private hasAudioPid = false;
  private video: VideoTrack | undefined;
  private audio: AudioTrack | undefined;
  private started = false;
  private pending: Pes[] = [];
  private firstDts: number | undefined;
  private waitKeyframe = true;
  private parameterSets: { vps: Uint8Array[]; sps: Uint8Array[]; pps: Uint8Array[] } = { vps: [], sps: [], pps: [] };
  private nextAudioDts: number | undefined;
  /** PES packets or frames skipped (unsupported codec, bad payload, waiting for a keyframe). */
  skipped = 0;

  constructor(
    private readonly publisher: PublisherSession,
    private readonly log: Logger,
  ) {}

  /** Demuxer counters (sync losses, bad packets and sections, continuity errors). */
  get demuxStats(): MpegTsDemuxer['counters'] {
    return this.demuxer.counters;
  }

  /** Feeds TS bytes (any split). */
  push(bytes: Uint8Array): void {
    for (const e of this.demuxer.push(bytes)) this.onEvent(e);
  }

  /** The publisher stopped: releases the stream (it waits for a reconnect, or ends if it never started). */
  end(reason: string): void {
    for (const e of this.demuxer.flush()) this.onEvent(e);
    this.publisher.close(reason);
  }

  private onEvent(e: TsDemuxEvent): void {
    if (e.type === 'program') {
      const video = e.streams.find((s) => s.kind === 'h264' || s.kind === 'hevc');
      this.videoKind = video ? (video.kind === 'hevc' ? 'h265' : 'h264') : undefined;
      this.videoPid = video?.pid;
      this.hasAudioPid = e.streams.some((s) => s.kind === 'aac' || s.kind === 'opus');
      const opus = e.streams.find((s) => s.kind === 'opus');
      if (opus) this.takeOpusConfig(opus.channels ?? 2);
      for (const s of e.streams) if (!s.kind) this.log.info({ pid: s.pid, streamType: s.streamType }, 'MPEG-TS stream not mapped (only H.264, HEVC, AAC and Opus are)');
      return;
    }
    if (e.type === 'discontinuity') {
      // Pictures after a lost piece of video refer to what was lost: wait for a keyframe. Lost audio only
      // costs the PES it broke.
      if (this.video && e.pid === this.videoPid) this.waitKeyframe = true;
      return;
    }
    if (!this.started) return this.hold(e);
    this.map(e);
  }

  private hold(e: Pes): void {
    // Configurations are taken at once so the track set is known as early as possible.
    if (isVideo(e.kind)) this.takeParameterSets(e);
    else if (e.kind === 'aac') this.takeAacConfig(e.data);
    this.pending.push(e);
    this.firstDts ??= e.dts;
    const complete = (!this.videoKind || this.video) && (!this.hasAudioPid || this.audio) && (this.video || this.audio);
    if (complete || e.dts - this.firstDts >= TRACK_WAIT_TICKS || this.pending.length >= MAX_PENDING) this.start();
  }

  private start(): void {
    const tracks = this.tracks();
    if (tracks.length === 0) {
      this.skipped += this.pending.length;
      this.pending = [];
      this.firstDts = undefined;
      return;
    }
    this.started = true;
    this.publisher.start(tracks);
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) this.map(p);
  }

  private tracks(): Track[] {
    const tracks: Track[] = [];
    if (this.video) tracks.push(this.video);
    if (this.audio) tracks.push(this.audio);
    return tracks;
  }

  private map(e: Pes): void {
    if (isVideo(e.kind)) this.mapVideo(e);
    else if (e.kind === 'aac') this.mapAac(e);
    else if (e.kind === 'opus') this.mapOpus(e);
    else this.skipped++;
  }

  /** Moves parameter sets out of a video PES onto the track; returns the other NAL units. */
  private takeParameterSets(e: Pes): Uint8Array[] {
    const codec: VideoCodec = e.kind === 'hevc' ? 'h265' : 'h264';
    const types = PARAMETER_SETS[codec];
    const entry = VIDEO_CODECS[codec];
    const rest: Uint8Array[] = [];
    const found: { vps: Uint8Array[]; sps: Uint8Array[]; pps: Uint8Array[] } = { vps: [], sps: [], pps: [] };
    for (const nal of splitAnnexB(e.data)) {
      if (nal.length === 0) continue;
      const t = entry.nalType(nal);
      if (t === types.vps) found.vps.push(nal.slice());
      else if (t === types.sps) found.sps.push(nal.slice());
      else if (t === types.pps) found.pps.push(nal.slice());
      else if (t !== types.aud) rest.push(nal);
    }
    if (found.sps.length > 0 && found.pps.length > 0 && (codec === 'h264' || found.vps.length > 0)) {
      const same = (a: Uint8Array[], b: Uint8Array[]): boolean => a.length === b.length && a.every((x, i) => Buffer.compare(x, b[i]!) === 0);
      const ps = this.parameterSets;
      if (!this.video || this.video.codec !== codec || !same(found.sps, ps.sps) || !same(found.pps, ps.pps) || !same(found.vps, ps.vps)) {
        try {
          const record = codec === 'h264' ? buildAvcConfig(found.sps, found.pps) : buildHevcConfig(found.vps, found.sps, found.pps);
          this.video = { kind: 'video', id: VIDEO_TRACK_ID, codec, timescale: VIDEO_TIMESCALE, config: record, info: entry.parseConfig(record) };
          this.parameterSets = found;
          this.restartIfChanged();
        } catch (err) {
          this.skipped++;
          this.log.warn({ err }, 'bad video parameter sets ignored');
        }
      }
    }
    return rest;
  }

  private mapVideo(e: Pes): void {
    const nals = this.takeParameterSets(e);
    const track = this.video;
    if (!track || nals.length === 0) {
      this.skipped++;
      return;
    }
    const entry = VIDEO_CODECS[track.codec];
    const keyframe = e.randomAccess || nals.some((n) => entry.isIrapNalType(entry.nalType(n)));
    if (this.waitKeyframe && !keyframe) {
      this.skipped++;
      return;
    }
    this.waitKeyframe = false;
    this.publisher.publish({ trackId: track.id, dts: e.dts, pts: e.pts, keyframe, payload: nals.map((n) => n.slice()) });
  }

  /** Builds the AudioSpecificConfig from an ADTS header (ISO/IEC 13818-7 §6.2.1). */
  private takeAacConfig(data: Uint8Array): void {
    if (data.length < 7 || data[0] !== 0xff || (data[1]! & 0xf6) !== 0xf0) return;
    const objectType = (data[2]! >> 6) + 1;
    const sampleRate = AAC_SAMPLE_RATES[(data[2]! >> 2) & 0x0f];
    const channels = ((data[2]! & 0x01) << 2) | (data[3]! >> 6);
    if (!sampleRate || channels === 0) return;
    let config: Buffer;
    try {
      config = buildAacConfig(objectType, sampleRate, channels);
    } catch {
      return; // an ADTS header this reader cannot describe: the frames are skipped
    }
    if (this.audio && Buffer.compare(this.audio.config, config) === 0) return;
    const info = AUDIO_CODECS.aac.parseConfig(config);
    this.audio = { kind: 'audio', id: AUDIO_TRACK_ID, codec: 'aac', timescale: info.sampleRate, config, info };
    this.nextAudioDts = undefined;
    this.restartIfChanged();
  }

  private mapAac(e: Pes): void {
    this.takeAacConfig(e.data);
    const track = this.audio;
    if (!track) {
      this.skipped++;
      return;
    }
    // Samples counted from the PES timestamp; resynchronized only when it moves by more than half a frame.
    const frame = track.info.frameSamples;
    const fromPts = rescale(e.pts, VIDEO_TIMESCALE, track.timescale);
    let dts = this.nextAudioDts ?? fromPts;
    if (Math.abs(fromPts - dts) > frame / 2) dts = fromPts;
    // A PES carries whole ADTS frames: a fresh reader splits them (headers removed).
    for (const raw of new AdtsFrameReader().push(Buffer.from(e.data.buffer, e.data.byteOffset, e.data.byteLength))) {
      this.publisher.publish({ trackId: track.id, dts, pts: dts, keyframe: true, payload: [raw] });
      dts += frame;
    }
    this.nextAudioDts = dts;
  }

  /** Opus has no in-band configuration in TS: an OpusHead from the PMT's channel count (pre-skip: libopus's 312). */
  private takeOpusConfig(channels: number): void {
    const config = buildOpusHead(channels);
    if (this.audio && Buffer.compare(this.audio.config, config) === 0) return;
    this.audio = { kind: 'audio', id: AUDIO_TRACK_ID, codec: 'opus', timescale: OPUS_TIMESCALE, config, info: AUDIO_CODECS.opus.parseConfig(config) };
    this.nextAudioDts = undefined;
    this.restartIfChanged();
  }

  private mapOpus(e: Pes): void {
    const track = this.audio;
    if (track?.codec !== 'opus') {
      this.skipped++;
      return;
    }
    const fromPts = rescale(e.pts, VIDEO_TIMESCALE, OPUS_TIMESCALE);
    let dts = this.nextAudioDts ?? fromPts;
    if (Math.abs(fromPts - dts) > 480) dts = fromPts;
    for (const packet of splitOpusAccessUnits(e.data)) {
      let samples: number;
      try {
        samples = opusPacketSamples(packet);
      } catch {
        this.skipped++;
        continue;
      }
      this.publisher.publish({ trackId: track.id, dts, pts: dts, keyframe: true, payload: [packet.slice()] });
      dts += samples;
    }
    this.nextAudioDts = dts;
  }

  private restartIfChanged(): void {
    if (!this.started) return;
    const tracks = this.tracks();
    if (this.publisher.stream.hasTracks(tracks)) return;
    this.log.info({}, 'codec configuration changed mid-stream; starting a new session');
    this.publisher.start(tracks);
  }
}

const isVideo = (kind: TsStreamKind): boolean => kind === 'h264' || kind === 'hevc';
