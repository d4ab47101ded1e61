/**
 * Enhanced RTMP HEVC (as OBS 29.1+ sends it: ExVideoTagHeader with FourCC "hvc1") passes through to LL-HLS as
 * `hvc1`. The frames are real x265 output; ffprobe reads the resulting CMAF back as HEVC.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { RTMP_TYPE } from '../../src/ingest/rtmp/rtmp-chunk-stream.js';
import { splitAnnexB } from '../../src/media/codecs/h264.js';
import { buildHevcConfig, HEVC_NAL } from '../../src/media/codecs/hevc.js';
import { encodeAmf0, encodeAmf0EcmaArray } from '../../src/media/formats/amf0.js';
import { FFMPEG, ffprobeJson } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { RtmpTestClient } from '../support/rtmp-client.js';
import { waitUntil } from '../support/wait.js';

const nalType = (nal: Uint8Array): number => (nal[0]! >> 1) & 0x3f;

/** Real x265 access units (split at access unit delimiters), 30 fps, a keyframe every 30 frames, no B-frames. */
function x265AccessUnits(dir: string): Uint8Array[][] {
  const file = join(dir, 'clip.hevc');
  const r = spawnSync(FFMPEG, [
    '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-frames:v', '90',
    '-c:v', 'libx265', '-x265-params', 'log-level=none:aud=1:keyint=30:min-keyint=30:bframes=0:scenecut=0', '-f', 'hevc', file,
  ]);
  assert.equal(r.status, 0, r.stderr.toString());
  const units: Uint8Array[][] = [];
  for (const nal of splitAnnexB(readFileSync(file))) {
    if (nalType(nal) === HEVC_NAL.aud) units.push([]);
    else units[units.length - 1]?.push(nal);
  }
  return units.filter((u) => u.length > 0);
}

const lengthPrefixed = (nals: Uint8Array[]): Buffer =>
  Buffer.concat(nals.flatMap((n) => [Buffer.from([n.length >>> 24, (n.length >> 16) & 0xff, (n.length >> 8) & 0xff, n.length & 0xff]), Buffer.from(n)]));

describe('Enhanced RTMP HEVC', { timeout: 60_000 }, () => {
  let server: TestServer;
  let dir: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'glasscast-hevc-'));
    server = await startTestServer();
  });
  after(async () => {
    await server?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes HEVC through to LL-HLS as hvc1 that ffprobe decodes as HEVC 640x360', async () => {
    const units = x265AccessUnits(dir);
    const first = units[0]!;
    const record = buildHevcConfig(
      first.filter((n) => nalType(n) === HEVC_NAL.vps),
      first.filter((n) => nalType(n) === HEVC_NAL.sps),
      first.filter((n) => nalType(n) === HEVC_NAL.pps),
    );
    const client = await RtmpTestClient.connect(server.app.ports.rtmp);
    await client.handshake();
    assert.equal((await client.publish('live', server.key))['code'], 'NetStream.Publish.Start');
    const sid = 1;
    client.send(4, RTMP_TYPE.dataAmf0, sid, 0, Buffer.concat([encodeAmf0('@setDataFrame', 'onMetaData'), encodeAmf0EcmaArray({ videocodecid: 'hvc1', width: 640, height: 360 })]));
    // ExVideoTagHeader: IsExHeader | FrameType << 4 | PacketType, then the FourCC.
    client.send(6, RTMP_TYPE.video, sid, 0, Buffer.concat([Buffer.from([0x80 | (1 << 4) | 0]), Buffer.from('hvc1'), record]));
    units.forEach((au, i) => {
      const key = au.some((n) => nalType(n) >= 16 && nalType(n) <= 23);
      const vcl = au.filter((n) => nalType(n) < 32);
      // PacketType 3 = CodedFramesX (no composition time: no B-frames here).
      client.send(6, RTMP_TYPE.video, sid, Math.round((i * 1000) / 30), Buffer.concat([Buffer.from([0x80 | ((key ? 1 : 2) << 4) | 3]), Buffer.from('hvc1'), lengthPrefixed(vcl)]));
    });
    await waitUntil('two complete segments', () => (server.app.llhls.muxer('main')?.snapshot().segments.filter((s) => s.complete).length ?? 0) >= 1, 15_000);
    client.close(); // the publisher leaves; the open segment is closed for playback

    const muxer = server.app.llhls.muxer('main')!;
    await waitUntil('the last segment to close', () => muxer.snapshot().segments.every((s) => s.complete), 5000);
    const multivariant = await (await fetch(`${server.httpUrl}/hls/main/index.m3u8`)).text();
    assert.match(multivariant, /CODECS="hvc1\.1\.6\.L\d+\.[0-9A-F]+"/);
    assert.match(multivariant, /RESOLUTION=640x360/);

    const snapshot = muxer.snapshot();
    const file = join(dir, 'out.mp4');
    writeFileSync(file, Buffer.concat([muxer.init(1)!, ...snapshot.segments.map((s) => muxer.segment(s.msn)!)]));
    const probe = (await ffprobeJson(['-count_frames', '-show_entries', 'stream=codec_name,codec_tag_string,width,height,nb_read_frames', file])) as {
      streams: { codec_name: string; codec_tag_string: string; width: number; height: number; nb_read_frames: string }[];
    };
    const v = probe.streams[0]!;
    assert.deepEqual([v.codec_name, v.codec_tag_string, v.width, v.height], ['hevc', 'hvc1', 640, 360]);
    assert.equal(Number(v.nb_read_frames), units.length, 'every frame decodes');
  });
});
