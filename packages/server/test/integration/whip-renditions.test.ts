/**
 * A WHIP (Opus) stream with three rungs: ONE Opus → AAC job for the whole group, and every LL-HLS variant carries
 * the same AAC samples, so segment N's audio starts at the very same time in every rendition.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { liveFfmpegPids } from '../../src/transcode/ffmpeg-path.js';
import { trackSpans } from '../support/fmp4.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';
import { WhipTestClient } from '../support/whip-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';
const RENDITIONS = ['src', '288p', '240p', '180p'];

/** The media playlist's complete segments: msn → [init URL, segment URL]. */
async function segments(base: string, rendition: string): Promise<Map<number, [string, string]>> {
  const url = new URL(`${rendition}/media.m3u8`, base);
  const lines = (await (await fetch(url)).text()).split('\n');
  const out = new Map<number, [string, string]>();
  let msn = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(lines.join('\n'))?.[1] ?? 0);
  let map = '';
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]!;
    if (l.startsWith('#EXT-X-MAP:')) map = new URL(/URI="([^"]+)"/.exec(l)![1]!, url).toString();
    if (l.startsWith('#EXTINF')) {
      out.set(msn++, [map, new URL(lines[i + 1]!, url).toString()]);
    }
  }
  return out;
}

describe('WHIP with three rungs', { timeout: 180_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  const publisher = new WhipTestClient();

  before(async () => {
    server = await startTestServer({ ladder: '288p=500k,240p=300k,180p=200k', webrtcBindAddress: '127.0.0.1' });
    assert.equal((await publisher.publish(`${server.httpUrl}/whip/main`, server.key)).status, 201);
    await publisher.startMedia({ size: '640x360' });
  });
  after(async () => {
    await publisher.close();
    await server?.stop();
  });

  it('bridges Opus to AAC once for the group; segment N’s audio starts at the same time in every rendition', async () => {
    const base = `${server.httpUrl}/hls/main/`;
    await waitUntil('four variants', async () => {
      const text = await (await fetch(new URL('index.m3u8', base))).text().catch(() => '');
      return RENDITIONS.every((r) => text.includes(`${r}/media.m3u8`));
    }, 30_000, 250);
    const jobs = server.app.transcode.stats('main');
    const audioJobs = jobs.filter((j) => j.info['kind'] === 'audio');
    assert.equal(audioJobs.length, 1, 'one audio job');
    assert.deepEqual([audioJobs[0]!.info['from'], audioJobs[0]!.info['to']], ['opus', 'aac']);
    assert.equal(liveFfmpegPids().length, 2, 'one video job for the three rungs, one audio job');

    // Three segments every variant has complete (not the first: a rung's first segment starts at its own first
    // keyframe, after the source's; from its first cut on, segment N is the same stretch of time everywhere).
    const common = await waitUntil('three segments in every variant', async () => {
      const all = await Promise.all(RENDITIONS.map((r) => segments(base, r)));
      const msns = [...all[0]!.keys()].filter((msn) => msn > 0 && all.every((m) => m.has(msn))).slice(-3);
      return msns.length === 3 ? { all, msns } : undefined;
    }, 40_000, 500);
    for (const msn of common.msns) {
      const starts: number[] = [];
      const videoStarts: number[] = [];
      for (const [i] of RENDITIONS.entries()) {
        const [, segment] = common.all[i]!.get(msn)!;
        const spans = trackSpans(Buffer.from(await (await fetch(segment)).arrayBuffer()));
        assert.ok(spans.has(1) && spans.has(2), `${RENDITIONS[i]} segment ${msn} has video and audio`);
        starts.push(spans.get(2)![0]);
        videoStarts.push(spans.get(1)![0]);
      }
      assert.equal(new Set(starts).size, 1, `segment ${msn}: audio starts at ${starts.join(', ')} (48 kHz) in ${RENDITIONS.join(', ')}`);
      assert.equal(new Set(videoStarts.map((t) => Math.round(t / 90))).size, 1, `segment ${msn}: video starts together too (${videoStarts.join(', ')})`);
    }
  });
});
