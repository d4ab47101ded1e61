/**
 * The only file that wires every part (DESIGN.md "Layout"): store, auth, stream registry, RTMP ingest,
 * LL-HLS egress, the HTTP API and the web app, over one HTTP port.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import fastifyStatic from '@fastify/static';
import Fastify, { type FastifyInstance } from 'fastify';
import type { Kysely } from 'kysely';
import { PublishAuth } from './auth/publish-auth.js';
import type { GlasscastConfig } from './config/config.js';
import { listSetting } from './config/config.js';
import type { Logger } from './core/logger.js';
import { StreamRegistry } from './core/stream-registry.js';
import { LlHlsServer } from './egress/llhls/llhls-server.js';
import { WhepServer } from './egress/whep/whep-server.js';
import { RtmpServer } from './ingest/rtmp/rtmp-server.js';
import { WhipServer } from './ingest/whip/whip-server.js';
import { registerApiRoutes } from './api/api-routes.js';
import { FfmpegOpusTranscoderFactory } from './transcode/aac-to-opus.js';
import { OpusToAacSink } from './transcode/opus-to-aac.js';
import { FfmpegH264Reencoder } from './transcode/h264-reencoder.js';
import { chooseVideoEncoder } from './transcode/encoder-detect.js';
import { parseLadder } from './transcode/ladder.js';
import { LadderTranscoder } from './transcode/ladder-transcoder.js';
import type { DatabaseSchema } from './store/database.js';
import { openDatabase } from './store/database.js';
import type { StreamRecord } from './store/stream-store.js';
import { StreamStore } from './store/stream-store.js';

/** A running Glasscast. `close()` stops everything it started. */
export interface Glasscast {
  config: GlasscastConfig;
  /** Bound ports (useful when configured as 0). */
  ports: { http: number; rtmp: number };
  registry: StreamRegistry;
  store: StreamStore;
  llhls: LlHlsServer;
  whep: WhepServer;
  whip: WhipServer;
  ladder: LadderTranscoder;
  http: FastifyInstance;
  /** The stream created on first start, if this start created it. */
  createdStream: StreamRecord | undefined;
  close(): Promise<void>;
}

/** Where the built web app lives (packages/web/dist). */
function webDistDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('@glasscast/web/package.json');
    const dir = join(dirname(pkg), 'dist');
    return existsSync(join(dir, 'watch.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Starts Glasscast with `config`. Rejects if a port cannot be bound (after closing what was opened). */
export async function startGlasscast(config: GlasscastConfig, log: Logger): Promise<Glasscast> {
  const db: Kysely<DatabaseSchema> = await openDatabase(config.dataDir);
  const store = new StreamStore(db);
  let createdStream: StreamRecord | undefined;
  if (config.publishAuth === 'key' && (await store.list()).length === 0) {
    createdStream = await store.create('main');
  }
  const auth = new PublishAuth(config.publishAuth, store);
  const llhls = new LlHlsServer(
    {
      partTargetMs: config.partTargetMs,
      segmentTargetMs: config.segmentTargetMs,
      windowSegments: config.playlistSegments,
      retainEndedMs: 60_000,
      audioAdapter: (muxer, muxerLog) => new OpusToAacSink(muxer, muxerLog),
      expectedRenditions: (name) => {
        const stats = ladder.stats(name);
        return stats?.running ? stats.renditions.length : 0;
      },
    },
    log,
  );
  const iceServers = listSetting(config.iceServers);
  const network = {
    bindAddress: config.webrtcBindAddress || undefined,
    portRange: { min: config.webrtcPortMin, max: config.webrtcPortMax },
    publicAddresses: listSetting(config.webrtcPublicAddresses),
    iceServers,
  };
  const whep = new WhepServer(
    {
      network,
      playerIceServers: iceServers,
      connectTimeoutMs: 15_000,
      maxSessions: 1000,
      opus: new FfmpegOpusTranscoderFactory(log.child({ transcode: 'aac-opus' })),
      reencoder: new FfmpegH264Reencoder(log.child({ transcode: 'h264-no-bframes' })),
    },
    log.child({ egress: 'whep' }),
  );
  const defaultLadder = parseLadder(config.ladder);
  const streamLadders = new Map(Object.entries(config.streamLadders).map(([name, text]) => [name, parseLadder(text)]));
  const ladderUsed = defaultLadder.length > 0 || [...streamLadders.values()].some((l) => l.length > 0);
  const ladderLog = log.child({ transcode: 'ladder' });
  const ladder = new LadderTranscoder(
    {
      ladderFor: (name) => streamLadders.get(name) ?? defaultLadder,
      // Probed once at start, and only when some stream has a ladder (each probe is an ffmpeg run).
      encoder: ladderUsed ? await chooseVideoEncoder(config.videoEncoder, ladderLog) : { kind: 'libx264', reason: 'no ladder configured' },
    },
    ladderLog,
  );
  const registry = new StreamRegistry({ reconnectGraceMs: config.reconnectGraceMs, log, observers: [llhls, whep, ladder] });
  const whip = new WhipServer(
    {
      network,
      publisherIceServers: iceServers,
      authorize: (key) => auth.authorize(key),
      open: config.publishAuth === 'open',
      claimForPublish: (name) => registry.claimForPublish(name),
      maxBitrate: config.whipMaxBitrate,
      mediaTimeoutMs: 5_000,
      keyframeIntervalMs: config.segmentTargetMs,
    },
    log.child({ ingest: 'whip' }),
  );
  const rtmp = new RtmpServer({ host: config.host, port: config.rtmpPort }, {
    authorizePublish: ({ key }) => auth.authorize(key),
    claimForPublish: (name) => registry.claimForPublish(name),
  }, log.child({ ingest: 'rtmp' }));

  const http = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  http.get('/healthz', async () => ({ status: 'ok', streams: registry.list().length }));
  llhls.registerRoutes(http);
  whep.registerRoutes(http);
  whip.registerRoutes(http);
  registerApiRoutes(http, { registry, store, llhls, whep, ladder });
  const webDir = webDistDir();
  if (webDir) {
    await http.register(fastifyStatic, { root: webDir, prefix: '/', index: false, wildcard: true });
    http.get('/watch/:name', async (_request, reply) => reply.header('cache-control', 'no-cache').sendFile('watch.html'));
    http.get('/broadcast', async (_request, reply) => reply.header('cache-control', 'no-cache').sendFile('broadcast.html'));
    http.get('/', async (_request, reply) => reply.redirect('/watch/main'));
  } else {
    log.warn({}, 'web app not built (packages/web/dist missing); /watch pages are unavailable — run npm run build');
  }

  let rtmpPort: number;
  let httpPort: number;
  try {
    rtmpPort = await rtmp.listen();
    await http.listen({ host: config.host, port: config.httpPort });
    const address = http.server.address();
    httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
    log.info({ port: httpPort }, 'HTTP listening');
  } catch (err) {
    await rtmp.close();
    await http.close();
    await db.destroy();
    throw err;
  }

  let closed: Promise<void> | undefined;
  return {
    config,
    ports: { http: httpPort, rtmp: rtmpPort },
    registry,
    store,
    llhls,
    whep,
    whip,
    ladder,
    http,
    createdStream,
    close() {
      closed ??= (async () => {
        await rtmp.close();
        whip.close();
        registry.close();
        ladder.close();
        whep.close();
        llhls.close();
        await http.close();
        await db.destroy();
        log.info({}, 'Glasscast stopped');
      })();
      return closed;
    },
  };
}
