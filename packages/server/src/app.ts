/**
 * The only file that wires every part (DESIGN.md "Layout"): store, auth, stream registry, ingests (RTMP, WHIP),
 * derived media (transcode/), egresses (LL-HLS, WHEP), the HTTP API and the web app, over one HTTP port.
 */
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer as createHttpServer, type IncomingMessage, type RequestListener, type Server as HttpServer } from 'node:http';
import type { Duplex } from 'node:stream';
import { createServer as createHttpsServer } from 'node:https';
import { hostname, networkInterfaces } from 'node:os';
import { dirname, join } from 'node:path';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import Fastify, { type FastifyInstance, type FastifyReply, type FastifyRequest } from 'fastify';
import type { Kysely } from 'kysely';
import { AdmissionHook } from './auth/admission.js';
import { FailureLimiter } from './auth/failure-limiter.js';
import { PlaybackGate } from './auth/playback-gate.js';
import { PlaybackTokens } from './auth/playback-tokens.js';
import { PublishAuth } from './auth/publish-auth.js';
import { GlasscastError, RateLimitedError } from './core/errors.js';
import type { GlasscastConfig } from './config/config.js';
import { listSetting } from './config/config.js';
import type { Logger } from './core/logger.js';
import { StreamRegistry } from './core/stream-registry.js';
import { LlHlsServer } from './egress/llhls/llhls-server.js';
import { WhepServer } from './egress/whep/whep-server.js';
import { registerProblemHandlers, sendProblem } from './http/problem.js';
import { RtmpServer } from './ingest/rtmp/rtmp-server.js';
import { SrtServer } from './ingest/srt/srt-server.js';
import { WhipServer } from './ingest/whip/whip-server.js';
import { registerApiRoutes } from './api/api-routes.js';
import { transcodeStatus } from './api/stream-status.js';
import { Metrics } from './observability/metrics.js';
import { StreamMonitor } from './observability/stream-monitor.js';
import { ApiKeyStore, hasScope } from './store/api-key-store.js';
import { BroadcastStore } from './store/broadcast-store.js';
import { RecordingStore } from './store/recording-store.js';
import { Recorder } from './record/recorder.js';
import { registerVodRoutes } from './record/vod-routes.js';
import { Uploader } from './record/uploader.js';
import { Thumbnailer } from './record/thumbnailer.js';
import { StreamEvents } from './api/stream-events.js';
import { ViewerQoe } from './observability/viewer-qoe.js';
import { WebhookStore, enqueueEvent } from './store/webhook-store.js';
import { WebhookDispatcher } from './webhooks/webhook-dispatcher.js';
import { chooseVideoEncoder } from './transcode/encoder-detect.js';
import { parseLadder } from './transcode/ladder.js';
import { TranscodeManager } from './transcode/transcode-manager.js';
import { readTls, secureContextOptions, selfSignedTls, watchTls } from './http/tls.js';
import { ConnectionJournal } from './webrtc/connection-journal.js';
import { WebRtcDiagnostics } from './webrtc/diagnostics.js';
import { IceTcpListener } from './webrtc/ice-tcp.js';
import { releaseWebRtc, retainWebRtc, webRtcHealthy } from './webrtc/webrtc-peer.js';
import { PeerHosts } from './webrtc/peer-hosts.js';
import { reserveMuxPort, type MuxPort } from './webrtc/peer-connection.js';
import { StunServer } from './webrtc/stun-server.js';
import { P2pTracker, refuseUpgrade, TRACKER_PATH } from './p2p/tracker.js';
import type { DatabaseSchema } from './store/database.js';
import { openDatabase, settingOnce } from './store/database.js';
import type { StreamRecord, Visibility } from './store/stream-store.js';
import { StreamStore } from './store/stream-store.js';

/** A running Glasscast. `close()` stops everything it started. */
export interface Glasscast {
  config: GlasscastConfig;
  /** Bound ports (useful when configured as 0); `webrtcUdp`: the UDP ports WebRTC media uses (one per process). */
  ports: { http: number; rtmp: number; srt: number; webrtcTcp: number; webrtcUdp: { min: number; max: number } };
  /** The HTTPS certificate in use (undefined: plain HTTP). */
  tls(): { source: 'files' | 'self-signed'; fingerprint256: string; validTo: number } | undefined;
  registry: StreamRegistry;
  store: StreamStore;
  apiKeys: ApiKeyStore;
  webhooks: WebhookStore;
  dispatcher: WebhookDispatcher;
  tokens: PlaybackTokens;
  monitor: StreamMonitor;
  llhls: LlHlsServer;
  recordings: RecordingStore;
  recorder: Recorder;
  uploader: Uploader | undefined;
  thumbnails: Thumbnailer;
  whep: WhepServer;
  /** The processes WHEP viewers' connections run in (undefined: `webrtcProcesses` 0, in this process). */
  peerHosts: PeerHosts | undefined;
  whip: WhipServer;
  rtmp: RtmpServer;
  srt: SrtServer;
  transcode: TranscodeManager;
  http: FastifyInstance;
  /** The stream created on first start, if this start created it. */
  createdStream: StreamRecord | undefined;
  /** The admin API token created on first start (shown once), if this start created it. */
  createdApiToken: string | undefined;
  /** Every HTTP route as `METHOD /path` (the OpenAPI document must list the `/api/v1` ones). */
  routes: string[];
  /** Absolute base URLs for links, from `publicUrl` or the bound ports. */
  base(): { http: string; rtmp: string; srt: string };
  close(): Promise<void>;
}

