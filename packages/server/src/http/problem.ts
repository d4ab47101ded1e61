/**
 * HTTP errors as RFC 9457 problem details (`application/problem+json`), for every route of the one HTTP port:
 * the REST API, WHIP, WHEP, LL-HLS, the web app and unknown routes. The body carries the stable `code` from
 * the error catalogue (core/errors.ts), which also gives the status; `type` points at that code's entry in
 * `GET /api/v1/errors`. Errors the framework raises (body too large, malformed JSON, unsupported content type)
 * and unexpected exceptions are answered the same way; an exception's internals are logged, never sent.
 */
import type { ServerResponse } from 'node:http';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { ErrorCode } from '../core/errors.js';
import { ERROR_CATALOGUE, errorSpec, GlasscastError, RateLimitedError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** The problem details media type (RFC 9457 §3). */
export const PROBLEM_TYPE = 'application/problem+json';
/** Where the catalogue is served; problem `type` URIs point into it. */
export const ERRORS_PATH = '/api/v1/errors';

/** An RFC 9457 problem details object with Glasscast's `code`. */
export interface ProblemDetails {
  /** URI reference naming the problem type (the catalogue entry). */
  type: string;
  title: string;
  status: number;
  /** A human sentence about this occurrence. */
  detail: string;
  /** The request path. */
  instance: string | undefined;
  code: ErrorCode;
}

/** The problem details for `code` with `detail` (RFC 9457 §3.1). Pure. */
export function problemDetails(code: ErrorCode, detail: string, instance?: string): ProblemDetails {
  const spec = errorSpec(code);
  return { type: `${ERRORS_PATH}#${code}`, title: spec.title, status: spec.status, detail, instance, code };
}

/**
 * Sends `code` as problem details (status from the catalogue), uncached; the reply's other headers (CORS,
 * `WWW-Authenticate`, `Retry-After`) are kept.
 */
export function sendProblem(reply: FastifyReply, code: ErrorCode, detail: string): FastifyReply {
  const body = problemDetails(code, detail, reply.request.url.split('?')[0]);
  return reply.code(body.status).header('cache-control', 'no-store').type(PROBLEM_TYPE).send(JSON.stringify(body));
}

/**
 * Writes `code` as problem details on a raw Node response (the LL-HLS path, which runs ahead of the framework):
 * status from the catalogue, uncached, with `headers` beside.
 */
export function writeProblem(res: ServerResponse, code: ErrorCode, detail: string, instance: string, headers: Record<string, string> = {}): void {
  const body = Buffer.from(JSON.stringify(problemDetails(code, detail, instance)));
  res.writeHead(errorSpec(code).status, { ...headers, 'content-type': `${PROBLEM_TYPE}; charset=utf-8`, 'cache-control': 'no-store', 'content-length': String(body.length) });
  res.end(body);
}

/** Framework error codes and what the catalogue calls them. */
const FRAMEWORK_CODES: Record<string, ErrorCode> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'BODY_TOO_LARGE',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UNSUPPORTED_MEDIA_TYPE',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BAD_REQUEST',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_CTP_INVALID_JSON_BODY: 'BAD_REQUEST',
  FST_ERR_VALIDATION: 'BAD_REQUEST',
  FST_ERR_BAD_URL: 'BAD_REQUEST',
  FST_ERR_ASYNC_CONSTRAINT: 'BAD_REQUEST',
};

/** The catalogue code for an error thrown inside a route: ours, the framework's by code or status, else INTERNAL. */
export function codeForError(err: unknown): ErrorCode {
  if (err instanceof GlasscastError) return err.code;
  const e = err as Partial<FastifyError> & { status?: number };
  if (typeof e?.code === 'string' && FRAMEWORK_CODES[e.code]) return FRAMEWORK_CODES[e.code]!;
  const status = e?.statusCode ?? e?.status;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (status === 413) return 'BODY_TOO_LARGE';
    if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
    if (status === 404) return 'NOT_FOUND';
    if (status === 405) return 'METHOD_NOT_ALLOWED';
    return 'BAD_REQUEST';
  }
  return 'INTERNAL';
}

/**
 * Makes every error of `app` a problem: thrown errors (ours, the framework's, bugs) and unknown routes. Also
 * serves the catalogue at `GET /api/v1/errors` (code → status, title, RTMP and SRT answers, fatal).
 */
export function registerProblemHandlers(app: FastifyInstance, log: Logger): void {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const code = codeForError(err);
    if (code === 'INTERNAL') log.error({ err, url: request.url, method: request.method }, 'HTTP handler failed');
    if (err instanceof RateLimitedError) reply.header('retry-after', String(err.retryAfterSeconds));
    if (code === 'API_KEY_REQUIRED' || code === 'API_KEY_INVALID' || code.startsWith('PLAYBACK_TOKEN_')) reply.header('www-authenticate', 'Bearer');
    const message = err instanceof GlasscastError ? err.message : code === 'INTERNAL' ? 'internal error' : (err as Error).message;
    return sendProblem(reply, code, message);
  });
  app.setNotFoundHandler((request, reply) => sendProblem(reply, 'NOT_FOUND', `no route for ${request.method} ${request.url.split('?')[0]!.slice(0, 200)}`));
  app.get(ERRORS_PATH, async (_request, reply) => reply.header('cache-control', 'public, max-age=3600').send({ errors: ERROR_CATALOGUE }));
}
