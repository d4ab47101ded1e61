/**
 * The REST API's shapes, in zod: requests are validated with them and the OpenAPI 3.1 document (`/api/docs`) is
 * generated from them. Times are ISO 8601 strings; sizes in bytes; rates in bits/s; durations in the unit their
 * name says.
 */
import { z } from 'zod';
import { API_SCOPES } from '../store/api-key-store.js';
import { WEBHOOK_EVENTS } from '../store/webhook-store.js';

/** Stream names (core/stream-registry.ts STREAM_NAME_PATTERN). */
export const streamName = z.string().regex(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$/).describe('letters, digits, - _ . (1–64, not starting with a dot)');
export const visibility = z.enum(['public', 'unlisted', 'private']).describe('public: listed; unlisted: plays by link, never listed; private: plays only with a playback token');
const srtPassphrase = z.string().min(10).max(79).describe('SRT passphrase, 10–79 characters: SRT callers must encrypt with it (AES-128/192/256)');
const ladderText = z.string().max(200).describe('ladder override, e.g. "720p=2500k,480p=1200k@30", or "none"');

/** RFC 9457 problem details with Glasscast's code. */
export const problem = z
  .object({ type: z.string(), title: z.string(), status: z.number().int(), detail: z.string(), instance: z.string().optional(), code: z.string() })
  .describe('RFC 9457 problem details; `code` is from GET /api/v1/errors');

export const nameParams = z.object({ name: streamName });

/** Cursor pagination: `limit` (1–100, default 50) and the previous page's `nextCursor`. */
export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(100).default(50),
  cursor: z.string().max(200).optional(),
});

/** A stream as an operator sees it (never its key; see /key). */
export const adminStream = z.object({
  name: z.string(),
  title: z.string(),
  description: z.string(),
  visibility,
  ladder: z.string().nullable(),
  srtEncrypted: z.boolean().describe('SRT callers must encrypt with the stream passphrase (see /key)'),
  record: z.boolean().describe('every broadcast of the stream is recorded'),
  p2p: z.boolean().describe('venue-mode viewers may share segments with each other (false: the kill switch, all fetch over HTTP)'),
  createdAt: z.string(),
  updatedAt: z.string(),
  /** When the previous key stops publishing, if a rotation's grace period runs. */
  previousKeyExpiresAt: z.string().nullable(),
  state: z.enum(['live', 'reconnecting', 'offline']),
  playback: z.object({ watch: z.string(), hls: z.string(), whep: z.string() }),
});

export const createStreamBody = z.object({
  name: streamName,
  title: z.string().max(200).optional(),
  description: z.string().max(5000).optional(),
  visibility: visibility.optional(),
  ladder: ladderText.nullable().optional(),
  srtPassphrase: srtPassphrase.nullable().optional(),
  record: z.boolean().optional().describe('record every broadcast (from the next one; POST /streams/{name}/recording starts now)'),
  p2p: z.boolean().optional().describe('venue-mode viewers may share segments with each other (default true)'),
});

export const updateStreamBody = z.object({
  title: z.string().max(200).optional(),
  description: z.string().max(5000).optional(),
  visibility: visibility.optional(),
  ladder: ladderText.nullable().optional(),
  srtPassphrase: srtPassphrase.nullable().optional(),
  record: z.boolean().optional().describe('record every broadcast (from the next one; POST /streams/{name}/recording starts now)'),
  p2p: z.boolean().optional().describe('venue-mode viewers may share segments with each other; false ends the sharing at once (the kill switch): viewers go on over HTTP'),
});

export const streamKey = z.object({
  key: z.string().describe('RTMP stream key / WHIP Bearer token'),
  previousKeyExpiresAt: z.string().nullable().describe('the old key publishes until then'),
  rtmp: z.object({ server: z.string(), streamKey: z.string() }),
  whip: z.object({ url: z.string(), bearerToken: z.string() }),
  srt: z.object({
    server: z.string().describe('srt://host:port (OBS "Server")'),
    streamId: z.string().describe('OBS "Stream Key", or the streamid of an FFmpeg/vMix URL'),
    url: z.string().describe('a whole FFmpeg URL (latency in µs)'),
    passphrase: z.string().nullable(),
  }),
});

