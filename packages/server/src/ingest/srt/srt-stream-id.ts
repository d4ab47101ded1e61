/**
 * SRT stream id routing (pure): the dialects users paste into OBS, FFmpeg and vMix, read into one request
 * (mode, resource, credentials). The stream id travels in the conclusion handshake's SID extension (draft-
 * sharabayko-srt §3.2.1.3, at most 512 bytes).
 *
 * | dialect | example | reads as |
 * |---|---|---|
 * | SRT Access Control (§ "Standard Keys") | `#!::r=live/KEY,m=publish` | keys `u` user, `r` resource, `h` host, `s` session, `t` type, `m` mode; `user_*` and unknown keys ignored |
 * | MediaMTX | `publish:live/KEY[:user:pass]`, `read:live/NAME` | mode from the verb, path as resource |
 * | OvenMediaEngine | `default/live/KEY`, `srt%3A%2F%2Fhost%3A9999%2Flive%2FKEY` | `<vhost>/<app>/<stream>`: app/stream as resource |
 * | OBS "Stream Key" field, plain FFmpeg | `KEY` or `live/KEY` | the text is the resource, mode publish |
 * | empty | `` | the configured default stream id, read again |
 *
 * The resource then names the stream the same way as RTMP: `live/<key>` (app `live`) or the bare `<key>` when
 * publishing, `live/<name>` or `<name>` when requesting (playback, `m=request`).
 */
import { GlasscastError } from '../../core/errors.js';

/** Longest stream id SRT carries, bytes (draft-sharabayko-srt §3.2.1.3). */
export const MAX_STREAM_ID_BYTES = 512;

/** What a caller asks for. */
export interface SrtStreamRequest {
  /** `publish`: the caller sends; `request`: the caller plays. */
  mode: 'publish' | 'request';
  /** What the caller names: `live/<key>`, `<key>`, `live/<name>`… (see {@link resourceTarget}). */
  resource: string;
  /** A user name, if the dialect carries one (Access Control `u`, MediaMTX `:user:pass`). */
  user: string | undefined;
  /** A password, if the dialect carries one (MediaMTX `:user:pass`). */
  password: string | undefined;
  /** Which dialect was read (for logs). */
  dialect: 'access-control' | 'mediamtx' | 'ovenmediaengine' | 'plain';
}

/**
 * Reads a stream id. `defaultStreamId` stands in for an empty one (it is read with the same rules).
 * @throws GlasscastError `BAD_REQUEST` (SRT rejection 1400) for an id too long, with control characters, an
 *   Access Control id without a resource or with an unknown mode (`bidirectional` is not supported), or an empty id
 *   when no default is configured.
 */
export function parseSrtStreamId(streamId: string, defaultStreamId = ''): SrtStreamRequest {
  if (Buffer.byteLength(streamId) > MAX_STREAM_ID_BYTES) throw bad(`the stream id is longer than ${MAX_STREAM_ID_BYTES} bytes`);
  // libsrt pads the SID extension to 4 bytes with NULs; senders sometimes leave trailing whitespace.
  const id = streamId.replace(/\0+$/, '').trim();
  if (id.length === 0) {
    if (!defaultStreamId) throw bad('the stream id is empty and no default is configured (set srtDefaultStreamId, or put the key in the stream id)');
    return parseSrtStreamId(defaultStreamId);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(id)) throw bad('the stream id has control characters');
  // ffmpeg 5.1 sends `streamid=` exactly as typed: an Access Control or MediaMTX id percent-encoded in the URL
  // (as some guides advise, for the `#`, `:`, `/` and `,`) arrives encoded.
  if (/^(%23!%3A%3A|publish%3A|read%3A)/i.test(id)) {
    let decoded: string;
    try {
      decoded = decodeURIComponent(id);
    } catch {
      throw bad('the stream id is percent-encoded wrongly');
    }
    return parseSrtStreamId(decoded, defaultStreamId);
  }
  if (id.startsWith('#!::')) return accessControl(id.slice(4));
  const mediamtx = /^(publish|read):([^:]+)(?::([^:]*):(.*))?$/.exec(id);
  if (mediamtx) {
    return { mode: mediamtx[1] === 'publish' ? 'publish' : 'request', resource: trimSlashes(mediamtx[2]!), user: mediamtx[3] || undefined, password: mediamtx[4] || undefined, dialect: 'mediamtx' };
  }
  // OvenMediaEngine: the caller's whole srt:// URL, percent-encoded, or `<vhost>/<app>/<stream>`.
  if (/^srt%3A%2F%2F/i.test(id)) {
    let url: URL;
    try {
      url = new URL(decodeURIComponent(id));
    } catch {
      throw bad('the stream id looks like a percent-encoded srt:// URL but is not one');
    }
    const path = trimSlashes(url.pathname);
    if (!path) throw bad('the srt:// URL in the stream id has no /<app>/<stream> path');
    return { mode: 'publish', resource: path, user: undefined, password: undefined, dialect: 'ovenmediaengine' };
  }
  const parts = trimSlashes(id).split('/');
  if (parts.length === 3 && parts.every((p) => p.length > 0)) {
    return { mode: 'publish', resource: `${parts[1]}/${parts[2]}`, user: undefined, password: undefined, dialect: 'ovenmediaengine' };
  }
  return { mode: 'publish', resource: trimSlashes(id), user: undefined, password: undefined, dialect: 'plain' };
}

/** The key (publish) or stream name (request) a resource names, and the app it was under, if any. */
export function resourceTarget(resource: string): { app: string | undefined; name: string } {
  const slash = resource.lastIndexOf('/');
  return slash < 0 ? { app: undefined, name: resource } : { app: resource.slice(0, slash), name: resource.slice(slash + 1) };
}

function accessControl(body: string): SrtStreamRequest {
  const values = new Map<string, string>();
  for (const pair of body.split(',')) {
    if (pair.length === 0) continue;
    const eq = pair.indexOf('=');
    if (eq <= 0) throw bad(`"${pair.slice(0, 40)}" in the stream id is not key=value (SRT Access Control)`);
    const key = pair.slice(0, eq);
    // The first value of a key counts; user_* keys are the application's own and unknown keys are skipped.
    if (!values.has(key)) values.set(key, pair.slice(eq + 1));
  }
  const resource = trimSlashes(values.get('r') ?? '');
  if (!resource) throw bad('the stream id has no resource (r=…); e.g. #!::r=live/<key>,m=publish');
  const mode = values.get('m') ?? 'request';
  if (mode !== 'publish' && mode !== 'request') throw bad(`mode m=${mode.slice(0, 20)} is not supported (publish or request)`);
  const type = values.get('t') ?? 'stream';
  if (type !== 'stream') throw bad(`type t=${type.slice(0, 20)} is not supported (stream)`);
  return { mode, resource, user: values.get('u') || undefined, password: undefined, dialect: 'access-control' };
}

const trimSlashes = (s: string): string => s.replace(/^\/+|\/+$/g, '');
const bad = (message: string): GlasscastError => new GlasscastError('BAD_REQUEST', message);

/**
 * The URL an FFmpeg user pastes to publish with `key` to the listener at `base` (`srt://host:9999`): the stream
 * id in the Access Control form, percent-encoded, and 200 ms latency in µs as FFmpeg counts it.
 */
export function srtPublishUrl(base: string, key: string): string {
  return `${base}?streamid=${encodeURIComponent(`#!::r=live/${key},m=publish`)}&latency=200000`;
}
