/**
 * The only file that wires every part (DESIGN.md "Layout"): store, auth, stream registry, ingests (RTMP, WHIP),
 * derived media (transcode/), egresses (LL-HLS, WHEP), the HTTP API and the web app, over one HTTP port.
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
import { registerProblemHandlers, sendProblem } from './http/problem.js';
import { RtmpServer } from './ingest/rtmp/rtmp-server.js';
import { WhipServer } from './ingest/whip/whip-server.js';
import { registerApiRoutes } from './api/api-routes.js';
import { chooseVideoEncoder } from './transcode/encoder-detect.js';
import { parseLadder } from './transcode/ladder.js';
import { TranscodeManager } from './transcode/transcode-manager.js';
import { releaseWebRtc, retainWebRtc, webRtcHealthy } from './webrtc/webrtc-peer.js';
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
  rtmp: RtmpServer;
  transcode: TranscodeManager;
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
      expectedRenditions: (name) => transcode.plannedRenditions(name),
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
    },
    log.child({ egress: 'whep' }),
  );
  const defaultLadder = parseLadder(config.ladder);
  const streamLadders = new Map(Object.entries(config.streamLadders).map(([name, text]) => [name, parseLadder(text)]));
  const ladderUsed = defaultLadder.length > 0 || [...streamLadders.values()].some((l) => l.length > 0);
  const transcodeLog = log.child({ transcode: 'jobs' });
  const transcode = new TranscodeManager(
    {
      ladderFor: (name) => streamLadders.get(name) ?? defaultLadder,
      // Probed once at start, and only when some stream has a ladder (each probe is an ffmpeg run); the
      // B-frame-free copy for WebRTC uses libx264 otherwise.
      encoder: ladderUsed ? await chooseVideoEncoder(config.videoEncoder, transcodeLog) : { kind: 'libx264', reason: 'no ladder configured' },
    },
    transcodeLog,
  );
  // Observers in this order: the jobs put renditions in place before the egresses read the session.
  const registry = new StreamRegistry({ reconnectGraceMs: config.reconnectGraceMs, log, observers: [transcode, llhls, whep] });
  const whip = new WhipServer(
    {
      network,
      publisherIceServers: iceServers,
      authorize: (key) => auth.authorize(key),
      open: config.publishAuth === 'open',
      claimForPublish: (name, info, hooks) => registry.claimForPublish(name, info, hooks),
      maxBitrate: config.whipMaxBitrate,
      mediaTimeoutMs: 5_000,
      keyframeIntervalMs: config.segmentTargetMs,
    },
    log.child({ ingest: 'whip' }),
  );
  const rtmp = new RtmpServer({ host: config.host, port: config.rtmpPort }, {
    authorizePublish: ({ key }) => auth.authorize(key),
    claimForPublish: (name, info, hooks) => registry.claimForPublish(name, info, hooks),
  }, log.child({ ingest: 'rtmp' }));
  retainWebRtc();

  const http = Fastify({ logger: false, bodyLimit: 1024 * 1024 });
  registerProblemHandlers(http, log);
  http.get('/healthz', async (_request, reply) => {
    // Something real: what runs, what struggles, and whether the WebRTC library still answers.
    const troubled = transcode.troubled();
    const webrtc = webRtcHealthy();
    const body = {
      status: webrtc ? (troubled.length > 0 ? 'degraded' : 'ok') : 'failing',
      streams: registry.list().length,
      live: registry.list().filter((s) => s.state === 'live').length,
      webrtc: { library: webrtc ? 'ok' : 'failing', viewers: whep.sessionCount, publishers: whip.sessionCount },
      jobs: { troubled },
      rtmp: { connections: rtmp.connectionCount, internalErrors: rtmp.internalErrors },
    };
    return reply.code(webrtc ? 200 : 503).header('cache-control', 'no-store').send(body);
  });
  llhls.registerRoutes(http);
  whep.registerRoutes(http);
  whip.registerRoutes(http);
  registerApiRoutes(http, { registry, store, llhls, whep, transcode });
  const webDir = webDistDir();
  if (webDir) {
    await http.register(fastifyStatic, { root: webDir, prefix: '/', index: false, wildcard: true });
    http.get('/watch/:name', async (_request, reply) => reply.header('cache-control', 'no-cache').sendFile('watch.html'));
    http.get('/broadcast', async (_request, reply) => reply.header('cache-control', 'no-cache').sendFile('broadcast.html'));
    http.get('/', async (_request, reply) => reply.redirect('/watch/main'));
  } else {
    log.warn({}, 'web app not built (packages/web/dist missing); /watch pages are unavailable — run npm run build');
    http.get('/watch/:name', async (_request, reply) => sendProblem(reply, 'NOT_READY', 'the web app is not built; run npm run build'));
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
    transcode.close();
    releaseWebRtc();
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
    rtmp,
    transcode,
    http,
    createdStream,
    close() {
      closed ??= (async () => {
        await rtmp.close();
        whip.close();
        registry.close();
        transcode.close();
        whep.close();
        llhls.close();
        await http.close();
        await db.destroy();
        // The last user of the WebRTC library releases its threads, so the process can end by itself.
        releaseWebRtc();
        log.info({}, 'Glasscast stopped');
      })();
      return closed;
    },
  };
}