export const rotateKeyBody = z.object({
  graceSeconds: z.number().int().min(0).max(7 * 86400).default(300).describe('how long the old key still publishes (a live publisher on it is never cut)'),
});

export const session = z.object({
  id: z.string(),
  role: z.enum(['publisher', 'viewer']),
  protocol: z.enum(['rtmp', 'whip', 'srt', 'whep', 'llhls', 'transcoder']),
  address: z.string().nullable(),
  startedAt: z.string(),
  bytes: z.number().describe('bytes received (publisher) or sent (viewer)'),
  rendition: z.string().nullable().describe('rendition the viewer gets now (src, 720p, …)'),
  viewerId: z.string().nullable().describe("the playback token's sub"),
});

export const streamStats = z.object({
  name: z.string(),
  state: z.enum(['live', 'reconnecting', 'offline']),
  startedAt: z.string().nullable(),
  bitrateIn: z.number().describe('ingest bits/s over the last second'),
  fps: z.number().describe('video frames/s over the last second'),
  keyframeIntervalMs: z.number().nullable(),
  sinceKeyframeMs: z.number().nullable(),
  viewers: z.record(z.string(), z.number()).describe('per protocol (whep, llhls)'),
  viewersByRendition: z.array(z.object({ protocol: z.string(), rendition: z.string(), viewers: z.number() })),
  peakViewers: z.number(),
  bytesIn: z.number().describe('this broadcast'),
  bytesOut: z.number().describe('this broadcast, all protocols'),
  health: z.array(z.string()).describe('conditions now: no_keyframe, bitrate_drop, transcode_degraded'),
  transcode: z.object({ degraded: z.boolean(), shed: z.string().nullable(), reason: z.string().nullable() }).nullable(),
  qoe: z
    .object({
      viewers: z.number().describe('viewers whose player reported in the last 5 minutes'),
      beacons: z.number(),
      joinMs: z.object({ p50: z.number(), p95: z.number() }).nullable().describe('time to first frame, ms'),
      latencyMs: z.object({ p50: z.number(), p95: z.number() }).nullable().describe('distance from the live edge, ms'),
      rebufferRatio: z.number().describe('time stalled / (time stalled + playing), 0–1'),
      rebuffers: z.number(),
      switches: z.number(),
      protocols: z.record(z.string(), z.number()),
      errors: z.array(z.object({ code: z.string(), count: z.number() })),
      p2p: z
        .object({ viewers: z.number(), peerBytes: z.number(), httpBytes: z.number(), offload: z.number().describe('peer bytes ÷ all segment bytes, 0–1') })
        .nullable()
        .describe('venue mode: segment bytes its viewers got from each other and over HTTP'),
    })
    .nullable()
    .describe("what viewers' players report (POST /streams/{name}/qoe)"),
});

/** A player's QoE beacon (observability/viewer-qoe.ts): cumulative since the page loaded. */
export const qoeBeacon = z.object({
  viewerId: z.string().regex(/^[\w-]{8,64}$/).describe('random per page load'),
  protocol: z.enum(['webrtc', 'll-hls']),
  joinMs: z.number().int().min(0).max(600_000).nullable().describe('to the first frame, ms'),
  playingMs: z.number().int().min(0).max(7 * 86_400_000),
  rebuffers: z.number().int().min(0).max(1_000_000),
  rebufferMs: z.number().int().min(0).max(7 * 86_400_000),
  switches: z.number().int().min(0).max(1_000_000),
  latencyMs: z.number().int().min(0).max(3_600_000).nullable(),
  errors: z.array(z.string().max(80)).max(5),
  p2p: z
    .object({ peerBytes: z.number().int().min(0).max(1e15), httpBytes: z.number().int().min(0).max(1e15), uploadedBytes: z.number().int().min(0).max(1e15) })
    .optional()
    .describe('venue mode: segment bytes from other viewers, over HTTP, and sent to other viewers'),
});

