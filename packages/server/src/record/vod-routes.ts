/**
 * Recordings over HTTP (issue 13): HLS with the recorded CMAF segments, and a one-file MP4.
 *
 *   GET /vod/<id>/index.m3u8          the first rendition's media playlist (a multivariant one with several)
 *   GET /vod/<id>/<r>/media.m3u8      `EVENT` while recording (players start at the beginning, seek, and follow
 *                                     the live edge), `VOD` with EXT-X-ENDLIST once it ended (RFC 8216bis §4.4.3.5)
 *   GET /vod/<id>/<r>/init<n>.mp4 | seg<n>.m4s
 *   GET /vod/<id>.mp4                 the recording remuxed into one MP4 (`-c copy -movflags +faststart`, made once)
 *
 * Playback is authorized as the live stream's (visibility, playback token as `?token=`, admission hook on the
 * playlist); a recording made while its stream was private stays private. Every URI of a playlist served with a
 * token carries it.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PlaybackGate } from '../auth/playback-gate.js';
import { GlasscastError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { withQuery } from '../egress/llhls/llhls-playlist.js';
import type { RecordingRecord, RecordingStore } from '../store/recording-store.js';
import { makeMp4 } from './mp4.js';
import { renderVodPlaylist } from './vod-playlist.js';
import type { Recorder } from './recorder.js';
import type { Thumbnailer } from './thumbnailer.js';
import type { Uploader } from './uploader.js';

const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
const RENDITION = /^(src|\d{3,4}p)$/;
const MEDIA_FILE = /^(init|seg)(\d{1,9})\.(mp4|m4s)$/;

/** What the VOD routes read. */
export interface VodDeps {
  recordings: RecordingStore;
  recorder: Recorder;
  /** When recordings are uploaded: files no longer on local disk redirect to signed URLs of the bucket. */
  uploader?: Uploader | undefined;
  gate: PlaybackGate;
  thumbnails: Pick<Thumbnailer, 'latest'>;
  log: Logger;
}

