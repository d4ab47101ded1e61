/**
 * The one error catalogue (STYLE rule 7; after hls.js's `errors.ts`). Every error that crosses a module or
 * network boundary has a stable `code` from {@link ERROR_CATALOGUE}; the entry says what each protocol's peer is
 * told (HTTP status, RTMP `onStatus` code, SRT rejection code) and whether the error ends the session or job it
 * happened in (`fatal`). One place maps codes to answers: no call site picks a status by itself.
 *
 * - HTTP answers are RFC 9457 problem details (`application/problem+json`) with the code (api/problem.ts).
 * - RTMP peers get `onStatus` with the `rtmp` code (Adobe RTMP §7.2.2; NetStream.Publish.* as nginx-rtmp and
 *   OBS know them).
 * - SRT peers get the `srt` rejection code (SRT Access Control, "Standard Rejection Codes": 1400 + HTTP-like).
 * - An internal bug is `INTERNAL`: a peer is never told "bad key" for it.
 */

/** One catalogue entry. */
export interface ErrorSpec {
  /** HTTP status answered for it. */
  status: number;
  /** Short, fixed human title (RFC 9457 `title`). */
  title: string;
  /** RTMP `onStatus` code sent to a publisher refused or ended with it. */
  rtmp: string;
  /** SRT rejection code (SRT Access Control: 1400 + HTTP-like status, 1500 for server faults). */
  srt: number;
  /** True when the session, connection or job it happened in cannot go on. */
  fatal: boolean;
}

const e = (status: number, title: string, rtmp: string, srt: number, fatal: boolean): ErrorSpec => ({ status, title, rtmp, srt, fatal });
const BAD_NAME = 'NetStream.Publish.BadName';
const PUBLISH_FAILED = 'NetStream.Publish.Failed';
const CALL_FAILED = 'NetConnection.Call.Failed';

