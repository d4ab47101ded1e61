/**
 * Maps one RTMP publish into a core Stream (the "into the stream" half, after MediaMTX): FLV sequence headers
 * become tracks, FLV frames become access units with integer timestamps (90 kHz video, sample-rate audio). It
 * feeds the stream only through the publisher session handle its connection claimed.
 */
import type { AccessUnit } from '../../core/access-unit.js';
import type { Logger } from '../../core/logger.js';
import type { PublisherSession } from '../../core/stream.js';
import type { AudioTrack, Track, VideoTrack } from '../../core/track.js';
import { AUDIO_CODECS, VIDEO_CODECS } from '../../media/codecs/codec-table.js';
import { splitLengthPrefixed } from '../../media/codecs/h264.js';
import { parseFlvAudio, parseFlvVideo } from '../../media/formats/flv.js';
import { unwrap, VIDEO_TIMESCALE } from '../../media/time/timescale.js';

/** What `onMetaData` told us to expect. */
export interface PublishMetadata {
  hasVideo: boolean | undefined;
  hasAudio: boolean | undefined;
  /** bits/s, from videodatarate + audiodatarate (kbit/s in FLV), if sent. */
  bitrate: number | undefined;
  frameRate: number | undefined;
}

/** How long to wait for the second sequence header before starting with the tracks at hand, ms of media time. */
const TRACK_WAIT_MS = 1_000;
/** Messages buffered while waiting for tracks. */
const MAX_PENDING = 512;

type Pending = { kind: 'video' | 'audio'; timestamp: number; body: Uint8Array };

const VIDEO_TRACK_ID = 1;
const AUDIO_TRACK_ID = 2;

/** Maps FLV audio/video message bodies of one publisher session into a Stream. */
export class RtmpToStream {
  private video: VideoTrack | undefined;
  private audio: AudioTrack | undefined;
  private started = false;
  private pending: Pending[] = [];
  private firstMediaTs: number | undefined;
  private lastRawTs: number | undefined;
  private nextAudioDts: number | undefined;
  metadata: PublishMetadata = { hasVideo: undefined, hasAudio: undefined, bitrate: undefined, frameRate: undefined };
  /** Frames skipped because of an unsupported codec or a bad payload. */
  skipped = 0;

  constructor(
    private readonly publisher: PublisherSession,
    private readonly log: Logger,
  ) {}

  /** Records `onMetaData` hints (FLV v10.1 §E.5). */
  setMetadata(meta: Record<string, unknown>): void {
    const num = (k: string): number | undefined => (typeof meta[k] === 'number' && Number.isFinite(meta[k]) ? meta[k] : undefined);
    const v = num('videodatarate');
    const a = num('audiodatarate');
    this.metadata = {
      // Encoders (OBS, FFmpeg) list a codec id for each track they will send, and none for a missing one.
      hasVideo: 'videocodecid' in meta,
      hasAudio: 'audiocodecid' in meta,
      bitrate: v !== undefined || a !== undefined ? Math.round(((v ?? 0) + (a ?? 0)) * 1000) : undefined,
      frameRate: num('framerate') ?? num('fps'),
    };
  }

  /** Handles an RTMP video message body with its 32-bit millisecond timestamp. */
  onVideo(timestamp: number, body: Uint8Array): void {
    if (!this.started) return this.hold({ kind: 'video', timestamp, body });
    this.video_(timestamp, body);
  }

  /** Handles an RTMP audio message body with its 32-bit millisecond timestamp. */
  onAudio(timestamp: number, body: Uint8Array): void {
    if (!this.started) return this.hold({ kind: 'audio', timestamp, body });
    this.audio_(timestamp, body);
  }

  /** The publisher stopped: releases the stream (it waits for a reconnect, or ends if it never started). */
  end(reason: string): void {
    this.publisher.close(reason);
  }

  private hold(p: Pending): void {
    // Sequence headers are applied at once so the track set is known as early as possible.
    if (p.kind === 'video') {
      const packet = parseFlvVideo(p.body);
      if (packet.type === 'config') return this.setVideoConfig(packet.codec, packet.record);
    } else {
      const packet = parseFlvAudio(p.body);
      if (packet.type === 'config') return this.setAudioConfig(packet.config);
    }
    this.pending.push(p);
    this.firstMediaTs ??= p.timestamp;
    const waited = (p.timestamp - this.firstMediaTs) >>> 0;
    const wantVideo = this.metadata.hasVideo ?? true;
    const wantAudio = this.metadata.hasAudio ?? true;
    const complete = (!wantVideo || this.video) && (!wantAudio || this.audio) && (this.video || this.audio);
    if (complete || waited >= TRACK_WAIT_MS || this.pending.length >= MAX_PENDING) this.start();
  }

