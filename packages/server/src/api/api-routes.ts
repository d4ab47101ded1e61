/**
 * The REST API, `/api/v1`, with zod schemas (api-schemas.ts) from which the OpenAPI 3.1 document at
 * `/api/docs/json` (UI at `/api/docs`) is generated. Errors are RFC 9457 problem details with catalogue codes.
 *
 * Access: reading the public list and a public or unlisted stream's status is open; everything else needs
 * `Authorization: Bearer <API key>` with the route's scope (store/api-key-store.ts). A private stream's status is
 * shown to an API key with `streams:read` or to a viewer with a playback token for it. Keys are shown only by
 * `GET /streams/{name}/key` and on creation/rotation.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { serializerCompiler, validatorCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { FailureLimiter } from '../auth/failure-limiter.js';
import type { PlaybackTokens } from '../auth/playback-tokens.js';
import { GlasscastError } from '../core/errors.js';
import type { ApiKeyStore, ApiScope } from '../store/api-key-store.js';
import { hasScope } from '../store/api-key-store.js';
import type { BroadcastStore } from '../store/broadcast-store.js';
import { RecordingStore, type RecordingRecord } from '../store/recording-store.js';
import type { Recorder } from '../record/recorder.js';
import type { Uploader } from '../record/uploader.js';
import type { StreamRecord, StreamStore } from '../store/stream-store.js';
import type { WebhookStore } from '../store/webhook-store.js';
import type { StreamMonitor } from '../observability/stream-monitor.js';
import type { SrtServer } from '../ingest/srt/srt-server.js';
import { srtPublishUrl } from '../ingest/srt/srt-stream-id.js';
import * as S from './api-schemas.js';
import type { StatusDeps } from './stream-status.js';
import type { StreamEvents } from './stream-events.js';
import type { ViewerQoe } from '../observability/viewer-qoe.js';
import { streamStatus, transcodeStatus } from './stream-status.js';
import type { WebRtcDiagnostics } from '../webrtc/diagnostics.js';
import { registerDiagnosticsRoutes } from './diagnostics-routes.js';

/** What the API reads and changes. */
export interface ApiDeps extends StatusDeps {
  /** SRT callers playing streams (`m=request`). */
  srt: Pick<SrtServer, 'viewers' | 'kick'>;
  store: StreamStore;
  apiKeys: ApiKeyStore;
  webhooks: WebhookStore;
  broadcasts: BroadcastStore;
  recordings: RecordingStore;
  recorder: Recorder;
  /** S3 uploads, when configured (a deleted recording is deleted from the bucket too). */
  uploader?: Uploader | undefined;
  monitor: StreamMonitor;
  tokens: PlaybackTokens;
  failures: FailureLimiter;
  /** Absolute base URLs for links (`http://host:8080`, `rtmp://host:1935/live`). */
  base(): { http: string; rtmp: string; srt: string };
  /** A stream's configuration changed (visibility, ladder, deletion): drop what was cached of it. */
  streamChanged(name: string, record: StreamRecord | undefined): void;
  /** Something was written to the webhook outbox. */
  outboxWritten(): void;
  /** Live state pushed to pages (Server-Sent Events). */
  events: StreamEvents;
  /** Viewer QoE beacons, aggregated per stream. */
  qoe: ViewerQoe;
  /** The "why can't I connect" probes and the recent WebRTC connections. */
  diagnostics: WebRtcDiagnostics;
}

/** The authenticated caller. */
interface Caller {
  keyId: string;
  scopes: readonly string[];
}

const bearer = (request: FastifyRequest): string | undefined => /^Bearer\s+(\S+)\s*$/i.exec(request.headers.authorization ?? '')?.[1];

/** Opaque cursors: base64url of the last item's sort key. */
const encodeCursor = (value: string): string => Buffer.from(value, 'utf8').toString('base64url');
const decodeCursor = (cursor: string | undefined): string | undefined => (cursor === undefined ? undefined : Buffer.from(cursor, 'base64url').toString('utf8'));

/**
 * Public answers (the list, a public stream's status) are shared by every anonymous caller for this long, ms:
 * a thousand players polling a stream's status cost a handful of computations a second, not a thousand.
 */
const PUBLIC_CACHE_MS = 250;

/** A tiny time-bounded memo for public answers (bounded in entries). */
class MicroCache {
  private readonly entries = new Map<string, { at: number; body: unknown }>();
  get(key: string, now: number): unknown {
    const e = this.entries.get(key);
    return e && now - e.at < PUBLIC_CACHE_MS ? e.body : undefined;
  }
  set(key: string, body: unknown, now: number): void {
    if (this.entries.size >= 1000) this.entries.clear();
    this.entries.set(key, { at: now, body });
  }
  clear(): void {
    this.entries.clear();
  }
}

