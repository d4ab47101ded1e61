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
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { PlaybackGate } from '../auth/playback-gate.js';
import { GlasscastError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { withQuery } from '../egress/llhls/llhls-playlist.js';
import type { RecordingRecord, RecordingSegment, RecordingStore } from '../store/recording-store.js';
import { ffmpegPath } from '../transcode/ffmpeg-path.js';
import type { Recorder } from './recorder.js';

/**
 * An HLS media playlist of recorded segments (RFC 8216bis §4.4): EXT-X-MAP wherever the init segment changes,
 * EXT-X-DISCONTINUITY where the publisher reconnected, the program date-time of each segment, and EXT-X-ENDLIST
 * when `ended`. Pure.
 */
export function renderVodPlaylist(segments: readonly RecordingSegment[], ended: boolean): string {
  const target = Math.max(1, Math.ceil(Math.max(0, ...segments.map((s) => s.duration))));
  const lines = ['#EXTM3U', '#EXT-X-VERSION:7', `#EXT-X-TARGETDURATION:${target}`, `#EXT-X-PLAYLIST-TYPE:${ended ? 'VOD' : 'EVENT'}`, '#EXT-X-MEDIA-SEQUENCE:0', '#EXT-X-INDEPENDENT-SEGMENTS'];
  let init: number | undefined;
  for (const s of segments) {
    if (s.discontinuity) lines.push('#EXT-X-DISCONTINUITY');
    if (s.initId !== init) {
      lines.push(`#EXT-X-MAP:URI="init${s.initId}.mp4"`);
      init = s.initId;
    }
    lines.push(`#EXT-X-PROGRAM-DATE-TIME:${new Date(s.programDateTime).toISOString()}`, `#EXTINF:${s.duration.toFixed(5)},`, `seg${s.seq}.m4s`);
  }
  if (ended) lines.push('#EXT-X-ENDLIST');
  return lines.join('\n') + '\n';
}

const PLAYLIST_TYPE = 'application/vnd.apple.mpegurl';
const RENDITION = /^(src|\d{3,4}p)$/;
const MEDIA_FILE = /^(init|seg)(\d{1,9})\.(mp4|m4s)$/;

/** What the VOD routes read. */
export interface VodDeps {
  recordings: RecordingStore;
  recorder: Recorder;
  gate: PlaybackGate;
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
  const ended = (r: RecordingRecord): boolean => r.state === 'ready' || r.state === 'failed';
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
    let pending = making.get(r.id);
    if (!pending) {
      pending = makeMp4(deps, r).finally(() => making.delete(r.id));
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

/** Longest an MP4 remux may take, ms. */
const MP4_TIMEOUT_MS = 10 * 60_000;

/**
 * `<dir>/download.mp4`: the first rendition's segments remuxed by ffmpeg into one MP4 with its index up front
 * (no re-encode). Made once; later calls find it.
 */
async function makeMp4(deps: VodDeps, r: RecordingRecord): Promise<string> {
  const dir = deps.recorder.dirOf(r.id);
  const out = join(dir, 'download.mp4');
  if (await stat(out).catch(() => undefined)) return out;
  const rendition = r.renditions[0]!;
  const playlist = join(dir, rendition, 'local.m3u8');
  await writeFile(playlist, renderVodPlaylist(await deps.recordings.segments(r.id, rendition), true));
  const partial = join(dir, 'download.partial.mp4');
  await new Promise<void>((resolve, reject) => {
    const child = spawn(ffmpegPath(), ['-hide_banner', '-loglevel', 'error', '-nostdin', '-y', '-i', playlist, '-map', '0', '-c', 'copy', '-movflags', '+faststart', '-f', 'mp4', partial], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => child.kill('SIGKILL'), MP4_TIMEOUT_MS);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code === 0) resolve();
      else reject(new GlasscastError('NOT_READY', `the MP4 could not be made (ffmpeg exited ${code}): ${stderr.trim().slice(-300)}`));
    });
  }).catch(async (err: unknown) => {
    deps.log.error({ err, recording: r.id }, 'MP4 remux failed');
    await rm(partial, { force: true });
    throw err;
  });
  await rename(partial, out);
  return out;
}
