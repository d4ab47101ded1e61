/**
 * The MPEG-TS muxer, checked by real ffmpeg: transport streams written by ffmpeg (H.264 + AAC with B-frames,
 * HEVC + AAC, H.264 + Opus) are read into tracks and access units by the SRT ingest path, written again by our
 * muxer, and ffmpeg must decode the result without one error, with every packet and its timestamps kept.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { AccessUnit } from '../../src/core/access-unit.js';
import type { Track } from '../../src/core/track.js';
import { TsToStream } from '../../src/ingest/srt/ts-to-stream.js';
import { MpegTsMuxer, MUX_DELAY_TICKS } from '../../src/media/formats/mpegts-muxer.js';
import { TS_PACKET_SIZE } from '../../src/media/formats/mpegts-demuxer.js';
import { createLogger } from '../../src/observability/logger.js';
import { FFMPEG, FFPROBE } from '../support/ffmpeg.js';

let dir: string;

/** Tracks and access units of an ffmpeg-written TS, as the SRT ingest maps them. */
function ingest(name: string, video: string[], audio: string[]): { tracks: Track[]; units: AccessUnit[] } {
  const path = join(dir, `${name}.ts`);
  const r = spawnSync(FFMPEG, ['-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000', '-t', '3', ...video, ...audio, '-f', 'mpegts', path]);
  assert.equal(r.status, 0, r.stderr.toString());
  let tracks: Track[] = [];
  const units: AccessUnit[] = [];
  const publisher = { start: (t: Track[]) => (tracks = t), publish: (au: AccessUnit) => units.push(au), close: () => undefined, stream: { hasTracks: () => true } };
  const mapper = new TsToStream(publisher as never, createLogger('silent'));
  const bytes = readFileSync(path);
  for (let pos = 0; pos < bytes.length; pos += 1316) mapper.push(bytes.subarray(pos, pos + 1316));
  mapper.end('done');
  return { tracks, units };
}

function probe(path: string): { codecs: string; video: number[]; audio: number } {
  const streams = spawnSync(FFPROBE, ['-v', 'error', '-show_entries', 'stream=codec_name', '-of', 'csv=p=0', path]).stdout.toString().trim().split('\n').filter((l, i, all) => l && all.indexOf(l) === i).join(',');
  const rows = spawnSync(FFPROBE, ['-v', 'error', '-show_entries', 'packet=stream_index,dts', '-of', 'csv=p=0', path]).stdout.toString().split('\n').filter((l) => /^\d/.test(l)).map((l) => l.split(',').map(Number));
  return { codecs: streams, video: rows.filter((x) => x[0] === 0).map((x) => x[1]!), audio: rows.filter((x) => x[0] === 1).length };
}

describe('MPEG-TS muxer (ISO/IEC 13818-1)', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glasscast-tsmux-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases: [string, string[], string[], string][] = [
    ['h264-aac', ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '30', '-bf', '2'], ['-c:a', 'aac'], 'h264,aac'],
    ['hevc-aac', ['-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=none:keyint=30'], ['-c:a', 'aac'], 'hevc,aac'],
    ['h264-opus', ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '30'], ['-c:a', 'libopus'], 'h264,opus'],
  ];
  for (const [name, video, audio, codecs] of cases) {
    it(`writes ${codecs} that ffmpeg decodes without an error, every packet and timestamp kept`, () => {
      const { tracks, units } = ingest(name, video, audio);
      assert.equal(tracks.length, 2);
      const muxer = new MpegTsMuxer(tracks);
      const out = Buffer.concat(units.map((au) => muxer.writeAccessUnit(au.trackId, au.dts, au.pts, au.keyframe, au.payload)));
      assert.equal(out.length % TS_PACKET_SIZE, 0);
      for (let i = 0; i < out.length; i += TS_PACKET_SIZE) assert.equal(out[i], 0x47, `sync byte of packet ${i / TS_PACKET_SIZE}`);
      const path = join(dir, `${name}-ours.ts`);
      writeFileSync(path, out);
      const decode = spawnSync(FFMPEG, ['-v', 'error', '-xerror', '-i', path, '-f', 'null', '-'], { timeout: 60_000 });
      assert.equal(decode.status, 0, decode.stderr.toString());
      assert.equal(decode.stderr.toString(), '', 'no decoder complaint');
      const p = probe(path);
      assert.equal(p.codecs, codecs);
      const videoUnits = units.filter((u) => u.trackId === tracks.find((t) => t.kind === 'video')!.id);
      assert.equal(p.video.length, videoUnits.length, 'every picture');
      assert.equal(p.audio, units.length - videoUnits.length, 'every audio frame');
      assert.equal(p.video[0], videoUnits[0]!.dts - videoUnits[0]!.dts + MUX_DELAY_TICKS, 'the first DTS is the mux delay');
      for (let i = 1; i < p.video.length; i++) assert.equal(p.video[i]! - p.video[i - 1]!, 3000, `DTS step at ${i}`);
    });
  }
});