const PROBLEMS = { 400: S.problem, 401: S.problem, 403: S.problem, 404: S.problem, 409: S.problem, 429: S.problem };

/** Registers every `/api/v1` route (besides `/api/v1/errors`, registered with the problem handlers). */
export function registerApiRoutes(app: FastifyInstance, deps: ApiDeps): void {
  app.register(async (scoped) => {
    scoped.setValidatorCompiler(validatorCompiler);
    scoped.setSerializerCompiler(serializerCompiler);
    const api = scoped.withTypeProvider<ZodTypeProvider>();

    /** The caller of a request with an API key; undefined without one. Throws for a bad key. */
    const caller = async (request: FastifyRequest): Promise<Caller | undefined> => {
      const token = bearer(request);
      if (!token || !token.startsWith('gcs_')) return undefined;
      deps.failures.check(request.ip);
      const key = await deps.apiKeys.verify(token);
      if (!key) {
        deps.failures.failed(request.ip);
        throw new GlasscastError('API_KEY_INVALID', 'the API key is unknown or revoked');
      }
      return { keyId: key.id, scopes: key.scopes };
    };
    /** The caller, who must hold `scope`. */
    const need = async (request: FastifyRequest, scope: ApiScope): Promise<Caller> => {
      const who = await caller(request);
      if (!who) throw new GlasscastError('API_KEY_REQUIRED', `this needs an API key with the ${scope} scope (Authorization: Bearer <key>)`);
      if (!hasScope(who.scopes, scope)) throw new GlasscastError('SCOPE_MISSING', `this API key lacks the ${scope} scope`);
      return who;
    };
    registerDiagnosticsRoutes(api, deps.diagnostics, need);
    const record = async (name: string): Promise<StreamRecord> => {
      const r = await deps.store.findByName(name);
      if (!r) throw new GlasscastError('STREAM_NOT_FOUND', `no stream ${name}`);
      return r;
    };
    const stateOf = (name: string): 'live' | 'reconnecting' | 'offline' => {
      const s = deps.registry.get(name)?.state;
      return s === 'live' ? 'live' : s === 'reconnecting' ? 'reconnecting' : 'offline';
    };
    const playback = (name: string, token?: string): { watch: string; hls: string; whep: string } => {
      const base = deps.base().http;
      const n = encodeURIComponent(name);
      const q = token ? `?token=${encodeURIComponent(token)}` : '';
      return { watch: `${base}/watch/${n}${q}`, hls: `${base}/hls/${n}/index.m3u8${q}`, whep: `${base}/whep/${n}` };
    };
    const adminView = (r: StreamRecord): z.infer<typeof S.adminStream> => ({
      name: r.name,
      title: r.title,
      description: r.description,
      visibility: r.visibility,
      ladder: r.ladder ?? null,
      srtEncrypted: r.srtPassphrase !== undefined,
      record: r.record,
      p2p: r.p2p,
      createdAt: r.createdAt,
      updatedAt: r.updatedAt,
      previousKeyExpiresAt: r.previousKey?.expiresAt ?? null,
      state: stateOf(r.name),
      playback: playback(r.name),
    });
    const keyView = (r: StreamRecord): z.infer<typeof S.streamKey> => ({
      key: r.key,
      previousKeyExpiresAt: r.previousKey?.expiresAt ?? null,
      rtmp: { server: deps.base().rtmp, streamKey: r.key },
      whip: { url: `${deps.base().http}/whip/${encodeURIComponent(r.name)}`, bearerToken: r.key },
      srt: { server: deps.base().srt, streamId: r.key, url: srtPublishUrl(deps.base().srt, r.key), passphrase: r.srtPassphrase ?? null },
    });
    /**
     * Throws unless the caller may see stream `name` (configuration `r`): public and unlisted streams are open; a
     * private one needs a playback token for it (`token`, or Bearer) or an API key with streams:read.
     */
    const mayView = async (request: FastifyRequest, name: string, r: StreamRecord | undefined, queryToken: string | undefined): Promise<void> => {
      if (r?.visibility !== 'private') return;
      const token = queryToken ?? bearer(request);
      const who = token?.startsWith('gcs_') ? await caller(request) : undefined;
      if (who && hasScope(who.scopes, 'streams:read')) return;
      deps.failures.check(request.ip);
      if (!token || token.startsWith('gcs_')) throw new GlasscastError('PLAYBACK_TOKEN_REQUIRED', `stream ${name} is private: a playback token is required`);
      await deps.tokens.verify(token, name);
    };
    const publicAnswers = new MicroCache();
    const changed = (name: string, r: StreamRecord | undefined): void => {
      publicAnswers.clear();
      deps.streamChanged(name, r);
      deps.outboxWritten();
    };

    // ---- streams: list and status (public), CRUD (streams:write) ----
    api.get('/api/v1/streams', {
      schema: {
        summary: 'List streams with their live status',
        description: 'Without an API key: public streams only (unlisted and private never appear). With streams:read: every stream. Never keys.',
        tags: ['streams'],
        querystring: S.pageQuery,
        response: { 200: z.object({ streams: z.array(z.any()), nextCursor: z.string().nullable() }), 401: S.problem },
      },
    }, async (request, reply) => {
      const who = await caller(request);
      const all = who !== undefined && hasScope(who.scopes, 'streams:read');
      const { limit, cursor } = request.query;
      const now = Date.now();
      const cacheKey = `list ${limit} ${cursor ?? ''}`;
      const cached = all ? undefined : (publicAnswers.get(cacheKey, now) as { streams: unknown[]; nextCursor: string | null } | undefined);
      if (cached) return reply.header('cache-control', 'no-store').send(cached);
      const records = await deps.store.list(limit, decodeCursor(cursor));
      const visible = records.filter((r) => all || r.visibility === 'public');
      // Streams published in open mode have no record: public, listed on the first page (looked up one by one:
      // live streams are few, the configured ones may be many).
      const unconfigured: string[] = [];
      if (cursor === undefined) for (const s of deps.registry.list()) if (!(await deps.store.findByName(s.name))) unconfigured.push(s.name);
      const names = [...visible.map((r) => r.name), ...unconfigured];
      const nextCursor = records.length === limit ? encodeCursor(records[records.length - 1]!.name) : null;
      const body = {
        streams: names.map((n) => {
          const r = records.find((x) => x.name === n);
          return { ...streamStatus(deps, n), title: r?.title ?? '', description: r?.description ?? '', visibility: r?.visibility ?? 'public' };
        }),
        nextCursor,
      };
      if (!all) publicAnswers.set(cacheKey, body, now);
      return reply.header('cache-control', 'no-store').send(body);
    });

    api.get('/api/v1/streams/:name', {
      schema: {
        summary: 'Live status of one stream',
        description: 'Open for public and unlisted streams; a private one needs a playback token for it (Bearer or ?token=) or an API key with streams:read.',
        tags: ['streams'],
        params: S.nameParams,
        querystring: z.object({ token: z.string().max(4096).optional() }),
        response: { 200: z.any(), ...PROBLEMS },
      },
    }, async (request, reply) => {
      const { name } = request.params;
      const now = Date.now();
      const cached = publicAnswers.get(`status ${name}`, now);
      if (cached) return reply.header('cache-control', 'no-store').send(cached);
      const r = await deps.store.findByName(name);
      await mayView(request, name, r, request.query.token);
      const body = { ...streamStatus(deps, name), title: r?.title ?? '', description: r?.description ?? '', visibility: r?.visibility ?? 'public' };
      // A private stream's status is computed for each authorized caller, never shared.
      if (r?.visibility !== 'private') publicAnswers.set(`status ${name}`, body, now);
      return reply.header('cache-control', 'no-store').send(body);
    });

    api.get('/api/v1/server', {
      schema: {
        summary: 'Where to publish: the RTMP, SRT and WHIP addresses of this server',
        description: 'Open to anyone (the same addresses the quick start prints); never a key.',
        tags: ['streams'],
        response: { 200: z.object({ rtmp: z.string(), srt: z.string(), whip: z.string(), http: z.string() }) },
      },
    }, async () => {
      const b = deps.base();
      return { rtmp: b.rtmp, srt: b.srt, whip: `${b.http}/whip/<stream>`, http: b.http };
    });

    // ---- live state pushed to pages (Server-Sent Events) and viewer QoE beacons ----
    api.get('/api/v1/events', {
      schema: {
        summary: 'Live changes of public streams (text/event-stream)',
        description: 'Server-Sent Events: `streams` once (every public live stream), then `stream` for each change (state, playability, viewer count at most every 2 s, title, thumbnail). What the directory page listens to.',
        tags: ['streams'],
        response: { 503: S.problem },
      },
    }, async (request, reply) => {
      if (!deps.events.listen(reply.raw)) throw new GlasscastError('LIMIT_EXCEEDED', 'too many pages listening for events; try again later');
      reply.hijack();
    });
    api.get('/api/v1/streams/:name/events', {
      schema: {
        summary: "One stream's live changes (text/event-stream)",
        description: "Server-Sent Events: `stream` at once and on each change. A watch page starts playing when this says the stream is playable, instead of polling. A private stream needs ?token= (EventSource sends no headers).",
        tags: ['streams'],
        params: S.nameParams,
        querystring: z.object({ token: z.string().max(4096).optional() }),
        response: { ...PROBLEMS, 503: S.problem },
      },
    }, async (request, reply) => {
      const { name } = request.params;
      await mayView(request, name, await deps.store.findByName(name), request.query.token);
      if (!deps.events.listen(reply.raw, name)) throw new GlasscastError('LIMIT_EXCEEDED', 'too many pages listening for events; try again later');
      reply.hijack();
    });
    api.post('/api/v1/streams/:name/qoe', {
      schema: {
        summary: "A player's quality-of-experience beacon",
        description: 'Sent by the watch page every 10 s and when it closes: cumulative figures since the page loaded, under a random id per page load. Aggregated per stream in GET /streams/{name}/stats (qoe) and /metrics (glasscast_qoe_*). A private stream needs ?token=.',
        tags: ['stats'],
        params: S.nameParams,
        querystring: z.object({ token: z.string().max(4096).optional() }),
        body: S.qoeBeacon,
        response: { 204: z.null(), ...PROBLEMS },
      },
      bodyLimit: 4096,
    }, async (request, reply) => {
      const { name } = request.params;
      const r = await deps.store.findByName(name);
      if (!r && !deps.registry.get(name)) throw new GlasscastError('STREAM_NOT_FOUND', `no stream ${name}`);
      await mayView(request, name, r, request.query.token);
      deps.qoe.report(name, request.body);
      return reply.code(204).send(null);
    });

    api.post('/api/v1/streams', {
      schema: {
        summary: 'Create a stream',
        description: 'Answers 201 with the stream and its publish key (RTMP stream key and WHIP Bearer token). Emits stream.created.',
        tags: ['streams'],
        security: [{ apiKey: [] }],
        body: S.createStreamBody,
        response: { 201: S.adminStream.extend({ key: S.streamKey }), ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const { name, ...fields } = request.body;
      const r = await deps.store.create(name, fields);
      changed(name, r);
      return reply.code(201).header('location', `/api/v1/streams/${encodeURIComponent(name)}`).send({ ...adminView(r), key: keyView(r) });
    });

    api.patch('/api/v1/streams/:name', {
      schema: {
        summary: 'Change a stream (title, description, visibility, ladder, SRT passphrase, recording, P2P)',
        description: 'A ladder change applies from the next publish. Emits stream.updated with the changed fields.',
        tags: ['streams'],
        security: [{ apiKey: [] }],
        params: S.nameParams,
        body: S.updateStreamBody,
        response: { 200: S.adminStream, ...PROBLEMS },
      },
    }, async (request) => {
      await need(request, 'streams:write');
      const r = await deps.store.update(request.params.name, request.body);
      changed(r.name, r);
      return adminView(r);
    });

    api.delete('/api/v1/streams/:name', {
      schema: {
        summary: 'Delete a stream',
        description: 'Disconnects its publisher and viewers; its broadcast history stays. Emits stream.deleted.',
        tags: ['streams'],
        security: [{ apiKey: [] }],
        params: S.nameParams,
        response: { 204: z.null(), ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const { name } = request.params;
      await deps.store.delete(name);
      changed(name, undefined);
      deps.registry.get(name)?.close('stream deleted by an operator');
      return reply.code(204).send(null);
    });

    api.get('/api/v1/streams/:name/admin', {
      schema: { summary: "A stream's configuration", tags: ['streams'], security: [{ apiKey: [] }], params: S.nameParams, response: { 200: S.adminStream, ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'streams:read');
      return adminView(await record(request.params.name));
    });

    // ---- publish keys ----
    api.get('/api/v1/streams/:name/key', {
      schema: { summary: "Show a stream's publish key", tags: ['keys'], security: [{ apiKey: [] }], params: S.nameParams, response: { 200: S.streamKey, ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'streams:read');
      return reply.header('cache-control', 'no-store').send(keyView(await record(request.params.name)));
    });

    api.post('/api/v1/streams/:name/key/rotate', {
      schema: {
        summary: "Rotate a stream's publish key",
        description: 'The old key still publishes for graceSeconds (default 300; 0 refuses it at once); a publisher already live on it is not cut. Emits stream.key_rotated.',
        tags: ['keys'],
        security: [{ apiKey: [] }],
        params: S.nameParams,
        body: S.rotateKeyBody.nullish(),
        response: { 200: S.streamKey, ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const r = await deps.store.rotateKey(request.params.name, (request.body?.graceSeconds ?? 300) * 1000);
      changed(r.name, r);
      return reply.header('cache-control', 'no-store').send(keyView(r));
    });

    // ---- sessions: publisher and viewers; disconnect and kick ----
    api.get('/api/v1/streams/:name/sessions', {
      schema: { summary: 'Publisher and viewer sessions of a stream', tags: ['sessions'], security: [{ apiKey: [] }], params: S.nameParams, response: { 200: z.object({ items: z.array(S.session) }), ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'streams:read');
      const { name } = request.params;
      const items: z.infer<typeof S.session>[] = [];
      const publisher = deps.registry.get(name)?.getStats().children.find((c) => c.type === 'publisher');
      if (publisher) {
        const protocol = String(publisher.info['protocol']) as z.infer<typeof S.session>['protocol'];
        items.push({ id: `pub-${publisher.id}`, role: 'publisher', protocol, address: (publisher.info['remoteAddress'] as string | undefined) ?? null, startedAt: new Date(publisher.createdAt).toISOString(), bytes: publisher.counters['bytes'] ?? 0, rendition: null, viewerId: null });
      }
      for (const v of deps.whep.viewers(name)) {
        items.push({ id: v.id, role: 'viewer', protocol: 'whep', address: v.address ?? null, startedAt: new Date(v.startedAt).toISOString(), bytes: v.bytesSent, rendition: v.rendition, viewerId: v.identity?.viewerId ?? null });
      }
      for (const v of deps.llhls.viewers.of(name)) {
        items.push({ id: v.id, role: 'viewer', protocol: 'llhls', address: v.address, startedAt: new Date(v.startedAt).toISOString(), bytes: v.bytesSent, rendition: v.rendition || null, viewerId: v.viewerId ?? null });
      }
      for (const v of deps.srt.viewers(name)) {
        items.push({ id: v.id, role: 'viewer', protocol: 'srt', address: v.address, startedAt: new Date(v.startedAt).toISOString(), bytes: v.bytesSent, rendition: null, viewerId: v.identity?.viewerId ?? null });
      }
      return reply.header('cache-control', 'no-store').send({ items });
    });

    api.delete('/api/v1/streams/:name/sessions/:id', {
      schema: {
        summary: 'End one session (kick a viewer, or disconnect the publisher)',
        description: "A kicked viewer's playback token is revoked until it expires, so its player cannot come straight back; other viewers are untouched.",
        tags: ['sessions'],
        security: [{ apiKey: [] }],
        params: S.nameParams.extend({ id: z.string().max(100) }),
        response: { 204: z.null(), ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const { name, id } = request.params;
      if (id.startsWith('pub-')) {
        const stream = deps.registry.get(name);
        const publisher = stream?.getStats().children.find((c) => c.type === 'publisher');
        if (!stream || !publisher || `pub-${publisher.id}` !== id) throw new GlasscastError('SESSION_NOT_FOUND', `no session ${id.slice(0, 40)}`);
        stream.close('publisher disconnected by an operator');
        return reply.code(204).send(null);
      }
      const whepViewer = deps.whep.viewers(name).find((v) => v.id === id);
      if (whepViewer) {
        if (whepViewer.identity?.tokenId) deps.tokens.revoke(whepViewer.identity.tokenId, whepViewer.identity.expiresAt);
        deps.whep.kick(name, id, 'kicked by an operator');
        return reply.code(204).send(null);
      }
      const hlsViewer = deps.llhls.viewers.of(name).find((v) => v.id === id);
      if (hlsViewer) {
        if (hlsViewer.tokenId) deps.tokens.revoke(hlsViewer.tokenId, hlsViewer.expiresAt ?? Date.now());
        deps.llhls.kick(name, id);
        return reply.code(204).send(null);
      }
      const srtViewer = deps.srt.viewers(name).find((v) => v.id === id);
      if (srtViewer) {
        if (srtViewer.identity?.tokenId) deps.tokens.revoke(srtViewer.identity.tokenId, srtViewer.identity.expiresAt);
        deps.srt.kick(name, id, 'kicked by an operator');
        return reply.code(204).send(null);
      }
      throw new GlasscastError('SESSION_NOT_FOUND', `no session ${id.slice(0, 40)} on stream ${name}`);
    });

    api.delete('/api/v1/streams/:name/publisher', {
      schema: {
        summary: 'Disconnect the publisher',
        description: 'Ends the stream now (no reconnect grace). The encoder may reconnect with its key: rotate the key first (graceSeconds 0) to keep it out.',
        tags: ['sessions'],
        security: [{ apiKey: [] }],
        params: S.nameParams,
        response: { 204: z.null(), ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const stream = deps.registry.get(request.params.name);
      if (!stream || stream.state === 'ended') throw new GlasscastError('STREAM_NOT_FOUND', `stream ${request.params.name} has no publisher`);
      stream.close('publisher disconnected by an operator');
      return reply.code(204).send(null);
    });

    // ---- stats and history ----
    api.get('/api/v1/streams/:name/stats', {
      schema: { summary: 'Current figures of a stream', tags: ['stats'], security: [{ apiKey: [] }], params: S.nameParams, response: { 200: S.streamStats, ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'stats:read');
      const { name } = request.params;
      const f = deps.monitor.figures(name);
      const t = transcodeStatus(deps.transcode.stats(name));
      return reply.header('cache-control', 'no-store').send({
        name,
        state: stateOf(name),
        startedAt: f?.startedAt ?? null,
        bitrateIn: Math.round(f?.bitrateIn ?? 0),
        fps: f?.fps ?? 0,
        keyframeIntervalMs: f?.keyframeIntervalMs ?? null,
        sinceKeyframeMs: f?.sinceKeyframeMs ?? null,
        viewers: f?.viewers ?? {},
        viewersByRendition: f?.viewersByRendition ?? [],
        peakViewers: f?.peakViewers ?? 0,
        bytesIn: f?.bytesIn ?? 0,
        bytesOut: f?.bytesOut ?? 0,
        health: f?.health ?? [],
        transcode: t ? { degraded: t.degraded, shed: t.shed ?? null, reason: t.degradeReason ?? null } : null,
        qoe: deps.qoe.figures(name) ?? null,
      });
    });

    const historyRoute = async (stream: string | undefined, query: z.infer<typeof S.pageQuery>): Promise<{ items: z.infer<typeof S.broadcast>[]; nextCursor: string | null }> => {
      const raw = decodeCursor(query.cursor);
      const sep = raw?.indexOf(' ') ?? -1;
      const before = raw && sep > 0 ? { startedAt: Number(raw.slice(0, sep)), id: raw.slice(sep + 1) } : undefined;
      const items = await deps.broadcasts.list(stream, query.limit, before);
      const last = items[items.length - 1];
      return {
        items: items.map((b) => ({ ...b, endedAt: b.endedAt ?? null })),
        nextCursor: items.length === query.limit && last ? encodeCursor(`${Date.parse(last.startedAt)} ${last.id}`) : null,
      };
    };
    api.get('/api/v1/streams/:name/history', {
      schema: { summary: 'Past broadcasts of a stream (newest first)', tags: ['stats'], security: [{ apiKey: [] }], params: S.nameParams, querystring: S.pageQuery, response: { 200: S.page(S.broadcast), ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'stats:read');
      return historyRoute(request.params.name, request.query);
    });
    api.get('/api/v1/history', {
      schema: { summary: 'Past broadcasts of every stream, deleted ones included (newest first)', tags: ['stats'], security: [{ apiKey: [] }], querystring: S.pageQuery, response: { 200: S.page(S.broadcast), ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'stats:read');
      return historyRoute(undefined, request.query);
    });

    // ---- playback tokens ----
    api.post('/api/v1/streams/:name/playback-tokens', {
      schema: {
        summary: 'Mint a playback token for a stream',
        description: 'An HS256 JWT bound to the stream. WHEP: Authorization: Bearer <token>; LL-HLS and the watch page: ?token=<token>.',
        tags: ['playback'],
        security: [{ apiKey: [] }],
        params: S.nameParams,
        body: S.mintTokenBody.nullish(),
        response: { 201: S.playbackToken, ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'playback-tokens');
      const r = await record(request.params.name);
      const minted = await deps.tokens.mint(r.name, request.body?.ttlSeconds ?? 3600, request.body?.viewerId);
      return reply.code(201).header('cache-control', 'no-store').send({ ...minted, playback: playback(r.name, minted.token) });
    });

    // ---- API keys ----
    api.get('/api/v1/api-keys', {
      schema: { summary: 'List API keys (never their tokens)', tags: ['api-keys'], security: [{ apiKey: [] }], querystring: S.pageQuery, response: { 200: S.page(S.apiKey), ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'api-keys');
      const items = await deps.apiKeys.list(request.query.limit, decodeCursor(request.query.cursor));
      return {
        items: items.map((k) => ({ ...k, lastUsedAt: k.lastUsedAt ?? null, revokedAt: k.revokedAt ?? null })),
        nextCursor: items.length === request.query.limit ? encodeCursor(items[items.length - 1]!.id) : null,
      };
    });
    api.post('/api/v1/api-keys', {
      schema: { summary: 'Create an API key', description: 'The token is in this answer only.', tags: ['api-keys'], security: [{ apiKey: [] }], body: S.createApiKeyBody, response: { 201: S.apiKey.extend({ token: z.string() }), ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'api-keys');
      const k = await deps.apiKeys.create(request.body.name, request.body.scopes);
      return reply.code(201).header('cache-control', 'no-store').send({ ...k, lastUsedAt: null, revokedAt: null });
    });
    api.delete('/api/v1/api-keys/:id', {
      schema: { summary: 'Revoke an API key', tags: ['api-keys'], security: [{ apiKey: [] }], params: z.object({ id: z.string().max(40) }), response: { 204: z.null(), ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'api-keys');
      await deps.apiKeys.revoke(request.params.id);
      return reply.code(204).send(null);
    });

    // ---- webhooks ----
    const webhookParams = z.object({ id: z.string().max(40) });
    const hook = async (id: string): Promise<void> => {
      if (!(await deps.webhooks.get(id))) throw new GlasscastError('NOT_FOUND', `no webhook ${id}`);
    };
    api.get('/api/v1/webhooks', {
      schema: { summary: 'List webhook subscriptions', tags: ['webhooks'], security: [{ apiKey: [] }], querystring: S.pageQuery, response: { 200: S.page(S.webhook), ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'webhooks');
      const items = await deps.webhooks.list(request.query.limit, decodeCursor(request.query.cursor));
      return { items, nextCursor: items.length === request.query.limit ? encodeCursor(items[items.length - 1]!.id) : null };
    });
    api.post('/api/v1/webhooks', {
      schema: {
        summary: 'Subscribe to events',
        description: 'Deliveries are signed per Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature) with the secret answered here (generated when none is given), retried with backoff for 24 h, in order per stream.',
        tags: ['webhooks'],
        security: [{ apiKey: [] }],
        body: S.createWebhookBody,
        response: { 201: S.webhook.extend({ secret: z.string() }), ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'webhooks');
      const w = await deps.webhooks.create(request.body);
      return reply.code(201).header('cache-control', 'no-store').send(w);
    });
    api.get('/api/v1/webhooks/:id', {
      schema: { summary: 'One subscription', tags: ['webhooks'], security: [{ apiKey: [] }], params: webhookParams, response: { 200: S.webhook, ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'webhooks');
      const w = await deps.webhooks.get(request.params.id);
      if (!w) throw new GlasscastError('NOT_FOUND', `no webhook ${request.params.id}`);
      return { id: w.id, url: w.url, events: w.events, createdAt: w.createdAt, disabled: w.disabled };
    });
    api.delete('/api/v1/webhooks/:id', {
      schema: { summary: 'Unsubscribe (pending messages are dropped; the log stays)', tags: ['webhooks'], security: [{ apiKey: [] }], params: webhookParams, response: { 204: z.null(), ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'webhooks');
      if (!(await deps.webhooks.delete(request.params.id))) throw new GlasscastError('NOT_FOUND', `no webhook ${request.params.id}`);
      return reply.code(204).send(null);
    });
    api.get('/api/v1/webhooks/:id/messages', {
      schema: { summary: 'Delivery log: messages of a subscription (newest first)', tags: ['webhooks'], security: [{ apiKey: [] }], params: webhookParams, querystring: S.pageQuery, response: { 200: S.page(S.webhookMessage), ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'webhooks');
      await hook(request.params.id);
      const before = decodeCursor(request.query.cursor);
      const { items, last } = await deps.webhooks.messages(request.params.id, request.query.limit, before === undefined ? undefined : Number(before));
      return {
        items: items.map((m) => ({ ...m, nextAttemptAt: m.nextAttemptAt ?? null, deliveredAt: m.deliveredAt ?? null, lastStatus: m.lastStatus ?? null, lastError: m.lastError ?? null })),
        nextCursor: last === undefined ? null : encodeCursor(String(last)),
      };
    });
    api.get('/api/v1/webhooks/:id/messages/:messageId/attempts', {
      schema: { summary: 'Attempts of one message', tags: ['webhooks'], security: [{ apiKey: [] }], params: webhookParams.extend({ messageId: z.string().max(60) }), response: { 200: z.object({ items: z.array(S.webhookAttempt) }), ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'webhooks');
      await hook(request.params.id);
      const items = await deps.webhooks.attempts(request.params.messageId);
      return { items: items.map((a) => ({ ...a, status: a.status ?? null, error: a.error ?? null })) };
    });
    api.post('/api/v1/webhooks/:id/test', {
      schema: { summary: 'Send a test message (webhook.test) to this subscription now', tags: ['webhooks'], security: [{ apiKey: [] }], params: webhookParams, response: { 202: S.webhookMessage, ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'webhooks');
      const m = await deps.webhooks.test(request.params.id);
      deps.outboxWritten();
      return reply.code(202).send({ ...m, nextAttemptAt: m.nextAttemptAt ?? null, deliveredAt: m.deliveredAt ?? null, lastStatus: m.lastStatus ?? null, lastError: m.lastError ?? null });
    });
    api.post('/api/v1/webhooks/:id/messages/:messageId/redeliver', {
      schema: { summary: 'Send a message again now (same webhook-id)', tags: ['webhooks'], security: [{ apiKey: [] }], params: webhookParams.extend({ messageId: z.string().max(60) }), response: { 202: S.webhookMessage, ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'webhooks');
      const m = await deps.webhooks.redeliver(request.params.id, request.params.messageId);
      deps.outboxWritten();
      return reply.code(202).send({ ...m, nextAttemptAt: m.nextAttemptAt ?? null, deliveredAt: m.deliveredAt ?? null, lastStatus: m.lastStatus ?? null, lastError: m.lastError ?? null });
    });

    // ---- recordings (streams:read to read, streams:write to start, stop and delete) ----
    const recordingView = (r: RecordingRecord): z.infer<typeof S.recording> => ({
      ...r,
      endedAt: r.endedAt ?? null,
      error: r.error ?? null,
      playback: { hls: `${deps.base().http}/vod/${r.id}/index.m3u8`, mp4: `${deps.base().http}/vod/${r.id}.mp4`, thumbnail: `${deps.base().http}/vod/${r.id}/thumbnail.jpg` },
    });
    api.get('/api/v1/recordings', {
      schema: { summary: 'List recordings (newest first), by stream and start time', description: 'Without an API key: recordings of public broadcasts only. With streams:read: every one.', tags: ['recordings'], querystring: S.recordingQuery, response: { 200: S.page(S.recording), ...PROBLEMS } },
    }, async (request) => {
      // Without an API key: recordings of public broadcasts only (the directory lists them).
      const who = await caller(request);
      const all = who !== undefined && hasScope(who.scopes, 'streams:read');
      const q = request.query;
      const items = await deps.recordings.list({ stream: q.stream, from: q.from ? Date.parse(q.from) : undefined, to: q.to ? Date.parse(q.to) : undefined, limit: q.limit, after: decodeCursor(q.cursor), ...(all ? {} : { visibility: 'public' }) });
      return { items: items.map(recordingView), nextCursor: items.length === q.limit ? encodeCursor(RecordingStore.cursorOf(items[items.length - 1]!)) : null };
    });
    api.get('/api/v1/recordings/:id', {
      schema: { summary: 'One recording', description: 'Open for a public broadcast; others need streams:read.', tags: ['recordings'], params: S.recordingParams, response: { 200: S.recording, ...PROBLEMS } },
    }, async (request) => {
      const who = await caller(request);
      const r = await deps.recordings.require(request.params.id);
      if (r.visibility !== 'public' && !(who && hasScope(who.scopes, 'streams:read'))) {
        if (!who) throw new GlasscastError('RECORDING_NOT_FOUND', `no public recording ${r.id}`);
        throw new GlasscastError('SCOPE_MISSING', 'this API key lacks the streams:read scope');
      }
      return recordingView(r);
    });
    api.delete('/api/v1/recordings/:id', {
      schema: { summary: 'Delete a recording and its files (local and in the bucket)', description: 'A recording still in progress must be stopped first (DELETE /streams/{name}/recording).', tags: ['recordings'], security: [{ apiKey: [] }], params: S.recordingParams, response: { 204: z.null(), ...PROBLEMS } },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const r = await deps.recordings.require(request.params.id);
      if (r.state === 'recording' || r.state === 'finalizing') throw new GlasscastError('INVALID_STATE', `recording ${r.id} is in progress; stop it first (DELETE /api/v1/streams/${r.stream}/recording)`);
      if (deps.uploader && (await deps.recordings.anyUploaded(r.id))) {
        try {
          await deps.uploader.deleteRemote(r.id);
        } catch (err) {
          throw new GlasscastError('NOT_READY', `the recording's objects could not be deleted from the bucket (${(err as Error).message.slice(0, 200)}); nothing was deleted, try again`);
        }
      }
      await deps.recorder.deleteFiles(r.id);
      await deps.recordings.delete(r.id);
      return reply.code(204).send(null);
    });
    api.post('/api/v1/streams/:name/recording', {
      schema: {
        summary: 'Start recording a live stream now',
        description: 'The recording begins with the next segment (a keyframe) and ends with the broadcast or DELETE. Answers 202; the recording appears in GET /recordings (recording.started). `renditions` adds ladder rungs (e.g. ["480p"]) to the source.',
        tags: ['recordings'],
        security: [{ apiKey: [] }],
        params: S.nameParams,
        body: z.object({ renditions: z.array(z.string().regex(/^(src|\d{3,4}p)$/)).max(8).optional() }).nullish(),
        response: { 202: z.object({ stream: z.string(), recordingId: z.string().nullable() }), ...PROBLEMS },
      },
    }, async (request, reply) => {
      await need(request, 'streams:write');
      const { name } = request.params;
      const stream = deps.registry.get(name);
      if (!stream || stream.state === 'ended') throw new GlasscastError('STREAM_NOT_FOUND', `stream ${name} is not live`);
      deps.recorder.start(stream, request.body?.renditions);
      return reply.code(202).send({ stream: name, recordingId: deps.recorder.current(name)?.id ?? null });
    });
    api.delete('/api/v1/streams/:name/recording', {
      schema: { summary: 'Stop recording a live stream', description: 'The recording keeps what was written and becomes ready (recording.ready).', tags: ['recordings'], security: [{ apiKey: [] }], params: S.nameParams, response: { 200: S.recording, ...PROBLEMS } },
    }, async (request) => {
      await need(request, 'streams:write');
      const r = await deps.recorder.stop(request.params.name);
      if (!r) throw new GlasscastError('RECORDING_NOT_FOUND', `stream ${request.params.name} is not being recorded`);
      return recordingView(r);
    });
  });
}