/** Registers the `/vod` routes. */
export function registerVodRoutes(app: FastifyInstance, deps: VodDeps): void {
  /** MP4 downloads being made, by recording id (concurrent requests share one ffmpeg run). */
  const making = new Map<string, Promise<string>>();

  /** The recording, once the request may play it; the query its URIs carry. */
  const admit = async (request: FastifyRequest, id: string, entry: boolean): Promise<{ r: RecordingRecord; query: string }> => {
    if (!/^rec_[\w-]{1,40}$/.test(id)) throw new GlasscastError('RECORDING_NOT_FOUND', 'no such recording');
    const r = await deps.recordings.require(id);
    const raw = (request.query as Record<string, unknown>)['token'];
    const token = typeof raw === 'string' && raw.length > 0 ? raw : undefined;
    await deps.gate.authorize({ stream: r.stream, protocol: 'vod', token, clientAddress: request.ip, entry, private: r.visibility === 'private' });
    return { r, query: token ? `token=${encodeURIComponent(token)}` : '' };
  };
  const ended = (r: RecordingRecord): boolean => r.state !== 'recording' && r.state !== 'finalizing';
  const cache = (r: RecordingRecord, query: string, live: string, done: string): string => (query || r.visibility === 'private' ? done.replace('public', 'private') : ended(r) ? done : live);

  const mediaPlaylist = async (request: FastifyRequest, reply: FastifyReply, id: string, rendition: string, entry: boolean): Promise<FastifyReply> => {
    const { r, query } = await admit(request, id, entry);
    if (!r.renditions.includes(rendition)) throw new GlasscastError('RENDITION_NOT_FOUND', `recording ${id} has no rendition ${rendition.slice(0, 20)}`);
    const segments = await deps.recordings.segments(r.id, rendition);
    let text = renderVodPlaylist(segments, ended(r));
    // index.m3u8 of a one-rendition recording is that rendition's playlist: its URIs name the rendition's directory.
    if (entry) text = text.replace(/^(seg\d+\.m4s)$/gm, `${rendition}/$1`).replace(/URI="(init\d+\.mp4)"/g, `URI="${rendition}/$1"`);
    return reply
      .type(PLAYLIST_TYPE)
      .header('cache-control', cache(r, query, 'public, max-age=1', 'public, max-age=3600'))
      .send(withQuery(text, query));
  };

  app.get('/vod/:id/index.m3u8', async (request, reply) => {
    const { id } = request.params as { id: string };
    const { r, query } = await admit(request, id, true);
    if (r.renditions.length === 1) return mediaPlaylist(request, reply, id, r.renditions[0]!, true);
    const lines = ['#EXTM3U', '#EXT-X-VERSION:7', '#EXT-X-INDEPENDENT-SEGMENTS'];
    for (const name of r.renditions) {
      const segments = await deps.recordings.segments(r.id, name);
      const seconds = segments.reduce((n, s) => n + s.duration, 0);
      const bytes = segments.reduce((n, s) => n + s.bytes, 0);
      const peak = Math.max(1, ...segments.map((s) => (s.bytes * 8) / Math.max(0.1, s.duration)));
      lines.push(`#EXT-X-STREAM-INF:BANDWIDTH=${Math.round(peak)},AVERAGE-BANDWIDTH=${Math.round(seconds > 0 ? (bytes * 8) / seconds : peak)}`, `${name}/media.m3u8`);
    }
    return reply.type(PLAYLIST_TYPE).header('cache-control', cache(r, query, 'public, max-age=1', 'public, max-age=3600')).send(withQuery(lines.join('\n') + '\n', query));
  });

  app.get('/thumbnails/:file', async (request, reply) => {
    const { file } = request.params as { file: string };
    const name = /^([\w.-]{1,64})\.jpg$/.exec(file)?.[1];
    if (!name) throw new GlasscastError('NOT_FOUND', 'thumbnails are /thumbnails/<stream>.jpg');
    const raw = (request.query as Record<string, unknown>)['token'];
    const token = typeof raw === 'string' && raw.length > 0 ? raw : undefined;
    await deps.gate.authorize({ stream: name, protocol: 'thumbnail', token, clientAddress: request.ip, entry: false });
    const t = deps.thumbnails.latest(name);
    if (!t) throw new GlasscastError('NOT_FOUND', `no thumbnail of ${name} yet (made every few seconds while it is live)`);
    return reply
      .type('image/jpeg')
      .header('cache-control', `${token ? 'private' : 'public'}, max-age=5`)
      .header('last-modified', new Date(t.at).toUTCString())
      .send(t.jpeg);
  });

  app.get('/vod/:id/thumbnail.jpg', async (request, reply) => {
    const { id } = request.params as { id: string };
    const { r, query } = await admit(request, id, false);
    const path = join(deps.recorder.dirOf(r.id), 'thumbnail.jpg');
    const info = await stat(path).catch(() => undefined);
    if (!info && r.state === 'uploaded' && deps.uploader) return reply.header('cache-control', 'private, no-store').redirect(await deps.uploader.signedUrl(r.id, 'thumbnail.jpg'), 302);
    if (!info) throw new GlasscastError('NOT_FOUND', `recording ${r.id} has no thumbnail`);
    return reply.type('image/jpeg').header('content-length', info.size).header('cache-control', cache(r, query, 'public, max-age=60', 'public, max-age=86400')).send(createReadStream(path));
  });

  app.get('/vod/:id/:rendition/media.m3u8', async (request, reply) => {
    const { id, rendition } = request.params as { id: string; rendition: string };
    if (!RENDITION.test(rendition)) throw new GlasscastError('RENDITION_NOT_FOUND', 'no such rendition');
    return mediaPlaylist(request, reply, id, rendition, false);
  });

  app.get('/vod/:id/:rendition/:file', async (request, reply) => {
    const { id, rendition, file } = request.params as { id: string; rendition: string; file: string };
    const m = MEDIA_FILE.exec(file);
    if (!RENDITION.test(rendition) || !m || (m[1] === 'init') !== (m[3] === 'mp4')) throw new GlasscastError('NOT_FOUND', 'no such file');
    const { r, query } = await admit(request, id, false);
    const path = join(deps.recorder.dirOf(r.id), rendition, file);
    const info = await stat(path).catch(() => undefined);
    if (!info && r.state === 'uploaded' && deps.uploader) return reply.header('cache-control', 'private, no-store').redirect(await deps.uploader.signedUrl(r.id, `${rendition}/${file}`), 302);
    if (!info) throw new GlasscastError('NOT_FOUND', `recording ${r.id} has no ${rendition}/${file}`);
    return reply
      .type(m[1] === 'init' ? 'video/mp4' : 'video/iso.segment')
      .header('content-length', info.size)
      .header('cache-control', cache(r, query, 'public, max-age=86400, immutable', 'public, max-age=86400, immutable'))
      .send(createReadStream(path));
  });

  app.get('/vod/:file', async (request, reply) => {
    const { file } = request.params as { file: string };
    const id = /^(rec_[\w-]{1,40})\.mp4$/.exec(file)?.[1];
    if (!id) throw new GlasscastError('NOT_FOUND', 'no such recording');
    const { r, query } = await admit(request, id, true);
    if (!ended(r)) throw new GlasscastError('NOT_READY', `recording ${r.id} is still ${r.state}; its MP4 is made once it is ready (its HLS playlist plays now)`);
    if (r.state === 'uploaded' && deps.uploader && !(await stat(join(deps.recorder.dirOf(r.id), 'download.mp4')).catch(() => undefined))) {
      return reply.header('cache-control', 'private, no-store').redirect(await deps.uploader.signedUrl(r.id, 'download.mp4'), 302);
    }
    let pending = making.get(r.id);
    if (!pending) {
      pending = makeMp4(deps.recordings, deps.recorder.dirOf(r.id), r, deps.log).finally(() => making.delete(r.id));
      making.set(r.id, pending);
    }
    const path = await pending;
    const info = await stat(path);
    return reply
      .type('video/mp4')
      .header('content-length', info.size)
      .header('content-disposition', `attachment; filename="${r.stream}-${r.startedAt.replace(/[:.]/g, '-')}.mp4"`)
      .header('cache-control', cache(r, query, 'public, max-age=3600', 'public, max-age=3600'))
      .send(createReadStream(path));
  });
}
