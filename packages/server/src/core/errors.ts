/**
 * The one error taxonomy (STYLE rule 7). Every error that crosses a module boundary is a GlasscastError with a
 * stable `code`; the REST API answers with that code and the message, protocol peers get their protocol's own
 * error (RTMP onStatus/_error, HTTP 4xx) chosen from the code.
 */
export type ErrorCode =
  | 'CONFIG_INVALID'
  | 'STREAM_NOT_FOUND'
  | 'STREAM_ALREADY_PUBLISHING'
  | 'PUBLISH_KEY_INVALID'
  | 'STREAM_NAME_INVALID'
  | 'INVALID_STATE'
  | 'PROTOCOL_VIOLATION'
  | 'LIMIT_EXCEEDED';

/** Base class: `code` is stable, `message` is a human sentence. */
export class GlasscastError extends Error {
  override name = 'GlasscastError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** An operation was called in a state that does not allow it (e.g. publishing on a closed stream). */
export class InvalidStateError extends GlasscastError {
  override name = 'InvalidStateError';
  constructor(message: string) {
    super('INVALID_STATE', message);
  }
}
