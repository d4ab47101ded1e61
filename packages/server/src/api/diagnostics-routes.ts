/**
 * `/api/v1/diagnostics`: what the "why can't I connect" page needs (webrtc/diagnostics.ts). The setup and the
 * probes are open to anyone (a viewer on a hotel network runs them; a probe only ever learns about itself); the
 * list of recent connections names client addresses and needs an API key with `stats:read`.
 */
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest, RawReplyDefaultExpression, RawRequestDefaultExpression, RawServerDefault } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { GlasscastError } from '../core/errors.js';
import type { ApiScope } from '../store/api-key-store.js';
import type { WebRtcDiagnostics } from '../webrtc/diagnostics.js';
import { hasType, SDP } from '../webrtc/signaling.js';
import * as S from './api-schemas.js';

type Api = FastifyInstance<RawServerDefault, RawRequestDefaultExpression, RawReplyDefaultExpression, FastifyBaseLogger, ZodTypeProvider>;

const path = z.object({ transport: z.enum(['udp', 'tcp']), local: z.string(), remote: z.string(), remoteType: z.string() });
const connection = z.object({
  id: z.string(),
  kind: z.string().describe('`whep` (viewer), `whip` (publisher) or `diagnostics` (a connection test)'),
  stream: z.string(),
  clientAddress: z.string().nullable(),
  startedAt: z.number().describe('Unix time of the answer, ms'),
  state: z.string(),
  connectMs: z.number().nullable().describe('From the answer to DTLS-SRTP up, ms'),
  path: path.nullable().describe('The candidate pair ICE selected'),
  offered: z.object({ udp: z.number(), tcp: z.number(), mdns: z.number() }).describe("The offer's candidates by transport"),
  tcpConnections: z.number().describe('TCP connections that reached the ICE-TCP port for it'),
  failure: z.string().nullable().describe('Why it never connected or dropped, in a sentence'),
});
type Connection = z.infer<typeof connection>;

function view(r: NonNullable<ReturnType<WebRtcDiagnostics['record']>>): Connection {
  return { ...r, clientAddress: r.clientAddress ?? null, connectMs: r.connectMs ?? null, path: r.path ?? null, failure: r.failure ?? null };
}

/** Registers the diagnostics routes on `api` (zod-typed); `need` checks an API key's scope. */
export function registerDiagnosticsRoutes(api: Api, diagnostics: WebRtcDiagnostics, need: (request: FastifyRequest, scope: ApiScope) => Promise<unknown>): void {
  api.get('/api/v1/diagnostics', {
    schema: {
      summary: 'The network setup WebRTC needs (ports to open or forward)',
      description: 'Open to anyone: the UDP port range and TCP port of WebRTC, announced public addresses, STUN/TURN servers (without credentials), HTTPS or not.',
      tags: ['diagnostics'],
      response: {
        200: z.object({
          udpPorts: z.object({ min: z.number(), max: z.number() }),
          tcpPort: z.number().nullable(),
          publicAddresses: z.array(z.string()),
          iceServers: z.array(z.string()),
          https: z.boolean(),
        }),
      },
    },
  }, async (_request, reply) => {
    reply.header('cache-control', 'no-store');
    return diagnostics.setup();
  });

  api.post('/api/v1/diagnostics/webrtc', {
    schema: {
      summary: 'Start a WebRTC connection test (SDP offer in, answer out)',
      description: 'Body: an SDP offer (application/sdp) with one receive-only audio section offering Opus. Answers 201 with the SDP answer (every UDP and TCP candidate; the page keeps the ones it tests) and `Location` of the server\'s view of the test. No media is sent; the test peer ends after 15 s.',
      tags: ['diagnostics'],
      body: z.string().max(64 * 1024),
      response: { 400: S.problem, 415: S.problem, 503: S.problem },
    },
  }, async (request, reply) => {
    if (!hasType(request.headers['content-type'], SDP)) throw new GlasscastError('UNSUPPORTED_MEDIA_TYPE', 'the offer must be application/sdp');
    const { id, answer } = await diagnostics.probe(request.body, request.ip);
    // The answer is SDP, not JSON: no response schema for 201 (fastify then sends the string as it is).
    return (reply as FastifyReply).code(201).header('location', `/api/v1/diagnostics/webrtc/${id}`).header('cache-control', 'no-store').type(SDP).send(answer);
  });

  api.get('/api/v1/diagnostics/webrtc/:id', {
    schema: {
      summary: "The server's view of a connection test",
      description: 'Which candidate pair won (UDP or TCP, addresses as the server saw them) and after how long, or why the test did not connect.',
      tags: ['diagnostics'],
      params: z.object({ id: z.string().max(64) }),
      response: { 200: connection, 404: S.problem },
    },
  }, async (request, reply) => {
    const r = diagnostics.record(request.params.id);
    if (!r) throw new GlasscastError('SESSION_NOT_FOUND', 'no such connection test (they are kept for the last 200 connections)');
    reply.header('cache-control', 'no-store');
    return view(r);
  });

  api.delete('/api/v1/diagnostics/webrtc/:id', {
    schema: { summary: 'End a connection test early', tags: ['diagnostics'], params: z.object({ id: z.string().max(64) }), response: { 204: z.null() } },
  }, async (request, reply) => {
    diagnostics.end(request.params.id);
    return reply.code(204).send(null);
  });

  api.get('/api/v1/diagnostics/connections', {
    schema: {
      summary: 'Recent WebRTC connections: which candidate pair won, or why they failed',
      description: 'The last connections of viewers (WHEP), publishers (WHIP) and connection tests, newest first. Needs `stats:read`.',
      tags: ['diagnostics'],
      querystring: z.object({ limit: z.coerce.number().int().min(1).max(200).default(50) }),
      response: { 200: z.object({ connections: z.array(connection) }), 401: S.problem, 403: S.problem },
    },
  }, async (request, reply) => {
    await need(request, 'stats:read');
    reply.header('cache-control', 'no-store');
    return { connections: diagnostics.recent(request.query.limit).map(view) };
  });
}