  private start(): void {
    const tracks: Track[] = [];
    if (this.video) tracks.push(this.video);
    if (this.audio) tracks.push(this.audio);
    if (tracks.length === 0) {
      // Media without any sequence header cannot be decoded: drop it and keep waiting.
      this.skipped += this.pending.length;
      this.pending = [];
      this.firstMediaTs = undefined;
      return;
    }
    this.started = true;
    this.publisher.start(tracks);
    const pending = this.pending;
    this.pending = [];
    for (const p of pending) {
      if (p.kind === 'video') this.video_(p.timestamp, p.body);
      else this.audio_(p.timestamp, p.body);
    }
  }

  private restartIfChanged(): void {
    if (!this.started) return;
    const tracks: Track[] = [];
    if (this.video) tracks.push(this.video);
    if (this.audio) tracks.push(this.audio);
    if (this.publisher.stream.hasTracks(tracks)) return;
    this.log.info({}, 'codec configuration changed mid-stream; starting a new session');
    this.publisher.start(tracks);
  }

  private setVideoConfig(codec: VideoTrack['codec'], record: Uint8Array): void {
    try {
      const info = VIDEO_CODECS[codec].parseConfig(record);
      this.video = { kind: 'video', id: VIDEO_TRACK_ID, codec, timescale: VIDEO_TIMESCALE, config: record.slice(), info };
      this.restartIfChanged();
    } catch (err) {
      this.skipped++;
      this.log.warn({ err }, 'bad video sequence header ignored');
    }
  }

  private setAudioConfig(config: Uint8Array): void {
    try {
      const info = AUDIO_CODECS.aac.parseConfig(config);
      this.audio = { kind: 'audio', id: AUDIO_TRACK_ID, codec: 'aac', timescale: info.sampleRate, config: config.slice(), info };
      this.nextAudioDts = undefined;
      this.restartIfChanged();
    } catch (err) {
      this.skipped++;
      this.log.warn({ err }, 'bad audio sequence header ignored');
    }
  }

  /** Unwrapped millisecond timestamp (RTMP timestamps are 32-bit and wrap after ~49.7 days). */
  private ms(raw: number): number {
    const t = unwrap(this.lastRawTs, raw, 32);
    this.lastRawTs = t;
    return t;
  }

  private video_(timestamp: number, body: Uint8Array): void {
    const packet = parseFlvVideo(body);
    if (packet.type === 'config') return this.setVideoConfig(packet.codec, packet.record);
    if (packet.type !== 'frame') return;
    const track = this.video;
    if (!track || track.codec !== packet.codec) {
      this.skipped++;
      return;
    }
    const codec = VIDEO_CODECS[track.codec];
    const nals = splitLengthPrefixed(packet.data, track.info.nalLengthSize).filter((n) => {
      const t = codec.nalType(n);
      return !(t === 9 && track.codec === 'h264') && !(t === 35 && track.codec === 'h265'); // access unit delimiters
    });
    if (nals.length === 0) return;
    const dts = this.ms(timestamp) * (VIDEO_TIMESCALE / 1000);
    const au: AccessUnit = {
      trackId: track.id,
      dts,
      pts: dts + packet.compositionTime * (VIDEO_TIMESCALE / 1000),
      keyframe: packet.keyframe || nals.some((n) => codec.isIrapNalType(codec.nalType(n))),
      payload: nals.map((n) => n.slice()),
    };
    this.publisher.publish(au);
  }

  private audio_(timestamp: number, body: Uint8Array): void {
    const packet = parseFlvAudio(body);
    if (packet.type === 'config') return this.setAudioConfig(packet.config);
    if (packet.type !== 'frame' || packet.data.length === 0) return;
    const track = this.audio;
    if (!track) {
      this.skipped++;
      return;
    }
    // RTMP carries milliseconds; AAC frames are 1024 samples (23.2 ms at 44.1 kHz). Count samples so durations
    // stay exact, and resync to the millisecond clock only when it moves by more than half a frame.
    const frame = track.info.frameSamples;
    const fromMs = Math.round((this.ms(timestamp) * track.timescale) / 1000);
    let dts = this.nextAudioDts ?? fromMs;
    if (Math.abs(fromMs - dts) > frame / 2) dts = fromMs;
    this.nextAudioDts = dts + frame;
    this.publisher.publish({ trackId: track.id, dts, pts: dts, keyframe: true, payload: [packet.data.slice()] });
  }
}