export const broadcast = z.object({
  id: z.string(),
  stream: z.string(),
  protocol: z.string(),
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  peakViewers: z.number(),
  bytesIn: z.number(),
  bytesOut: z.number(),
});

export const mintTokenBody = z.object({
  ttlSeconds: z.number().int().min(1).max(7 * 86400).default(3600).describe('lifetime; LL-HLS playback stops when it ends, WebRTC sessions started before go on'),
  viewerId: z.string().min(1).max(200).optional().describe('carried as sub; shown in sessions and viewer events'),
});

export const playbackToken = z.object({
  token: z.string(),
  tokenId: z.string(),
  expiresAt: z.string(),
  playback: z.object({ watch: z.string(), hls: z.string(), whep: z.string() }).describe('URLs that carry the token (WHEP: send it as Authorization: Bearer)'),
});

export const scope = z.enum(API_SCOPES);
export const apiKey = z.object({ id: z.string(), name: z.string(), scopes: z.array(scope), createdAt: z.string(), lastUsedAt: z.string().nullable(), revokedAt: z.string().nullable() });
export const createApiKeyBody = z.object({ name: z.string().min(1).max(100), scopes: z.array(scope).min(1) });

export const eventType = z.enum([...WEBHOOK_EVENTS, '*']);
export const webhook = z.object({ id: z.string(), url: z.string(), events: z.array(z.string()), createdAt: z.string(), disabled: z.boolean() });
export const createWebhookBody = z.object({
  url: z.url({ protocol: /^https?$/ }).max(2000),
  events: z.array(eventType).min(1),
  secret: z.string().max(200).optional().describe('whsec_<base64>; generated when absent'),
});
export const webhookMessage = z.object({
  id: z.string().describe('webhook-id'),
  webhookId: z.string(),
  type: z.string(),
  stream: z.string(),
  state: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number(),
  createdAt: z.string(),
  nextAttemptAt: z.string().nullable(),
  deliveredAt: z.string().nullable(),
  lastStatus: z.number().nullable(),
  lastError: z.string().nullable(),
});
export const webhookAttempt = z.object({ messageId: z.string(), attempt: z.number(), at: z.string(), status: z.number().nullable(), error: z.string().nullable(), durationMs: z.number() });

/** A page of `item`. */
export const page = <T extends z.ZodType>(item: T) => z.object({ items: z.array(item), nextCursor: z.string().nullable() });

export const recording = z.object({
  id: z.string(),
  stream: z.string(),
  state: z.enum(['recording', 'finalizing', 'ready', 'failed', 'uploading', 'uploaded']),
  startedAt: z.string(),
  endedAt: z.string().nullable(),
  durationMs: z.number().describe('recorded media, ms'),
  sizeBytes: z.number(),
  renditions: z.array(z.string()),
  error: z.string().nullable().describe('why recording stopped early or failed'),
  visibility: z.string().describe("the stream's visibility when recording began: private recordings need a playback token"),
  playback: z.object({ hls: z.string().describe('EVENT playlist while recording, VOD after'), mp4: z.string().describe('one-file download, once ready'), thumbnail: z.string() }),
});

export const recordingQuery = z.object({
  stream: z.string().max(64).optional(),
  from: z.iso.datetime().optional().describe('started at or after'),
  to: z.iso.datetime().optional().describe('started before'),
  limit: z.coerce.number().int().min(1).max(200).default(50),
  cursor: z.string().max(200).optional(),
});

export const recordingParams = z.object({ id: z.string().regex(/^rec_[\w-]{1,40}$/) });
