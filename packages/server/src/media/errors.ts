/**
 * Thrown by pure media parsers on malformed or oversized input. `code` is stable and machine-readable;
 * the message is a human sentence. Sessions catch it at their boundary and close only the offending peer.
 */
export class MediaParseError extends Error {
  override readonly name = 'MediaParseError';
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
