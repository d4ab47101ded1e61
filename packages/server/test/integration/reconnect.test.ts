/** Publisher loss and return: the same playlist continues with a discontinuity; after the grace period it ends. */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

describe('publisher loss and return', { timeout: 120_000 }, () => {
  const servers: TestServer[] = [];
  const publishers: FfmpegProcess[] = [];
  const publish = (url: string): FfmpegProcess => {
    const p = publishTestPattern(url, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    publishers.push(p);
    return p;
  };
  after(async () => {
    for (const p of publishers) await p.stop();
    for (const s of servers) await s.stop();
  });

  it('continues the same playlist with EXT-X-DISCONTINUITY when the publisher returns within the grace period', async () => {
    const server = await startTestServer({ reconnectGraceMs: 10_000 });
    servers.push(server);
    const media = `${server.httpUrl}/hls/main/src/media.m3u8`;
    const first = publish(`${server.rtmpUrl}/${server.key}`);
    await waitUntil('parts from the first session', () => (server.app.llhls.muxer('main')?.nextPart ?? 0) > 6, 20_000);
    const muxer = server.app.llhls.muxer('main')!;
    await first.stop('SIGKILL'); // a dying publisher: no deleteStream, just a dropped TCP connection
    await waitUntil('the stream to wait for its publisher', () => server.app.registry.get('main')?.state === 'reconnecting', 10_000);
    const partsAtLoss = muxer.nextPart;

    publish(`${server.rtmpUrl}/${server.key}`);
    await waitUntil('parts from the second session', () => muxer.nextPart > partsAtLoss + 6, 20_000);
    assert.equal(server.app.llhls.muxer('main'), muxer, 'the same playlist continues');
    const text = await (await fetch(media)).text();
    assert.equal(text.match(/#EXT-X-DISCONTINUITY\n/g)?.length, 1, text);
    assert.doesNotMatch(text, /ENDLIST/);
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { state: string };
    assert.equal(status.state, 'live');
  });

  it('ends the playlist with EXT-X-ENDLIST when the publisher does not return in time', async () => {
    const server = await startTestServer({ reconnectGraceMs: 1500 });
    servers.push(server);
    const p = publish(`${server.rtmpUrl}/${server.key}`);
    await waitUntil('parts', () => (server.app.llhls.muxer('main')?.nextPart ?? 0) > 3, 20_000);
    await p.stop('SIGKILL');
    await waitUntil('the playlist to end', async () => /#EXT-X-ENDLIST/.test(await (await fetch(`${server.httpUrl}/hls/main/src/media.m3u8`)).text()), 10_000, 200);
    const status = (await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { state: string; playable: boolean };
    assert.deepEqual([status.state, status.playable], ['offline', false]);
  });

  it('keeps other streams untouched when one publisher dies', async () => {
    const server = await startTestServer({ publishAuth: 'open', reconnectGraceMs: 1000 });
    servers.push(server);
    const a = publish(`${server.rtmpUrl}/alpha`);
    publish(`${server.rtmpUrl}/beta`);
    await waitUntil('both streams live', () => (server.app.llhls.muxer('alpha')?.nextPart ?? 0) > 3 && (server.app.llhls.muxer('beta')?.nextPart ?? 0) > 3, 30_000);
    const beta = server.app.llhls.muxer('beta')!;
    const betaParts = beta.nextPart;
    await a.stop('SIGKILL');
    await waitUntil('alpha to end', () => server.app.registry.get('alpha') === undefined, 10_000);
    await waitUntil('beta to keep going', () => beta.nextPart > betaParts + 8, 15_000);
    const text = await (await fetch(`${server.httpUrl}/hls/beta/src/media.m3u8`)).text();
    assert.doesNotMatch(text, /DISCONTINUITY\n|ENDLIST/);
    assert.equal(server.app.registry.get('beta')?.state, 'live');
  });
});
