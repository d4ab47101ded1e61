/**
 * The public REST API, `/api/v1`. Errors answer with `{ code, message }` from the one error taxonomy.
 * Stream keys are never returned here (admin endpoints with auth come later).
 */
import type { FastifyInstance } from 'fastify';
import type { StreamRegistry } from '../core/stream-registry.js';
import type { LlHlsServer } from '../egress/llhls/llhls-server.js';
import type { WhepServer, WhepStreamStats } from '../egress/whep/whep-server.js';
import type { StreamStore } from '../store/stream-store.js';
import type { LadderStats, LadderTranscoder } from '../transcode/ladder-transcoder.js';

/** What the API reads. */
export interface ApiDeps {
  registry: StreamRegistry;
  store: StreamStore;
  llhls: LlHlsServer;
  whep: WhepServer;
  ladder: LadderTranscoder;
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
  /** WebRTC viewers now and their counters (see `WhepServer.streamStats`). */
  webrtcStats: WhepStreamStats;
  /** Renditions playable now besides the source: name (`720p`), size, target bits/s and LL-HLS media playlist. */
  renditions: { name: string; width: number; height: number; bitrate: number; hls: string }[];
  /** The ABR ladder's transcoder (encoder and why, restarts, lag), or undefined when the stream has none. */
  transcode: LadderStats | undefined;
}

function status(deps: ApiDeps, name: string): StreamStatus {
  const stream = deps.registry.get(name);
  const muxer = deps.llhls.muxer(name);
  const state = stream?.state === 'live' ? 'live' : stream?.state === 'reconnecting' ? 'reconnecting' : 'offline';
  return {
    name,
    state,
    playable: state !== 'offline' && muxer !== undefined && muxer.ready && !muxer.ended,
    webrtc: state === 'live' && deps.whep.source(name)?.info()?.video !== undefined,
    playback: {
      hls: `/hls/${encodeURIComponent(name)}/index.m3u8`,
      whep: `/whep/${encodeURIComponent(name)}`,
      watch: `/watch/${encodeURIComponent(name)}`,
    },
    webrtcStats: deps.whep.streamStats(name),
    renditions: deps.llhls.renditions(name).map(({ info }) => ({
      name: info.name,
      width: info.width,
      height: info.height,
      bitrate: info.bitrate,
      hls: `/hls/${encodeURIComponent(name)}/${info.name}/media.m3u8`,
    })),
    transcode: deps.ladder.stats(name),
  };
}

/** Registers `/api/v1/streams` and `/api/v1/streams/:name`. */
export function registerApiRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.get('/api/v1/streams', async (_request, reply) => {
    const names = new Set([...(await deps.store.list()).map((s) => s.name), ...deps.registry.list().map((s) => s.name)]);
    return reply.header('cache-control', 'no-store').send({ streams: [...names].map((n) => status(deps, n)) });
  });
  app.get<{ Params: { name: string } }>('/api/v1/streams/:name', async (request, reply) => {
    return reply.header('cache-control', 'no-store').send(status(deps, request.params.name));
  });
}