/** Every error code Glasscast reports, with its answer per protocol. */
export const ERROR_CATALOGUE = {
  // Configuration and start-up.
  CONFIG_INVALID: e(500, 'Invalid configuration', CALL_FAILED, 1500, true),
  // Streams and publishing.
  STREAM_NOT_FOUND: e(404, 'Stream not found', 'NetStream.Play.StreamNotFound', 1404, true),
  STREAM_ALREADY_PUBLISHING: e(409, 'Stream already has a publisher', BAD_NAME, 1409, true),
  PUBLISH_KEY_INVALID: e(401, 'Invalid stream key', BAD_NAME, 1403, true),
  STREAM_NAME_INVALID: e(400, 'Stream name not allowed', BAD_NAME, 1400, true),
  STREAM_EXISTS: e(409, 'Stream already exists', BAD_NAME, 1409, false),
  STREAM_ENDED: e(410, 'Stream ended', 'NetStream.Publish.Idle', 1404, true),
  INVALID_STATE: e(409, 'Invalid state', PUBLISH_FAILED, 1500, true),
  // Access: API keys, playback tokens, the admission hook, rate limits.
  API_KEY_REQUIRED: e(401, 'API key required', CALL_FAILED, 1401, false),
  API_KEY_INVALID: e(401, 'Invalid API key', CALL_FAILED, 1401, false),
  SCOPE_MISSING: e(403, 'API key lacks the scope', CALL_FAILED, 1403, false),
  PLAYBACK_TOKEN_REQUIRED: e(401, 'Playback token required', 'NetStream.Play.Failed', 1401, true),
  PLAYBACK_TOKEN_INVALID: e(401, 'Invalid playback token', 'NetStream.Play.Failed', 1401, true),
  PLAYBACK_TOKEN_EXPIRED: e(401, 'Playback token expired', 'NetStream.Play.Failed', 1401, true),
  PLAYBACK_FORBIDDEN: e(403, 'Playback not allowed', 'NetStream.Play.Failed', 1403, true),
  ADMISSION_DENIED: e(403, 'Denied by the admission hook', BAD_NAME, 1403, true),
  ADMISSION_UNAVAILABLE: e(503, 'Admission hook unavailable', PUBLISH_FAILED, 1503, true),
  RATE_LIMITED: e(429, 'Too many requests', PUBLISH_FAILED, 1429, false),
  // Peers breaking their protocol.
  PROTOCOL_VIOLATION: e(400, 'Protocol violation', PUBLISH_FAILED, 1400, true),
  UNSUPPORTED_CODEC: e(415, 'Unsupported codec', PUBLISH_FAILED, 1415, true),
  LIMIT_EXCEEDED: e(503, 'Limit exceeded', PUBLISH_FAILED, 1402, true),
  // HTTP requests.
  BAD_REQUEST: e(400, 'Bad request', CALL_FAILED, 1400, false),
  BODY_TOO_LARGE: e(413, 'Request body too large', CALL_FAILED, 1400, false),
  UNSUPPORTED_MEDIA_TYPE: e(415, 'Unsupported media type', CALL_FAILED, 1415, false),
  NOT_FOUND: e(404, 'Not found', CALL_FAILED, 1404, false),
  METHOD_NOT_ALLOWED: e(405, 'Method not allowed', CALL_FAILED, 1405, false),
  NOT_READY: e(503, 'Not ready yet', CALL_FAILED, 1503, false),
  // WebRTC signaling (WHIP RFC 9725, WHEP).
  BAD_SDP: e(400, 'Malformed SDP', CALL_FAILED, 1400, false),
  NO_COMMON_CODEC: e(400, 'No common codec', CALL_FAILED, 1415, false),
  SESSION_NOT_FOUND: e(404, 'Session not found', CALL_FAILED, 1404, false),
  RENDITION_NOT_FOUND: e(400, 'Rendition not found', CALL_FAILED, 1404, false),
  ICE_RESTART_UNSUPPORTED: e(405, 'ICE restart not supported', CALL_FAILED, 1501, false),
  BAD_CANDIDATE: e(400, 'Malformed ICE candidate', CALL_FAILED, 1400, false),
  // Recordings (record/).
  RECORDING_NOT_FOUND: e(404, 'Recording not found', CALL_FAILED, 1404, false),
  // Supervised ffmpeg jobs (transcode/ffmpeg-job.ts): `fatal` means the job gives up.
  JOB_START_FAILED: e(503, 'Transcoder could not start', PUBLISH_FAILED, 1503, true),
  JOB_EXITED: e(503, 'Transcoder exited', PUBLISH_FAILED, 1503, false),
  JOB_STALLED: e(503, 'Transcoder stalled', PUBLISH_FAILED, 1503, false),
  JOB_BEHIND: e(503, 'Transcoder behind real time', PUBLISH_FAILED, 1503, false),
  JOB_BAD_OUTPUT: e(503, 'Transcoder wrote unreadable output', PUBLISH_FAILED, 1503, false),
  // Anything unexpected: a bug. Logged with its stack; the peer learns only that it was ours.
  INTERNAL: e(500, 'Internal error', PUBLISH_FAILED, 1500, true),
} as const satisfies Record<string, ErrorSpec>;

/** A stable, machine-readable error code. */
export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/** The catalogue entry of `code`. */
export function errorSpec(code: ErrorCode): ErrorSpec {
  return ERROR_CATALOGUE[code];
}

/** True when `value` is a code of the catalogue. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CATALOGUE, value);
}

/** Base class: `code` is stable, `message` is a human sentence (safe to show to the peer). */
export class GlasscastError extends Error {
  override name = 'GlasscastError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }

  /** The catalogue entry of this error's code. */
  get spec(): ErrorSpec {
    return ERROR_CATALOGUE[this.code];
  }
}

/** An operation was called in a state that does not allow it (e.g. publishing on a closed stream). */
export class InvalidStateError extends GlasscastError {
  override name = 'InvalidStateError';
  constructor(message: string) {
    super('INVALID_STATE', message);
  }
}

/** Too many requests from one client; `retryAfterSeconds` says when to try again (HTTP `Retry-After`). */
export class RateLimitedError extends GlasscastError {
  override name = 'RateLimitedError';
  constructor(
    message: string,
    readonly retryAfterSeconds: number,
  ) {
    super('RATE_LIMITED', message);
  }
}

/**
 * `err` as a GlasscastError: itself when it is one, else `INTERNAL` with a generic sentence (the original is
 * for the log only: internals are never shown to a peer).
 */
export function toGlasscastError(err: unknown): GlasscastError {
  return err instanceof GlasscastError ? err : new GlasscastError('INTERNAL', 'internal error');
}
