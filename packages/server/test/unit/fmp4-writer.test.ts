/**
 * The CMAF writer and LL-HLS muxer, checked by an independent parser: real x264 output with B-frames (from an
 * FLV file ffmpeg writes) goes through the RTMP mapping and the muxer, and ffprobe reads the fMP4 back with
 * every frame at the source's timestamps.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { Stream } from '../../src/core/stream.js';
import { LlHlsMuxer } from '../../src/egress/llhls/llhls-muxer.js';
import { RtmpToStream } from '../../src/ingest/rtmp/rtmp-to-stream.js';
import { FFMPEG, ffprobeJson } from '../support/ffmpeg.js';
import { readFlvFile } from '../support/flv-file.js';

interface ProbePacket {
  pts_time: string;
  dts_time: string;
  flags: string;
}

async function packets(file: string, stream: 'v' | 'a'): Promise<ProbePacket[]> {
  const json = (await ffprobeJson(['-select_streams', stream, '-show_entries', 'packet=pts_time,dts_time,flags', file])) as { packets: ProbePacket[] };
  return json.packets;
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

describe('fMP4 writer and LL-HLS muxer, read back by ffprobe', () => {
  let dir: string;
  let flv: string;
  let mp4: string;
  let muxer: LlHlsMuxer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glasscast-fmp4-'));
    flv = join(dir, 'source.flv');
    mp4 = join(dir, 'out.mp4');
    // 4 s of 25 fps x264 with 2 B-frames and a keyframe every second, plus AAC 48 kHz.
    const r = spawnSync(FFMPEG, [
      '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=25', '-f', 'lavfi', '-i', 'sine=sample_rate=48000',
      '-t', '4', '-c:v', 'libx264', '-preset', 'veryfast', '-bf', '2', '-g', '25', '-pix_fmt', 'yuv420p',
      '-c:a', 'aac', '-f', 'flv', flv,
    ]);
    assert.equal(r.status, 0, r.stderr.toString());

    const stream = new Stream('t', { reconnectGraceMs: 0, log: silentLogger, onEnded: () => undefined });
    muxer = new LlHlsMuxer('t', { partTargetMs: 200, segmentTargetMs: 1000, windowSegments: 100 }, silentLogger);
    stream.subscribe(muxer);
    const mapper = new RtmpToStream(stream.claim({ protocol: 'rtmp' }), silentLogger);
    for (const tag of readFlvFile(flv)) {
      if (tag.tagType === 9) mapper.onVideo(tag.timestamp, tag.body);
      else if (tag.tagType === 8) mapper.onAudio(tag.timestamp, tag.body);
      await tick();
    }
    stream.close('end of file');
    await tick();
    const snapshot = muxer.snapshot();
    const body = [muxer.init(1)!, ...snapshot.segments.map((s) => muxer.segment(s.msn)!)];
    writeFileSync(mp4, Buffer.concat(body));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('keeps every video frame at the source PTS and DTS (B-frames reordered correctly)', async () => {
    const source = await packets(flv, 'v');
    const out = await packets(mp4, 'v');
    assert.equal(out.length, source.length, 'frame count');
    // The muxer's timeline starts at 10 s; everything else must match to the millisecond.
    for (let i = 0; i < source.length; i++) {
      assert.ok(Math.abs(Number(out[i]!.pts_time) - 10 - Number(source[i]!.pts_time)) < 0.0015, `pts of frame ${i}`);
      assert.ok(Math.abs(Number(out[i]!.dts_time) - 10 - Number(source[i]!.dts_time)) < 0.0015, `dts of frame ${i}`);
      assert.equal(out[i]!.flags.startsWith('K'), source[i]!.flags.startsWith('K'), `keyframe flag of frame ${i}`);
    }
    assert.ok(source.some((p) => p.pts_time !== p.dts_time), 'the source really has reordered frames');
  });

  it('keeps audio continuous: 1024-sample steps at 48 kHz', async () => {
    const out = await packets(mp4, 'a');
    assert.ok(out.length > 150);
    for (let i = 1; i < out.length; i++) {
      const step = Number(out[i]!.dts_time) - Number(out[i - 1]!.dts_time);
      assert.ok(Math.abs(step - 1024 / 48000) < 0.0001, `audio step ${i}: ${step}`);
    }
  });

  it('cuts segments at keyframes near the target and parts no longer than PART-TARGET', () => {
    const snapshot = muxer.snapshot();
    assert.ok(snapshot.segments.length >= 3);
    // Only the last few segments still list their parts (older parts are dropped from the playlist).
    assert.ok(snapshot.segments.slice(-3).every((s) => s.parts && s.parts.length > 0));
    for (const seg of snapshot.segments) {
      if (seg.parts) {
        assert.equal(seg.parts[0]!.independent, true, `segment ${seg.msn} starts with an independent part`);
        for (const p of seg.parts) assert.ok(p.duration <= snapshot.partTarget + 1e-6, `part ${p.uri} lasts ${p.duration}`);
      }
      if (seg !== snapshot.segments[snapshot.segments.length - 1]) assert.ok(Math.abs(seg.duration - 1) < 0.05, `segment ${seg.msn} lasts ${seg.duration}`);
    }
    assert.equal(snapshot.ended, true);
  });
});
