/** LL-HLS over HTTP against a real ffmpeg publisher: blocking reload, preload hints, delta updates, caching, ffprobe. */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { ffprobeJson, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

/** The last EXT-X-PART of a playlist as (msn, index within its segment), from the text alone. */
function lastPart(text: string): { msn: number; index: number } {
  const lines = text.split('\n');
  let msn = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)![1]);
  const skipped = /#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)/.exec(text);
  if (skipped) msn += Number(skipped[1]);
  let index = -1;
  let last = { msn: -1, index: -1 };
  for (const line of lines) {
    if (line.startsWith('#EXT-X-PART:')) {
      index++;
      last = { msn, index };
    } else if (line.startsWith('#EXTINF')) {
      msn++;
      index = -1;
    }
  }
  return last;
}

describe('LL-HLS over HTTP', { timeout: 120_000 }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;
  let media: string;

  before(async () => {
    // 1 s segments make the delta-update boundary (6 target durations) reachable in a short test.
    server = await startTestServer({ segmentTargetMs: 1000, partTargetMs: 250 });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    media = `${server.httpUrl}/hls/main/src/media.m3u8`;
    await waitUntil('the first part', async () => (await fetch(media)).status === 200, 20_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  it('holds a blocking request for the next part and answers as soon as it exists', async () => {
    const text = await (await fetch(media)).text();
    const last = lastPart(text);
    const want = { msn: last.msn, part: last.index + 1 };
    const muxer = server.app.llhls.muxer('main')!;
    const sentAt = Date.now();
    const existedAtSend = muxer.has(want.msn, want.part);
    const res = await fetch(`${media}?_HLS_msn=${want.msn}&_HLS_part=${want.part}`);
    const waited = Date.now() - sentAt;
    assert.equal(res.status, 200);
    assert.equal(existedAtSend, false, 'the request was for a part that did not exist yet');
    const body = await res.text();
    const got = lastPart(body);
    assert.ok(got.msn > want.msn || (got.msn === want.msn && got.index >= want.part), `answer holds ${want.msn}.${want.part}`);
    // Bounded by the spec's three target durations; a part is 250 ms, so it should come far sooner.
    assert.ok(waited < 3000, `answered in ${waited} ms`);
    assert.match(res.headers.get('cache-control') ?? '', /max-age/);
  });

  it('answers 400 for a request too far ahead or a part without a segment number', async () => {
    const last = lastPart(await (await fetch(media)).text());
    assert.equal((await fetch(`${media}?_HLS_msn=${last.msn + 10}&_HLS_part=0`)).status, 400);
    assert.equal((await fetch(`${media}?_HLS_part=1`)).status, 400);
    assert.equal((await fetch(`${media}?_HLS_msn=abc`)).status, 400);
  });

  it('holds the preload-hinted part until it exists, then serves it as immutable video/mp4', async () => {
    const text = await (await fetch(media)).text();
    const hint = /#EXT-X-PRELOAD-HINT:TYPE=PART,URI="([^"]+)"/.exec(text)![1]!;
    const res = await fetch(new URL(hint, media));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'video/mp4');
    assert.match(res.headers.get('cache-control') ?? '', /immutable/);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(bytes.toString('latin1', 4, 8), 'moof');
  });

  it('streams the hinted part as it is made: its first bytes arrive before the part is complete, and the whole equals the finished part', async () => {
    const muxer = server.app.llhls.muxer('main')!;
    // Ask for the part after the one being built, so the request is in place before its first picture exists.
    const number = muxer.nextPart + 1;
    const epoch = muxer.epoch;
    const res = await fetch(`${server.httpUrl}/hls/main/src/${epoch}/part${number}.m4s`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-length'), null, 'sent with chunked transfer: its length is not known yet');
    const reader = res.body!.getReader();
    const chunks: Buffer[] = [];
    let completeAtFirstBytes: boolean | undefined;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      completeAtFirstBytes ??= muxer.part(number) !== undefined;
      chunks.push(Buffer.from(value));
    }
    assert.equal(completeAtFirstBytes, false, 'the first bytes left while the part was still being built');
    const whole = muxer.part(number)!;
    assert.deepEqual(Buffer.concat(chunks), whole);
    assert.equal(whole.toString('latin1', 4, 8), 'moof');
    // Once complete it is an ordinary object with a length (what a cache in front stores).
    const again = await fetch(`${server.httpUrl}/hls/main/src/${epoch}/part${number}.m4s`);
    assert.equal(Number(again.headers.get('content-length')), whole.length);
  });

  it('answers hostile and odd requests with problem details, and keeps serving', async () => {
    const base = server.httpUrl;
    const cases: [string, number][] = [
      ['/hls/%E0%A4%A/index.m3u8', 400], // a broken percent escape
      ['/hls/main/src/media.m3u8?_HLS_msn=1e3', 400],
      ['/hls/main/src/media.m3u8?_HLS_msn=-1&_HLS_part=0', 400],
      ['/hls/main/src/media.m3u8?_HLS_msn=%zz', 400],
      ['/hls/main/src/x/y/z/part1.m4s', 404],
      ['/hls/main/src/00000000/part1.m4s', 404],
      ['/hls/main/src/media.m3u8x', 404],
      ['/hls/', 404],
      ['/hls/nosuch/index.m3u8', 404],
    ];
    for (const [path, status] of cases) {
      const res = await fetch(base + path);
      assert.equal(res.status, status, path);
      assert.equal(res.headers.get('content-type'), 'application/problem+json; charset=utf-8', path);
      assert.equal(res.headers.get('access-control-allow-origin'), '*', path);
    }
    // Random bytes after /hls/: never a crash, always an answer.
    for (let i = 0; i < 200; i++) {
      const junk = Array.from({ length: 1 + (i % 40) }, (_, j) => '/%?&=._-aZ09'[(i * 7 + j * 13) % 12]).join('');
      const res = await fetch(`${base}/hls/${junk}`);
      assert.ok(res.status >= 200 && res.status < 500, `${junk}: ${res.status}`);
      await res.arrayBuffer();
    }
    const head = await fetch(media, { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.ok(Number(head.headers.get('content-length')) > 0);
    assert.equal((await fetch(media)).status, 200, 'still serving');
  });

  it('serves the init segment and complete segments; unknown objects are 404 and not cached', async () => {
    const text = await (await fetch(media)).text();
    const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(text)![1]!;
    const initRes = await fetch(new URL(init, media));
    assert.equal(Buffer.from(await initRes.arrayBuffer()).toString('latin1', 4, 8), 'ftyp');
    const missing = await fetch(new URL(init.replace(/init\d+/, 'seg999999'), media));
    assert.equal(missing.status, 404);
    assert.equal(missing.headers.get('cache-control'), 'no-store');
    assert.equal((await fetch(`${server.httpUrl}/hls/nosuch/src/media.m3u8`)).status, 404);
  });

  it('returns a delta update with EXT-X-SKIP for _HLS_skip=YES once the playlist is long enough', async () => {
    await waitUntil('more than 6 target durations of playlist', async () => server.app.llhls.muxer('main')!.snapshot().segments.length >= 9, 30_000, 250);
    const last = lastPart(await (await fetch(media)).text());
    const res = await fetch(`${media}?_HLS_msn=${last.msn}&_HLS_part=${last.index}&_HLS_skip=YES`);
    const text = await res.text();
    assert.match(text, /#EXT-X-VERSION:9/);
    const skipped = Number(/#EXT-X-SKIP:SKIPPED-SEGMENTS=(\d+)/.exec(text)?.[1]);
    assert.ok(skipped >= 1, text);
    const full = await (await fetch(media)).text();
    assert.ok(text.length < full.length);
  });

  it('is read by ffprobe from the multivariant playlist with the published codecs', async () => {
    const multivariant = await (await fetch(`${server.httpUrl}/hls/main/index.m3u8`)).text();
    assert.match(multivariant, /CODECS="avc1\.64[0-9a-f]{4},mp4a\.40\.2",RESOLUTION=640x360/);
    assert.match(multivariant, /BANDWIDTH=\d+/);
    const probe = (await ffprobeJson(['-show_entries', 'stream=codec_name,width,height,sample_rate', `${server.httpUrl}/hls/main/index.m3u8`])) as {
      streams: { codec_name: string; width?: number; sample_rate?: string }[];
    };
    const names = probe.streams.map((s) => s.codec_name).sort();
    assert.deepEqual([...new Set(names)], ['aac', 'h264']);
    assert.ok(probe.streams.some((s) => s.width === 640));
  });
});