/** Where the built web app lives (packages/web/dist). */
function webDistDir(): string | undefined {
  try {
    const pkg = createRequire(import.meta.url).resolve('@glasscast/web/package.json');
    const dir = join(dirname(pkg), 'dist');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The machine's LAN addresses (non-internal IPv4 first, then global IPv6; link-local left out): what other
 * machines on the network can reach without a DNS name (the host name often does not resolve there).
 */
export function lanAddresses(interfaces = networkInterfaces()): string[] {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const list of Object.values(interfaces)) {
    for (const a of list ?? []) {
      if (a.internal) continue;
      if (a.family === 'IPv4') v4.push(a.address);
      else if (!a.address.toLowerCase().startsWith('fe80:')) v6.push(a.address);
    }
  }
  return [...v4, ...v6];
}

/** `host` as it goes in a URL (IPv6 in brackets). */
export function urlHost(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** The address links name for a server listening on every interface: its first LAN address, else its host name. */
export function localHostForLinks(): string {
  return lanAddresses()[0] ?? hostname();
}

/** Links as a user types them, for a server on `host` with bound `ports` (publicUrl wins when set). */
export function publicBase(config: GlasscastConfig, ports: { http: number; rtmp: number; srt: number }, localHost: string, secure = false): { http: string; rtmp: string; srt: string } {
  const host = urlHost(config.host === '0.0.0.0' || config.host === '::' ? localHost : config.host);
  const publicHost = config.publicUrl ? new URL(config.publicUrl).hostname : host;
  return {
    http: config.publicUrl?.replace(/\/+$/, '') ?? `${secure ? 'https' : 'http'}://${host}:${ports.http}`,
    rtmp: `rtmp://${publicHost}:${ports.rtmp}/live`,
    srt: `srt://${publicHost}:${ports.srt}`,
  };
}

/** How long a stream's visibility is cached for playback checks, ms (the CLI may change it from another process). */
const VISIBILITY_CACHE_MS = 2000;

/** Starts Glasscast with `config`. Rejects if a port cannot be bound (after closing what was opened). */
export async function startGlasscast(config: GlasscastConfig, log: Logger): Promise<Glasscast> {
  // HTTPS first: a bad certificate is a configuration error, told before anything is opened.
  const tls = config.tlsCert ? readTls(config.tlsCert, config.tlsKey) : config.tlsSelfSigned === 'on' ? await selfSignedTls(config.dataDir, lanAddresses()) : undefined;
  // One UDP port per process that runs peer connections (ICE UDP mux): the first free one of the range for this
  // process, the next ones for the peer hosts (each takes the first free one when it starts).
  const bindAddress = config.webrtcBindAddress || undefined;
  const range = (from: number, to: number): number[] => Array.from({ length: Math.max(0, to - from + 1) }, (_, i) => from + i);
  retainWebRtc();
  let muxPort: MuxPort;
  try {
    muxPort = await reserveMuxPort(bindAddress, range(config.webrtcPortMin, config.webrtcPortMax));
  } catch (err) {
    releaseWebRtc();
    throw new GlasscastError('CONFIG_INVALID', `${(err as Error).message} (webrtcPortMin–webrtcPortMax): free one or choose other ports`);
  }
  const db: Kysely<DatabaseSchema> = await openDatabase(config.dataDir);
  const store = new StreamStore(db);
  const apiKeys = new ApiKeyStore(db);
  const webhooks = new WebhookStore(db);
  const broadcasts = new BroadcastStore(db);
  const recordings = new RecordingStore(db);
  let createdStream: StreamRecord | undefined;
  if (config.publishAuth === 'key' && (await store.count()) === 0) {
    createdStream = await store.create('main');
  }
  let createdApiToken: string | undefined;
  if ((await apiKeys.count()) === 0) createdApiToken = (await apiKeys.create('admin (created on first start)', ['admin'])).token;
  // A server that stopped without ending its broadcasts (crash, SIGKILL) left them open.
  await broadcasts.closeDangling();
  // …and its recordings open: each becomes ready with the segments it had synced to disk.
  const dangling = await recordings.finishDangling();
  for (const r of dangling) log.info({ recording: r.id, stream: r.stream, state: r.state, durationMs: r.durationMs }, 'recording left open by the last run finished');
  const secret = Buffer.from(await settingOnce(db, 'playback_token_secret', () => randomBytes(32).toString('base64url')), 'base64url');
  const tokens = new PlaybackTokens({
    secret,
    jwksUrl: config.playbackJwksUrl || undefined,
    issuer: config.playbackJwtIssuer || undefined,
    audience: config.playbackJwtAudience || undefined,
  });
  const failures = new FailureLimiter(config.rateLimitAuthFailures);
  const admission = new AdmissionHook({ url: config.admissionUrl || undefined, timeoutMs: config.admissionTimeoutMs, failMode: config.admissionFailMode }, log.child({ auth: 'admission' }));
  const dispatcher = new WebhookDispatcher(
    webhooks,
    { retryBaseMs: config.webhookRetryBaseMs, retryMaxMs: config.webhookRetryMaxMs, maxAgeMs: config.webhookMaxAgeMs, timeoutMs: config.webhookTimeoutMs, pollMs: 1000 },
    log.child({ webhooks: 'dispatcher' }),
  );
  /** Writes an event that is no database change of its own (health, viewers) to the outbox. */
  const emit = async (event: Parameters<typeof enqueueEvent>[1]): Promise<void> => {
    if ((await enqueueEvent(db, event)) > 0) dispatcher.nudge();
  };
  // Per-stream settings read when a stream is authorized or changed: visibility (cached briefly) and ladder.
  const visibilities = new Map<string, { value: Visibility | undefined; title: string; at: number }>();
  const ladderOverrides = new Map<string, string>();
  /** Streams whose operator switched venue mode's sharing off (the kill switch), as last read from the store. */
  const p2pOff = new Set<string>();
  let tracker: P2pTracker | undefined;
  /** Venue mode's sharing is open for `name` (its live state aside), given its visibility. */
  const p2pOpen = (name: string, visibility: Visibility | undefined): boolean => tracker !== undefined && !p2pOff.has(name) && visibility !== 'private';
  const remember = (name: string, record: StreamRecord | undefined): void => {
    visibilities.set(name, { value: record?.visibility, title: record?.title ?? '', at: Date.now() });
    if (record?.p2p === false) {
      if (!p2pOff.has(name)) tracker?.endStream(name);
      p2pOff.add(name);
    } else p2pOff.delete(name);
    if (record?.ladder) ladderOverrides.set(name, record.ladder);
    else ladderOverrides.delete(name);
  };
  const visibility = async (name: string): Promise<Visibility | undefined> => {
    const cached = visibilities.get(name);
    if (cached && Date.now() - cached.at < VISIBILITY_CACHE_MS) return cached.value;
    const record = await store.findByName(name);
    if (visibilities.size > 10_000) visibilities.clear();
    remember(name, record);
    return record?.visibility;
  };
  const gate = new PlaybackGate({ visibility }, tokens, admission, failures);
  const keyAuth = new PublishAuth(config.publishAuth, store);
  /** Stream key → stream (counting failures per address), then the admission hook. */
  const authorizePublish = async (key: string, protocol: 'rtmp' | 'whip' | 'srt', remoteAddress: string): Promise<{ streamName: string; srtPassphrase: string | undefined }> => {
    failures.check(remoteAddress);
    let result: { streamName: string; record: StreamRecord | undefined };
    try {
      result = await keyAuth.authorize(key);
    } catch (err) {
      if (err instanceof GlasscastError && err.code === 'PUBLISH_KEY_INVALID') failures.failed(remoteAddress);
      throw err;
    }
    if (result.record) remember(result.streamName, result.record);
    if (protocol !== 'whip') await admission.check({ action: 'publish', protocol, stream: result.streamName, clientAddress: remoteAddress, claims: null });
    // A stream's own SRT passphrase, else the server's (both empty: SRT callers do not encrypt).
    return { streamName: result.streamName, srtPassphrase: result.record?.srtPassphrase ?? (config.srtPassphrase || undefined) };
  };
  const auth = { authorize: authorizePublish };
  if (config.s3Endpoint && !config.s3Bucket) throw new GlasscastError('CONFIG_INVALID', '--s3-endpoint needs --s3-bucket');
  const uploader = config.s3Endpoint
    ? new Uploader(
        { endpoint: config.s3Endpoint, region: config.s3Region, bucket: config.s3Bucket, prefix: config.s3Prefix, accessKeyId: config.s3AccessKeyId, secretAccessKey: config.s3SecretAccessKey, pathStyle: config.s3UrlStyle === 'path', keepLocal: config.s3KeepLocal === 'keep' },
        recordings,
        (id) => join(config.dataDir, 'recordings', id),
        log.child({ record: 'uploader' }),
        () => dispatcher.nudge(),
      )
    : undefined;
  const thumbnails = new Thumbnailer({ intervalMs: 5000, maxHeight: 360 }, log.child({ record: 'thumbnails' }));
  const recorder = new Recorder(
    recordings,
    {
      dataDir: config.dataDir,
      mode: config.record,
      renditions: ['src'],
      streamConfig: async (name) => {
        const r = await store.findByName(name);
        return r && { record: r.record, visibility: r.visibility };
      },
      outboxWritten: () => dispatcher.nudge(),
      retentionMs: config.recordingRetentionDays * 86_400_000,
      quotaBytes: config.recordingQuotaMb * 1_000_000,
      minFreeBytes: config.recordingMinFreeMb * 1_000_000,
      uploader,
      thumbnail: (name) => thumbnails.latest(name)?.jpeg,
      stopped: (name, reason) => void emit({ type: 'stream.health', stream: name, data: { name, condition: 'recording_stopped', status: 'warning', reason } }).catch(() => undefined),
    },
    log.child({ record: 'recorder' }),
  );
  void recorder.sweep();
  if (uploader) {
    // Uploads the last run left: recordings it finished at this start, and those whose queue it had not emptied.
    for (const r of dangling) void recorder.finalizeUpload(r).catch((err: unknown) => log.error({ err, recording: r.id }, 'upload could not be finished'));
    for (const r of await recordings.inState('uploading')) void uploader.maybeComplete(r.id).catch(() => undefined);
    uploader.nudge();
  }
  const llhls = new LlHlsServer(
    {
      segments: recorder,
      partTargetMs: config.partTargetMs,
      segmentTargetMs: config.segmentTargetMs,
      windowSegments: config.playlistSegments,
      retainEndedMs: 60_000,
      expectedRenditions: (name) => transcode.plannedRenditions(name),
      authorizePlay: (request) => gate.authorize({ ...request, protocol: 'llhls' }),
      headers: tls && config.hsts === 'on' ? { 'strict-transport-security': 'max-age=31536000' } : undefined,
      onViewer: (event, v) => void emit({ type: event === 'joined' ? 'viewer.joined' : 'viewer.left', stream: v.stream, data: { name: v.stream, sessionId: v.id, protocol: 'llhls', viewerId: v.viewerId ?? null, address: v.address, bytesSent: v.bytesSent } }).catch(() => undefined),
    },
    log,
  );
  const iceServers = listSetting(config.iceServers);
  // WebRTC over TCP listens where the media does: on the bind address, else on the HTTP host.
  const iceTcp = config.webrtcTcp === 'on' ? new IceTcpListener({ host: config.webrtcBindAddress || config.host, port: config.webrtcTcpPort, log: log.child({ webrtc: 'ice-tcp' }) }) : undefined;
  const hostPorts = range(muxPort.port + 1, config.webrtcPortMax);
  const webrtcProcesses = Math.min(config.webrtcProcesses, hostPorts.length);
  const network = {
    bindAddress,
    portRange: { min: muxPort.port, max: muxPort.port + webrtcProcesses },
    publicAddresses: listSetting(config.webrtcPublicAddresses),
    iceServers,
    iceTcp,
    journal: new ConnectionJournal(),
  };
  // WHEP viewers' connections run in peer host processes, one per core: sending to viewers uses every core.
  const peerHosts = webrtcProcesses > 0 ? new PeerHosts({ count: webrtcProcesses, bindAddress, ports: hostPorts }, log.child({ webrtc: 'peer-hosts' })) : undefined;
  const diagnostics = new WebRtcDiagnostics(network, network.journal, () => tls !== undefined);
  const whep = new WhepServer(
    {
      network,
      connections: peerHosts?.factory,
      playerIceServers: iceServers,
      connectTimeoutMs: 15_000,
      maxSessions: 1000,
      authorizePlay: (request) => gate.authorize({ ...request, protocol: 'whep', entry: true }),
      onViewer: (event, v) =>
        void emit({ type: event === 'joined' ? 'viewer.joined' : 'viewer.left', stream: v.stream, data: { name: v.stream, sessionId: v.id, protocol: 'whep', viewerId: v.identity?.viewerId ?? null, address: v.address ?? null, bytesSent: v.bytesSent, ...(v.reason ? { reason: v.reason } : {}) } }).catch(() => undefined),
    },
    log.child({ egress: 'whep' }),
  );
  const defaultLadder = parseLadder(config.ladder);
  const streamLadders = new Map(Object.entries(config.streamLadders).map(([name, text]) => [name, parseLadder(text)]));
  const ladderUsed = defaultLadder.length > 0 || [...streamLadders.values()].some((l) => l.length > 0) || (await store.list()).some((r) => r.ladder && r.ladder !== 'none');
  const transcodeLog = log.child({ transcode: 'jobs' });
  const transcode = new TranscodeManager(
    {
      ladderFor: (name) => {
        const override = ladderOverrides.get(name);
        if (override) {
          try {
            return parseLadder(override);
          } catch (err) {
            transcodeLog.warn({ stream: name, err: (err as Error).message }, 'stream ladder override is invalid; using the server ladder');
          }
        }
        return streamLadders.get(name) ?? defaultLadder;
      },
      // Probed once at start, and only when some stream has a ladder (each probe is an ffmpeg run); the
      // B-frame-free copy for WebRTC uses libx264 otherwise.
      encoder: ladderUsed ? await chooseVideoEncoder(config.videoEncoder, transcodeLog) : { kind: 'libx264', reason: 'no ladder configured' },
    },
    transcodeLog,
  );
  // Observers in this order: the jobs put renditions in place before the egresses read the session.
  // Venue mode: viewers of a live, not private stream (whose operator did not switch it off) find each other here.
  const stun = config.p2p === 'on' ? new StunServer({ host: config.host, port: config.stunPort, log: log.child({ p2p: 'stun' }) }) : undefined;
  if (config.p2p === 'on') {
    tracker = new P2pTracker({
      allows: async (name) => {
        const state = registry.get(name)?.state;
        return (state === 'live' || state === 'reconnecting') && p2pOpen(name, await visibility(name));
      },
      maxPeersPerAddress: config.p2pMaxPeersPerAddress,
      log: log.child({ p2p: 'tracker' }),
    });
  }
  const registry = new StreamRegistry({ reconnectGraceMs: config.reconnectGraceMs, log, observers: [transcode, llhls, whep, thumbnails, { streamCreated: () => peerHosts?.prewarm() }] });
  const whip = new WhipServer(
    {
      network,
      publisherIceServers: iceServers,
      authorize: (key, remoteAddress) => auth.authorize(key, 'whip', remoteAddress),
      admitPublish: (name, remoteAddress) => admission.check({ action: 'publish', protocol: 'whip', stream: name, clientAddress: remoteAddress, claims: null }),
      open: config.publishAuth === 'open',
      claimForPublish: (name, info, hooks) => registry.claimForPublish(name, info, hooks),
      maxBitrate: config.whipMaxBitrate,
      mediaTimeoutMs: 5_000,
      keyframeIntervalMs: config.segmentTargetMs,
    },
    log.child({ ingest: 'whip' }),
  );
  const rtmp = new RtmpServer({ host: config.host, port: config.rtmpPort }, {
    authorizePublish: ({ key, remoteAddress }) => auth.authorize(key, 'rtmp', remoteAddress),
    claimForPublish: (name, info, hooks) => registry.claimForPublish(name, info, hooks),
  }, log.child({ ingest: 'rtmp' }));
  const srt = new SrtServer(
    { host: config.host, port: config.srtPort, latencyMs: config.srtLatencyMs, peerIdleTimeoutMs: 5000, maxSessions: 200, defaultStreamId: config.srtDefaultStreamId },
    {
      authorizePublish: ({ key, remoteAddress }) => auth.authorize(key, 'srt', remoteAddress),
      claimForPublish: (name, info, hooks) => registry.claimForPublish(name, info, hooks),
      authorizePlay: async ({ stream, token, remoteAddress }) => {
        const grant = await gate.authorize({ stream, protocol: 'srt', token, clientAddress: remoteAddress, entry: true });
        return grant && { viewerId: grant.viewerId, tokenId: grant.tokenId, expiresAt: grant.expiresAt };
      },
      onViewer: (event, v) => void emit({ type: event === 'joined' ? 'viewer.joined' : 'viewer.left', stream: v.stream, data: { name: v.stream, sessionId: v.id, protocol: 'srt', viewerId: v.identity?.viewerId ?? null, address: v.address, bytesSent: v.bytesSent } }).catch(() => undefined),
      liveStream: (name) => {
        const stream = registry.get(name);
        return stream && (stream.state === 'live' || stream.state === 'reconnecting') ? stream : undefined;
      },
      playPassphrase: async (name) => (await store.findByName(name))?.srtPassphrase ?? (config.srtPassphrase || undefined),
    },
    log.child({ ingest: 'srt' }),
  );

  // With a certificate, the same routes on an HTTPS server (its context is replaced when the files change).
  const https = tls ? createHttpsServer(secureContextOptions(tls)) : undefined;
  // LL-HLS is answered ahead of the framework (its request rate is a venue's viewers × 10 a second); the rest goes
  // to fastify.
  const http = Fastify({
    logger: false,
    bodyLimit: 1024 * 1024,
    serverFactory: (handler: RequestListener) => {
      const server = (https ?? createHttpServer()).on('request', (request, response) => {
        if (!llhls.handle(request, response)) handler(request, response);
      });
      // Fastify's own idle keep-alive (it sets it only on servers it makes): Node's 5 s default closed connections
      // that clients were about to reuse ("other side closed" in a client that paused 4–5 s between requests).
      server.keepAliveTimeout = 72_000;
      // WebSocket upgrades: venue mode's tracker; any other is refused.
      server.on('upgrade', (request: IncomingMessage, socket: Duplex, head: Buffer) => {
        if (!tracker?.handleUpgrade(request, socket, head)) refuseUpgrade(socket, 'NOT_FOUND', 'no WebSocket here', (request.url ?? '').split('?')[0]!.slice(0, 200));
      });
      return server as unknown as HttpServer;
    },
  });
  if (tls && config.hsts === 'on') {
    http.addHook('onSend', async (_request, reply) => {
      reply.header('strict-transport-security', 'max-age=31536000');
    });
  }
  const routes: string[] = [];
  http.addHook('onRoute', (route) => {
    for (const method of [route.method].flat()) if (method !== 'HEAD') routes.push(`${method} ${route.url}`);
  });
  registerProblemHandlers(http, log);
  // The OpenAPI document is generated from the zod schemas of the /api/v1 routes; other routes are left out.
  await http.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Glasscast API', version: '1', description: 'Stream management, playback tokens, sessions, stats, webhooks. Errors are RFC 9457 problem details (GET /api/v1/errors).' },
      components: { securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key (gcs_…) with the route\'s scope' } } },
    },
    transform: (input) => (input.url.startsWith('/api/v1') ? jsonSchemaTransform(input) : { schema: { ...input.schema, hide: true }, url: input.url }),
  });
  await http.register(fastifySwaggerUi, { routePrefix: '/api/docs' });
  await http.register(fastifyRateLimit, { global: false });
  const keyOf = (request: FastifyRequest): string => {
    const auth = request.headers.authorization;
    return auth ? `k:${createHash('sha256').update(auth).digest('hex').slice(0, 24)}` : `a:${request.ip}`;
  };
  const limiters = {
    api: config.rateLimitApi > 0 ? http.createRateLimit({ max: config.rateLimitApi, timeWindow: 60_000, keyGenerator: (r) => `api:${keyOf(r)}` }) : undefined,
    tokens: config.rateLimitTokens > 0 ? http.createRateLimit({ max: config.rateLimitTokens, timeWindow: 60_000, keyGenerator: (r) => `tokens:${keyOf(r)}` }) : undefined,
    offers: config.rateLimitOffers > 0 ? http.createRateLimit({ max: config.rateLimitOffers, timeWindow: 60_000, keyGenerator: (r) => `offers:${r.ip}` }) : undefined,
  };
  http.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0]!;
    let limiter: typeof limiters.api;
    if (request.method === 'POST' && path.endsWith('/playback-tokens')) limiter = limiters.tokens;
    // QoE beacons and event streams are exempt: a venue's viewers behind one NAT address send more than a person
    // would, and both are bounded on their own (ignored when too frequent per viewer; listeners capped).
    // A connection test is an offer like WHIP's and WHEP's (each holds a peer and a UDP port): counted with them.
    else if (request.method === 'POST' && path === '/api/v1/diagnostics/webrtc') limiter = limiters.offers;
    else if ((path.startsWith('/api/') && !path.endsWith('/qoe') && !path.endsWith('/events')) || path === '/metrics') limiter = limiters.api;
    else if (request.method === 'POST' && (path.startsWith('/whip/') || path.startsWith('/whep/'))) limiter = limiters.offers;
    if (!limiter) return;
    const verdict = await limiter(request);
    if (!verdict.isAllowed && verdict.isExceeded) throw new RateLimitedError('rate limit exceeded; slow down', Math.max(1, verdict.ttlInSeconds));
  });
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
  registerVodRoutes(http, { recordings, recorder, uploader, thumbnails, gate, log: log.child({ record: 'vod' }) });
  whep.registerRoutes(http);
  whip.registerRoutes(http);
  const knownStreams = new Set<string>();
  const viewersOf = (name: string): { byProtocol: Record<string, number>; byRendition: { protocol: string; rendition: string; viewers: number }[] } => {
    const w = whep.streamStats(name);
    const hls = llhls.viewers.of(name);
    const byRendition = Object.entries(w.viewersByRendition).map(([rendition, viewers]) => ({ protocol: 'whep', rendition, viewers }));
    const hlsByRendition = new Map<string, number>();
    for (const v of hls) hlsByRendition.set(v.rendition || 'src', (hlsByRendition.get(v.rendition || 'src') ?? 0) + 1);
    for (const [rendition, viewers] of hlsByRendition) byRendition.push({ protocol: 'llhls', rendition, viewers });
    const srtViewers = srt.viewers(name).length;
    if (srtViewers > 0) byRendition.push({ protocol: 'srt', rendition: 'src', viewers: srtViewers });
    return { byProtocol: { whep: w.viewers, llhls: hls.length, srt: srtViewers }, byRendition };
  };
  const egressBytes = (name: string): Record<string, number> => ({ whep: whep.bytesSent(name), llhls: llhls.bytesSent(name), srt: srt.bytesSent(name) });
  const monitor = new StreamMonitor(
    {
      streams: () => {
        const list = registry.list();
        for (const s of list) if (knownStreams.size < 10_000) knownStreams.add(s.name);
        return list;
      },
      viewers: viewersOf,
      bytesOut: egressBytes,
      degraded: (name) => {
        const t = transcodeStatus(transcode.stats(name));
        return { degraded: t?.degraded ?? false, reason: t?.degradeReason };
      },
      health: (name, data) => emit({ type: 'stream.health', stream: name, data }),
    },
    broadcasts,
    { noKeyframeMs: config.healthNoKeyframeMs, intervalMs: 1000 },
    log.child({ observability: 'monitor' }),
  );
  const qoe = new ViewerQoe({ windowMs: 300_000, maxViewersPerStream: 5000, maxStreams: 1000 });
  const viewerCount = (name: string): number => Object.values(viewersOf(name).byProtocol).reduce((a, b) => a + b, 0);
  const events = new StreamEvents(
    {
      live: () => registry.list().map((s) => s.name),
      summary: (name) => {
        // Visibility and title from the short-lived cache, refreshed in the background; a stream not looked up
        // yet counts as private (its page hears of it a tick later, never a private one too early).
        const cached = visibilities.get(name);
        if (!cached || Date.now() - cached.at >= VISIBILITY_CACHE_MS) void visibility(name).catch(() => undefined);
        const stream = registry.get(name);
        const state = stream?.state === 'live' ? 'live' : stream?.state === 'reconnecting' ? 'reconnecting' : 'offline';
        const muxer = llhls.muxer(name);
        const madeAt = thumbnails.madeAt(name);
        return {
          visibility: cached ? (cached.value ?? 'public') : 'private',
          summary: {
            name,
            state,
            playable: state !== 'offline' && muxer !== undefined && muxer.ready && !muxer.ended,
            webrtc: state === 'live' && whep.playable(name),
            viewers: state === 'offline' ? 0 : viewerCount(name),
            title: cached?.title ?? '',
            startedAt: state === 'offline' || !stream ? null : new Date(stream.createdAt).toISOString(),
            thumbnail: madeAt === undefined ? null : `/thumbnails/${encodeURIComponent(name)}.jpg?v=${madeAt}`,
            p2p: p2pOpen(name, cached?.value),
          },
        };
      },
    },
    { tickMs: 100, viewerIntervalMs: 2000, maxListeners: 10_000 },
  );
  const metrics = new Metrics({
    liveStreams: () => registry.list().map((s) => s.name),
    knownStreams: () => [...knownStreams],
    viewers: viewersOf,
    ingest: (name) => {
      const f = monitor.figures(name);
      return f && { bitsPerSecond: f.bitrateIn, framesPerSecond: f.fps, keyframeIntervalMs: f.keyframeIntervalMs, bytesTotal: f.bytesIn };
    },
    egressBytes,
    transcode: (name) => {
      const t = transcodeStatus(transcode.stats(name));
      return t && { degraded: t.degraded, restarts: t.restarts };
    },
    webhookDeliveries: () => ({ ...dispatcher.counts }),
    webhookPending: () => webhooks.pendingCount(),
    admissions: () => ({ ...admission.counts }),
    srtSessions: () => srt.publisherStats(),
    recording: () => ({ counters: { ...recorder.counters }, active: recorder.activeCount }),
    qoe: () => ({ streams: qoe.reporting().map((stream) => ({ stream, figures: qoe.figures(stream)! })), beacons: qoe.counters.beacons }),
    uploads: async () => (uploader ? { counters: { ...uploader.counters }, pending: (await recordings.uploadBacklog()).pending } : undefined),
  });
  let lastMetrics: { at: number; text: string; contentType: string } | undefined;
  http.get('/metrics', async (request, reply) => {
    // Prometheus scrapes with a bearer token: the metrics token, or an API key with stats:read.
    const token = /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];
    failures.check(request.ip);
    const metricsTokenOk = config.metricsToken !== '' && token !== undefined && token.length === config.metricsToken.length && createHash('sha256').update(token).digest().equals(createHash('sha256').update(config.metricsToken).digest());
    if (!metricsTokenOk) {
      if (!token) throw new GlasscastError('API_KEY_REQUIRED', '/metrics needs Authorization: Bearer <metrics token or API key with stats:read>');
      const key = await apiKeys.verify(token);
      if (!key) {
        failures.failed(request.ip);
        throw new GlasscastError('API_KEY_INVALID', 'the token is not the metrics token nor a live API key');
      }
      if (!hasScope(key.scopes, 'stats:read')) throw new GlasscastError('SCOPE_MISSING', 'this API key lacks the stats:read scope');
    }
    // Scrapers (several Prometheus replicas, a dashboard) share one rendering a second.
    const now = Date.now();
    if (!lastMetrics || now - lastMetrics.at >= 1000) lastMetrics = { at: now, ...(await metrics.render()) };
    return reply.type(lastMetrics.contentType).header('cache-control', 'no-store').send(lastMetrics.text);
  });
  let base = { http: '', rtmp: '', srt: '' };
  registerApiRoutes(http, {
    registry,
    store,
    llhls,
    whep,
    srt,
    transcode,
    apiKeys,
    webhooks,
    broadcasts,
    recordings,
    recorder,
    uploader,
    monitor,
    tokens,
    failures,
    base: () => base,
    streamChanged: (name, record) => remember(name, record),
    outboxWritten: () => dispatcher.nudge(),
    events,
    qoe,
    diagnostics,
    viewerCount,
    p2p: (name) => (tracker && p2pOpen(name, visibilities.get(name)?.value) ? { tracker: `${TRACKER_PATH}${encodeURIComponent(name)}`, stunPort: stun?.port || null, peers: tracker.peers(name) } : null),
  });
  const webDir = webDistDir();
  if (webDir) {
    // Vite names every asset by its content hash: cached for good. The page itself is revalidated each time.
    await http.register(fastifyStatic, {
      root: webDir,
      prefix: '/',
      index: false,
      wildcard: true,
      setHeaders: (res, path) => res.setHeader('cache-control', /[\\/]assets[\\/]/.test(path) ? 'public, max-age=31536000, immutable' : 'no-cache'),
    });
    // The web app's routes (client-side): one page, the app picks the view from the URL.
    const page = async (_request: unknown, reply: FastifyReply): Promise<FastifyReply> => reply.header('cache-control', 'no-cache').sendFile('index.html');
    for (const route of ['/', '/watch/:name', '/watch/:name/:recording', '/broadcast', '/diagnostics', '/admin', '/admin/*']) http.get(route, page);
  } else {
    log.warn({}, 'web app not built (packages/web/dist missing); its pages are unavailable — run npm run build');
    for (const route of ['/', '/watch/:name', '/broadcast', '/diagnostics', '/admin']) http.get(route, async (_request, reply) => sendProblem(reply, 'NOT_READY', 'the web app is not built; run npm run build'));
  }

  let rtmpPort: number;
  let srtPort: number;
  let httpPort: number;
  let iceTcpPort: number;
  let redirect: HttpServer | undefined;
  try {
    rtmpPort = await rtmp.listen();
    srtPort = await srt.listen();
    iceTcpPort = iceTcp ? await iceTcp.listen() : 0;
    // A STUN port taken by another program costs venue mode its server-reflexive candidates, not the server.
    await stun?.start().catch((err: unknown) => log.warn({ err, port: config.stunPort }, 'STUN server could not bind its port: venue-mode viewers find each other on the LAN only'));
    await http.listen({ host: config.host, port: config.httpPort });
    const address = http.server.address();
    httpPort = typeof address === 'object' && address ? address.port : config.httpPort;
    log.info({ port: httpPort, tls: tls?.source ?? 'off' }, tls ? 'HTTPS listening' : 'HTTP listening');
    if (tls && config.httpRedirectPort > 0) {
      const httpsPort = httpPort;
      redirect = createHttpServer((request, response) => {
        const host = (request.headers.host ?? '').replace(/:\d+$/, '') || localHostForLinks();
        response.writeHead(308, { location: `https://${host}${httpsPort === 443 ? '' : `:${httpsPort}`}${request.url ?? '/'}`, 'content-length': '0' }).end();
      });
      await new Promise<void>((resolve, reject) => {
        redirect!.once('error', reject);
        redirect!.listen({ host: config.host, port: config.httpRedirectPort }, resolve);
      });
    }
  } catch (err) {
    redirect?.close();
    stun?.close();
    tracker?.close();
    await rtmp.close();
    await srt.close();
    await iceTcp?.close();
    await http.close();
    await monitor.close();
    dispatcher.close();
    await db.destroy();
    transcode.close();
    llhls.close();
    await peerHosts?.close();
    muxPort.release();
    releaseWebRtc();
    throw err;
  }
  base = publicBase(config, { http: httpPort, rtmp: rtmpPort, srt: srtPort }, localHostForLinks(), tls !== undefined);
  let currentTls = tls;
  const stopWatchingTls = tls && https ? watchTls(tls, (next) => {
    https.setSecureContext(secureContextOptions(next));
    currentTls = next;
  }, log) : undefined;
  dispatcher.start();
  // A stream deleted from another process (the CLI) loses its publisher here within a few seconds.
  const deletedCheck = setInterval(() => {
    if (config.publishAuth !== 'key') return;
    for (const stream of registry.list()) {
      void store.findByName(stream.name).then((record) => {
        if (!record && stream.state !== 'ended') stream.close('stream deleted');
      }, () => undefined);
    }
  }, 5000);
  deletedCheck.unref();

  let closed: Promise<void> | undefined;
  return {
    config,
    ports: { http: httpPort, rtmp: rtmpPort, srt: srtPort, webrtcTcp: iceTcpPort, webrtcUdp: network.portRange },
    tls: () => currentTls && { source: currentTls.source, fingerprint256: currentTls.fingerprint256, validTo: currentTls.validTo },
    registry,
    store,
    apiKeys,
    webhooks,
    dispatcher,
    tokens,
    monitor,
    llhls,
    recordings,
    recorder,
    uploader,
    thumbnails,
    whep,
    peerHosts,
    whip,
    rtmp,
    srt,
    transcode,
    http,
    createdStream,
    createdApiToken,
    routes,
    base: () => base,
    close() {
      closed ??= (async () => {
        clearInterval(deletedCheck);
        stopWatchingTls?.();
        redirect?.close();
        redirect?.closeAllConnections();
        stun?.close();
        tracker?.close();
        await rtmp.close();
        await srt.close();
        whip.close();
        registry.close();
        transcode.close();
        whep.close();
        await peerHosts?.close();
        diagnostics.close();
        llhls.close();
        thumbnails.close();
        // Pages listening for events hold their connections open: end them, or the HTTP server never closes.
        events.close();
        // Recordings end with their last segment (the streams' ends flushed it) before the database closes.
        await recorder.close();
        await uploader?.close();
        await http.close();
        // Broadcast ends (and their stream.ended events) are written before the database closes; a webhook
        // not yet delivered stays in the outbox for the next start.
        await monitor.close();
        dispatcher.close();
        await db.destroy();
        await iceTcp?.close();
        muxPort.release();
        // The last user of the WebRTC library releases its threads, so the process can end by itself.
        releaseWebRtc();
        log.info({}, 'Glasscast stopped');
      })();
      return closed;
    },
  };
}
