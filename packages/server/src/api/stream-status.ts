/**
 * The public status of a stream (`GET /api/v1/streams/{name}`): whether and how it plays now, its tracks,
 * renditions, transcoder and every entity's stats. Never a key.
 */
import type { Recorder } from '../record/recorder.js';
import type { EntityStats } from '../core/stats.js';
import type { StreamRegistry } from '../core/stream-registry.js';
import type { LlHlsServer } from '../egress/llhls/llhls-server.js';
import type { WhepServer, WhepStreamStats } from '../egress/whep/whep-server.js';
import type { TranscodeManager } from '../transcode/transcode-manager.js';

/** What the status reads. */
export interface StatusDeps {
  registry: StreamRegistry;
  llhls: LlHlsServer;
  whep: WhepServer;
  transcode: TranscodeManager;
  /** Viewers of `name` now, every protocol. */
  viewerCount(name: string): number;
  /** The recorder, when status should say whether the stream is being recorded. */
  recorder?: Pick<Recorder, 'current'>;
  /** Venue mode for `name` (see {@link StreamStatus.p2p}), or null when its viewers may not share segments. */
  p2p?(name: string): P2pStatus | null;
}

/** Where venue-mode viewers of a stream find each other. */
export interface P2pStatus {
  /** Tracker path on this server (WebSocket: `ws:`/`wss:` + host + path). */
  tracker: string;
  /** UDP port of this server's STUN server, or null when it has none. */
  stunPort: number | null;
  /** Viewers connected to the tracker now. */
  peers: number;
}

/** Public view of one stream. */
export interface StreamStatus {
  name: string;
  /** `live`: a publisher is sending; `reconnecting`: it dropped and may return; `offline` otherwise. */
  state: 'live' | 'reconnecting' | 'offline';
  /** True when an LL-HLS playlist can be played now. */
  playable: boolean;
  /** True when WHEP (WebRTC) playback is offered now. */
  webrtc: boolean;
  playback: { hls: string; whep: string; watch: string };
  /** Codec strings (RFC 6381) of the current (or last) publisher session's tracks; null for a missing kind. */
  tracks: { video: string | null; audio: string | null };
  /** Viewers now, every protocol (WebRTC, LL-HLS, SRT). */
  viewers: number;
  /** WebRTC viewers now and their counters (see `WhepServer.streamStats`). */
  webrtcStats: WhepStreamStats;
  /** Ladder renditions playable now besides the source: name (`720p`), size, target bits/s and LL-HLS media playlist. */
  renditions: { name: string; width: number; height: number; bitrate: number; hls: string }[];
  /**
   * The stream's video job (encoder and why, outputs, speed, lag, restarts, `degraded` and what was shed), or
   * undefined when the stream has none.
   */
  transcode: TranscodeStatus | undefined;
  /** The recording in progress (its id once created), or null; `error` says why it stopped early. */
  recording: { id: string | null; error: string | null } | null;
  /** Venue mode: where its viewers find each other to share segments, or null (P2P off, or not live). */
  p2p: P2pStatus | null;
  /** Every entity of the stream in the one stats shape: the stream (publisher, readers, renditions), its jobs, its WebRTC viewers. */
  stats: { stream: EntityStats | undefined; jobs: EntityStats[]; viewers: EntityStats[] };
}

/** The video job in brief (the full picture is in `stats.jobs`). */
export interface TranscodeStatus {
  state: string;
  encoder: string | undefined;
  encoderReason: string | undefined;
  outputs: string[];
  degraded: boolean;
  /** What was shed, in order (`x264 ultrafast, 720p dropped`), when degraded. */
  shed: string | undefined;
  degradeReason: string | undefined;
  restarts: number;
  lastFault: string | undefined;
  /** Media time out per media time in over the last window (1 = real time). */
  speed: number | undefined;
  /** Source picture to its copy, last picture, ms. */
  lagMs: number | undefined;
  /** The audio job (AAC ↔ Opus), if any. */
  audio: { state: string; from: string | undefined; to: string | undefined; restarts: number } | undefined;
}

/** The video job in brief from the jobs' stats. */
export function transcodeStatus(jobs: EntityStats[]): TranscodeStatus | undefined {
  const video = jobs.find((j) => j.info['kind'] === 'video');
  const audio = jobs.find((j) => j.info['kind'] === 'audio');
  if (!video) return undefined;
  const text = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
  return {
    state: video.state,
    encoder: text(video.info['encoder']),
    encoderReason: text(video.info['encoderReason']),
    outputs: (text(video.info['outputs']) ?? '').split(',').filter(Boolean),
    degraded: video.info['degraded'] === true,
    shed: text(video.info['shed']),
    degradeReason: text(video.info['degradeReason']),
    restarts: video.counters['restarts'] ?? 0,
    lastFault: text(video.info['lastFault']),
    speed: video.counters['speed'],
    lagMs: video.counters['lagMs'],
    audio: audio && { state: audio.state, from: text(audio.info['from']), to: text(audio.info['to']), restarts: audio.counters['restarts'] ?? 0 },
  };
}

function recordingStatus(r: ReturnType<Recorder['current']>): StreamStatus['recording'] {
  return r ? { id: r.id ?? null, error: r.error ?? null } : null;
}

/** The status of `name` now (offline when it has no stream). */
export function streamStatus(deps: StatusDeps, name: string): StreamStatus {
  const stream = deps.registry.get(name);
  const muxer = deps.llhls.muxer(name);
  const state = stream?.state === 'live' ? 'live' : stream?.state === 'reconnecting' ? 'reconnecting' : 'offline';
  const jobs = deps.transcode.stats(name);
  return {
    name,
    state,
    playable: state !== 'offline' && muxer !== undefined && muxer.ready && !muxer.ended,
    webrtc: state === 'live' && deps.whep.playable(name),
    playback: {
      hls: `/hls/${encodeURIComponent(name)}/index.m3u8`,
      whep: `/whep/${encodeURIComponent(name)}`,
      watch: `/watch/${encodeURIComponent(name)}`,
    },
    tracks: {
      video: stream?.tracks.find((t) => t.kind === 'video')?.info.codecString ?? null,
      audio: stream?.tracks.find((t) => t.kind === 'audio')?.info.codecString ?? null,
    },
    viewers: state === 'offline' ? 0 : deps.viewerCount(name),
    webrtcStats: deps.whep.streamStats(name),
    renditions: deps.llhls.renditions(name).map(({ info }) => ({
      name: info.name,
      width: info.width,
      height: info.height,
      bitrate: info.bitrate,
      hls: `/hls/${encodeURIComponent(name)}/${info.name}/media.m3u8`,
    })),
    transcode: transcodeStatus(jobs),
    recording: recordingStatus(deps.recorder?.current(name)),
    p2p: state === 'offline' ? null : (deps.p2p?.(name) ?? null),
    stats: { stream: stream?.getStats(), jobs, viewers: deps.whep.viewerStats(name) },
  };
}

