/**
 * The ABR ladder end to end on the server side: a 1080p30 RTMP publish becomes LL-HLS renditions at the
 * ladder's sizes and bitrates with keyframes at identical PTS; a 360p source gets no rung above it; a killed
 * transcoder comes back while the source keeps playing; no ffmpeg outlives Glasscast.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_LADDER, parseLadder } from '../../src/transcode/ladder.js';
import { ffprobeJson, ladderSourceClip, publishClip, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

interface Probed {
  width: number;
  height: number;
  /** Video bits/s over the fetched segments. */
  bitrate: number;
  /** PTS (90 kHz ticks) of every keyframe, and of the first and last picture. */
  keyframes: number[];
  first: number;
  last: number;
}

/** Downloads the init segment and the last `count` complete segments of a media playlist and probes them. */
async function probeRendition(base: string, path: string, count = 3): Promise<Probed> {
  const url = new URL(path, base);
  const text = await waitUntil(`${count} segments in ${path}`, async () => {
    const res = await fetch(url);
    if (!res.ok) return undefined;
    const t = await res.text();
    return (t.match(/#EXTINF/g) ?? []).length >= count + 1 ? t : undefined;
  }, 40_000, 250);
  const lines = text.split('\n');
  const map = /#EXT-X-MAP:URI="([^"]+)"/.exec([...lines].reverse().find((l) => l.startsWith('#EXT-X-MAP')) ?? '')?.[1];
  assert.ok(map, text);
  const segments = lines.filter((l, i) => lines[i - 1]?.startsWith('#EXTINF')).slice(-count);
  const parts = [await fetch(new URL(map, url)), ...(await Promise.all(segments.map((s) => fetch(new URL(s, url)))))];
  const bytes = Buffer.concat(await Promise.all(parts.map(async (r) => Buffer.from(await r.arrayBuffer()))));
  const dir = mkdtempSync(join(tmpdir(), 'glasscast-ladder-'));
  try {
    const file = join(dir, 'r.mp4');
    writeFileSync(file, bytes);
    const probe = (await ffprobeJson(['-select_streams', 'v', '-show_streams', '-show_packets', '-show_entries', 'packet=pts,size,flags:stream=width,height,time_base', file])) as {
      streams: { width: number; height: number; time_base: string }[];
      packets: { pts: number; size: string; flags: string }[];
    };
    const stream = probe.streams[0]!;
    assert.equal(stream.time_base, '1/90000');
    const pts = probe.packets.map((p) => p.pts);
    const first = Math.min(...pts);
    const last = Math.max(...pts);
    const frame = (last - first) / Math.max(1, pts.length - 1);
    const bits = probe.packets.reduce((n, p) => n + Number(p.size) * 8, 0);
    return {
      width: stream.width,
      height: stream.height,
      bitrate: bits / ((last - first + frame) / 90_000),
      keyframes: probe.packets.filter((p) => p.flags.startsWith('K')).map((p) => p.pts),
      first,
      last,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function variants(base: string): Promise<{ attrs: string; uri: string }[]> {
  const res = await fetch(new URL('index.m3u8', base));
  if (!res.ok) return [];
  const lines = (await res.text()).split('\n');
  return lines.flatMap((l, i) => (l.startsWith('#EXT-X-STREAM-INF:') ? [{ attrs: l, uri: lines[i + 1]! }] : []));
}

describe('ABR ladder', { timeout: 240_000 }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess | undefined;

  before(async () => {
    server = await startTestServer({ ladder: DEFAULT_LADDER, reconnectGraceMs: 2_000 });
  });
  after(async () => {
    await publisher?.stop();
    await server.stop();
  });

  it('turns a 1080p30 publish into 720p/480p/360p LL-HLS renditions at the ladder bitrates, keyframes at identical PTS', async () => {
    // Without B-frames: the ladder alone (the B-frame-free copy a B-frame source also gets costs as much again, and
    // on this 2-core box under a loaded test run it can push the job into shedding; derived-media.test.ts covers it).
    publisher = publishClip(`${server.rtmpUrl}/${server.key}`, await ladderSourceClip({ bFrames: false }));
    const base = `${server.httpUrl}/hls/main/`;
    const list = await waitUntil('four variants', async () => {
      const v = await variants(base);
      return v.length >= 4 ? v : undefined;
    }, 30_000, 250);
    assert.deepEqual(list.map((v) => v.uri), ['src/media.m3u8', '720p/media.m3u8', '480p/media.m3u8', '360p/media.m3u8'], 'the 1080p rung is the source itself: not re-encoded');
    for (const v of list) {
      assert.match(v.attrs, /BANDWIDTH=\d+/);
      assert.match(v.attrs, /CODECS="avc1\.[0-9a-f]{6},mp4a\.40\.2"/);
      assert.match(v.attrs, /RESOLUTION=\d+x\d+/);
      assert.match(v.attrs, /FRAME-RATE=(29\.9|30\.0)/);
    }
    const media = await (await fetch(new URL('720p/media.m3u8', base))).text();
    for (const other of ['src', '480p', '360p']) assert.match(media, new RegExp(`#EXT-X-RENDITION-REPORT:URI="../${other}/media.m3u8",LAST-MSN=\\d+,LAST-PART=\\d+`));

    const ladder = new Map(parseLadder(DEFAULT_LADDER).map((r) => [r.name, r]));
    const probed = new Map<string, Probed>();
    for (const name of ['720p', '480p', '360p']) probed.set(name, await probeRendition(base, `${name}/media.m3u8`));
    probed.set('src', await probeRendition(base, 'src/media.m3u8'));
    for (const name of ['720p', '480p', '360p']) {
      const p = probed.get(name)!;
      const rung = ladder.get(name)!;
      assert.equal(p.height, rung.height, `${name} height`);
      assert.equal(p.width, Math.round((1920 * rung.height) / 1080 / 2) * 2, `${name} width keeps 16:9`);
      const ratio = p.bitrate / rung.bitrate;
      assert.ok(ratio > 0.8 && ratio < 1.2, `${name}: ${Math.round(p.bitrate / 1000)} kb/s vs ${rung.bitrate / 1000} kb/s target`);
    }
    // Keyframes: every one of the source's at the same PTS in every rendition; the renditions add their own so
    // none goes more than a second without one (an LL-HLS player switching finds an independent part close by).
    const all = [...probed.values()];
    const from = Math.max(...all.map((p) => p.first));
    const to = Math.min(...all.map((p) => p.last));
    assert.ok(to - from >= 2 * 90_000, `the renditions overlap by ${(to - from) / 90_000} s`);
    const inRange = (p: Probed): number[] => p.keyframes.filter((k) => k >= from && k <= to);
    const sourceKeyframes = inRange(probed.get('src')!);
    assert.ok(sourceKeyframes.length >= 1, 'a source keyframe in the common range');
    const reference = inRange(probed.get('720p')!);
    for (const name of ['720p', '480p', '360p']) {
      const keyframes = inRange(probed.get(name)!);
      for (const k of sourceKeyframes) assert.ok(keyframes.includes(k), `${name} has the source's keyframe at ${k}: ${keyframes.join(' ')}`);
      assert.deepEqual(keyframes, reference, `${name} keyframes at the same PTS as 720p (the same frame rate)`);
      const gaps = keyframes.slice(1).map((k, i) => k - keyframes[i]!);
      assert.ok(Math.max(...gaps) <= 90_000 + 3003, `${name}: keyframes at most a second apart (${gaps.join(' ')} ticks)`);
    }

    // Past the clip's loop (12 s; its timestamps jump there by a fraction of a frame) the renditions' segments
    // still start at the very pictures the source's do: the same program date-times, to the millisecond.
    const starts = async (name: string): Promise<{ sequence: number; times: string[] }> => {
      const text = await (await fetch(new URL(`${name}/media.m3u8`, base))).text();
      // A segment's date-time, its parts (recent segments), then its EXTINF once complete.
      const times = text.split('#EXT-X-PROGRAM-DATE-TIME:').slice(1).filter((block) => block.includes('#EXTINF')).map((block) => block.slice(0, block.indexOf('\n')));
      return { sequence: Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1]), times };
    };
    const sourceStarts = await waitUntil('16 s of source segments', async () => {
      const st = await starts('src');
      return st.sequence + st.times.length >= 8 ? st.times : undefined;
    }, 30_000, 500);
    for (const name of ['720p', '480p', '360p']) {
      // Renditions lag the source a little: wait until this one has completed segments as far as the source had.
      const recent = sourceStarts[sourceStarts.length - 2]!;
      const times = await waitUntil(`${name} to catch up`, async () => {
        const st = (await starts(name)).times;
        return st.some((t) => t >= recent) ? st : undefined;
      }, 15_000, 250).catch(async () => (await starts(name)).times);
      const own = times.filter((t) => t >= sourceStarts[0]! && t <= sourceStarts[sourceStarts.length - 1]!);
      assert.ok(own.length >= 4, `${name} has complete segments`);
      assert.deepEqual(own, sourceStarts.slice(sourceStarts.indexOf(own[0]!), sourceStarts.indexOf(own[0]!) + own.length), `${name} segments start where the source's do`);
    }

    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { renditions: { name: string }[]; transcode: { encoder: string; encoderReason: string; state: string; outputs: string[] } };
    assert.deepEqual(status.renditions.map((r) => r.name), ['720p', '480p', '360p']);
    assert.equal(status.transcode.encoder, 'libx264', 'no GPU here');
    assert.match(status.transcode.encoderReason, /no hardware encoder works \(nvenc: .+; vaapi: .+; qsv: .+\)/);
    assert.equal(status.transcode.state, 'running');
    assert.deepEqual(status.transcode.outputs, ['720p', '480p', '360p'], 'one run makes every rung (no copy: this source has no B-frames)');
  });

  it('restores the renditions after the transcoder is killed while the source keeps playing', async () => {
    const app = server.app;
    const pid = app.transcode.pids('main').video;
    assert.ok(pid, 'ffmpeg runs');
    const src = app.llhls.muxer('main')!;
    const rung = app.llhls.muxer('main', '480p')!;
    const srcPartBefore = src.nextPart;
    process.kill(pid, 'SIGKILL');
    const killedAt = Date.now();
    const videoJob = (): { counters: Record<string, number>; info: Record<string, unknown> } => app.transcode.stats('main')[0]!;
    await waitUntil('the transcoder to notice', () => (videoJob().counters['restarts'] ?? 0) >= 1, 5_000, 50);
    const partsAtRestart = rung.nextPart;
    await waitUntil('new 480p parts', () => app.llhls.muxer('main', '480p')!.nextPart >= partsAtRestart + 3, 15_000, 100);
    const restoredMs = Date.now() - killedAt;
    assert.ok(src.nextPart >= srcPartBefore + Math.floor(restoredMs / 1000) * 2, `the source kept making parts (${src.nextPart - srcPartBefore} in ${restoredMs} ms)`);
    const newPid = app.transcode.pids('main').video;
    assert.ok(newPid && newPid !== pid, 'a new ffmpeg');
    assert.ok(restoredMs < 8_000, `renditions back after ${restoredMs} ms`);
    const stats = videoJob();
    assert.equal(stats.counters['restarts'], 1);
    assert.equal(stats.info['lastFaultCode'], 'JOB_EXITED');
    assert.match(String(stats.info['lastFault']), /SIGKILL/);
    const playlist = await (await fetch(`${server.httpUrl}/hls/main/480p/media.m3u8`)).text();
    assert.match(playlist, /#EXT-X-DISCONTINUITY/, 'the gap is marked for players');
    await publisher?.stop();
    publisher = undefined;
    await waitUntil('no ffmpeg once the source stops', () => app.transcode.pids('main').video === undefined, 5_000, 50);
    await waitUntil('the ffmpeg is gone', () => !processAlive(newPid), 5_000, 50);
  });

  it('gives a 360p source without B-frames no rung above it, and no video transcoder', async () => {
    const s = await startTestServer({ ladder: DEFAULT_LADDER });
    const p = publishTestPattern(`${s.rtmpUrl}/${s.key}`, { size: '640x360', zerolatency: true });
    try {
      await waitUntil('the source variant', async () => ((await variants(`${s.httpUrl}/hls/main/`)).length > 0 ? true : undefined), 20_000, 250);
      await new Promise((r) => setTimeout(r, 3000));
      assert.deepEqual((await variants(`${s.httpUrl}/hls/main/`)).map((v) => v.uri), ['src/media.m3u8']);
      const status = (await (await fetch(`${s.httpUrl}/api/v1/streams/main`)).json()) as { renditions: unknown[]; transcode: { state: string; outputs: unknown[] } };
      assert.deepEqual(status.renditions, []);
      assert.deepEqual(status.transcode.outputs, []);
      assert.equal(status.transcode.state, 'idle', 'no ffmpeg for nothing to do');
      assert.equal(s.app.transcode.pids('main').video, undefined);
      assert.equal((await fetch(`${s.httpUrl}/hls/main/480p/media.m3u8`)).status, 404);
    } finally {
      await p.stop();
      await s.stop();
    }
  });

  it('leaves no ffmpeg behind when Glasscast is killed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-orphans-'));
    const cli = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
    const child = spawn(process.execPath, ['--import', 'tsx', cli, '--host', '127.0.0.1', '--http-port', '0', '--webrtc-tcp-port', '0', '--rtmp-port', '0', '--srt-port', '0', '--data-dir', dir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    let pub: FfmpegProcess | undefined;
    try {
      const [rtmp, key] = await waitUntil('the RTMP address and key', () => {
        const m = /Server: +(rtmp:\/\/\S+)\s+Stream key: +(\S+)/.exec(out);
        return m ? [m[1]!, m[2]!] : undefined;
      }, 20_000);
      pub = publishClip(`${rtmp}/${key}`, await ladderSourceClip());
      const ffmpegs = await waitUntil('the ladder ffmpeg', () => {
        const kids = childrenOf(child.pid!).filter((p) => commandOf(p) === 'ffmpeg');
        return kids.length > 0 ? kids : undefined;
      }, 20_000, 100);
      child.kill('SIGKILL');
      await once(child, 'exit');
      await waitUntil('every ffmpeg of the killed server to exit', () => ffmpegs.every((p) => !processAlive(p)), 10_000, 100);
    } finally {
      await pub?.stop();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function processAlive(pid: number): boolean {
  try {
    // A zombie still answers kill(0); read the state instead.
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(entry));
    } catch {
      // exited meanwhile
    }
  }
  return out;
}

function commandOf(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}
