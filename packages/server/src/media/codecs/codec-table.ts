/**
 * The one place per-codec behaviour lives (STYLE rule 5): how a codec's configuration record is parsed into
 * track facts, which ISO BMFF sample entry carries it, and how keyframes are told apart.
 */
import { aacCodecString, parseAacConfig } from './aac.js';
import { h264CodecString, H264_NAL, parseAvcConfig, parseH264Sps } from './h264.js';
import { hevcCodecString, HEVC_NAL, parseHevcConfig, parseHevcSpsSize } from './hevc.js';
import { parseOpusHead } from './opus.js';

/** Video codecs the core carries. */
export type VideoCodec = 'h264' | 'h265';
/** Audio codecs the core carries. */
export type AudioCodec = 'aac' | 'opus';

/** Facts derived from a video codec configuration record. */
export interface VideoConfigInfo {
  codecString: string;
  width: number;
  height: number;
  nalLengthSize: number;
  /** Parameter-set NAL units (VPS/SPS/PPS), in decoding order. */
  parameterSets: Uint8Array[];
}

/** Facts derived from an audio codec configuration. */
export interface AudioConfigInfo {
  codecString: string;
  sampleRate: number;
  channels: number;
  /** Samples per access unit. */
  frameSamples: number;
}

interface VideoCodecEntry {
  /** ISO BMFF sample entry four-character code and configuration box. */
  sampleEntry: 'avc1' | 'hvc1';
  configBox: 'avcC' | 'hvcC';
  parseConfig(record: Uint8Array): VideoConfigInfo;
  /** NAL unit type of a NAL unit (first header byte(s)). */
  nalType(nal: Uint8Array): number;
  /** True for NAL types that begin a random access point. */
  isIrapNalType(type: number): boolean;
  /** True for parameter-set NAL types (SPS/PPS/VPS). */
  isParameterSetNalType(type: number): boolean;
}

/** Per-video-codec behaviour. */
export const VIDEO_CODECS: Record<VideoCodec, VideoCodecEntry> = {
  h264: {
    sampleEntry: 'avc1',
    configBox: 'avcC',
    parseConfig(record) {
      const cfg = parseAvcConfig(record);
      const sps = parseH264Sps(cfg.sps[0]!);
      return {
        codecString: h264CodecString(sps),
        width: sps.width,
        height: sps.height,
        nalLengthSize: cfg.nalLengthSize,
        parameterSets: [...cfg.sps, ...cfg.pps],
      };
    },
    nalType: (nal) => nal[0]! & 0x1f,
    isIrapNalType: (t) => t === H264_NAL.idr,
    isParameterSetNalType: (t) => t === H264_NAL.sps || t === H264_NAL.pps,
  },
  h265: {
    sampleEntry: 'hvc1',
    configBox: 'hvcC',
    parseConfig(record) {
      const cfg = parseHevcConfig(record);
      const size = parseHevcSpsSize(cfg.sps[0]!);
      return {
        codecString: hevcCodecString(cfg),
        width: size.width,
        height: size.height,
        nalLengthSize: cfg.nalLengthSize,
        parameterSets: [...cfg.vps, ...cfg.sps, ...cfg.pps],
      };
    },
    nalType: (nal) => (nal[0]! >> 1) & 0x3f,
    isIrapNalType: (t) => t >= 16 && t <= 23,
    isParameterSetNalType: (t) => t === HEVC_NAL.vps || t === HEVC_NAL.sps || t === HEVC_NAL.pps,
  },
};

interface AudioCodecEntry {
  /** ISO BMFF sample entry (LL-HLS carries AAC only: Opus is transcoded for it). */
  sampleEntry: 'mp4a' | 'Opus';
  parseConfig(config: Uint8Array): AudioConfigInfo;
}

/** Per-audio-codec behaviour. */
export const AUDIO_CODECS: Record<AudioCodec, AudioCodecEntry> = {
  aac: {
    sampleEntry: 'mp4a',
    parseConfig(config) {
      const cfg = parseAacConfig(config);
      // HE-AAC (SBR) still frames 1024 core samples at the core rate signalled here.
      return { codecString: aacCodecString(cfg), sampleRate: cfg.sampleRate, channels: cfg.channels, frameSamples: 1024 };
    },
  },
  opus: {
    sampleEntry: 'Opus',
    parseConfig(config) {
      const head = parseOpusHead(config);
      // RFC 7587 §4.1: the RTP clock (and so the track timescale) is 48 kHz; WebRTC sends 20 ms packets.
      return { codecString: 'opus', sampleRate: 48_000, channels: head.channels, frameSamples: 960 };
    },
  },
};
