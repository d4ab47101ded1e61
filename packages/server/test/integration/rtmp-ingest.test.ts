/**
 * RTMP ingest against real peers on loopback: ffmpeg publishers, a digest-handshake client, and hostile
 * connections that must close only themselves.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { publishTestPattern, runFfmpeg, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { RtmpTestClient } from '../support/rtmp-client.js';
import { waitUntil } from '../support/wait.js';

describe('RTMP ingest', { timeout: 120_000 }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess | undefined;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  const partsOf = (name: string): number => server.app.llhls.muxer(name)?.nextPart ?? 0;

  it('completes the digest handshake with a server digest a librtmp-style client accepts, and publishes with the key', async () => {
    const client = await RtmpTestClient.connect(server.app.ports.rtmp);
    await client.handshake();
    assert.equal(client.serverDigestValid, true);
    const status = await client.publish('live', server.key);
    assert.equal(status['code'], 'NetStream.Publish.Start');
    assert.equal(server.app.registry.get('main')?.state, 'idle', 'claimed; starts when media arrives');
    client.close();
    await waitUntil('the unstarted stream to be released', () => server.app.registry.get('main') === undefined, 5000);
  });

  it('rejects a wrong key with NetStream.Publish.BadName, closes the connection and creates nothing', async () => {
    const client = await RtmpTestClient.connect(server.app.ports.rtmp);
    await client.handshake();
    const status = await client.publish('live', 'not-the-key');
    assert.equal(status['level'], 'error');
    assert.equal(status['code'], 'NetStream.Publish.BadName');
    await client.waitClosed();
    assert.equal(server.app.registry.list().length, 0);
  });

  it('makes ffmpeg fail when it publishes with a wrong key', async () => {
    const ff = runFfmpeg(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=320x240:rate=30', '-t', '10', '-c:v', 'libx264', '-f', 'flv', `${server.rtmpUrl}/wrong-key`]);
    const [code] = (await once(ff.child, 'exit')) as [number | null];
    assert.notEqual(code, 0, 'ffmpeg must not believe it is publishing');
    assert.equal(server.app.registry.list().length, 0);
  });

  it('refuses a second publisher while the stream is live', async () => {
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { size: '640x360' });
    await waitUntil('parts from the first publisher', () => partsOf('main') > 2, 20_000);
    const client = await RtmpTestClient.connect(server.app.ports.rtmp);
    await client.handshake();
    const status = await client.publish('live', server.key);
    assert.equal(status['code'], 'NetStream.Publish.BadName');
    assert.match(String(status['description']), /already has a live publisher/);
    await client.waitClosed();
  });

  it('closes only the offending connection on garbage, a truncated handshake and an oversized chunk', async () => {
    assert.ok(publisher, 'needs the live publisher of the previous test');
    const before = partsOf('main');

    // 1. Garbage: a wrong version byte and noise.
    const garbage = connect({ host: '127.0.0.1', port: server.app.ports.rtmp });
    await once(garbage, 'connect');
    garbage.write(Buffer.concat([Buffer.from([0x47, 0x45, 0x54, 0x20]), Buffer.alloc(4000, 0x5a)]));
    await once(garbage, 'close');

    // 2. A truncated handshake: C0 and part of C1, then the client goes quiet and hangs up.
    const truncated = connect({ host: '127.0.0.1', port: server.app.ports.rtmp });
    await once(truncated, 'connect');
    truncated.end(Buffer.concat([Buffer.from([3]), Buffer.alloc(700, 1)]));
    await once(truncated, 'close');

    // 3. An oversized chunk: a message header announcing 16 MiB, beyond the 8 MiB limit.
    const big = await RtmpTestClient.connect(server.app.ports.rtmp);
    await big.handshake();
    big.socket.write(Buffer.from('04000000ffffff0901000000', 'hex'));
    await big.waitClosed();

    // 4. A valid handshake followed by random chunk bytes.
    const noisy = await RtmpTestClient.connect(server.app.ports.rtmp);
    await noisy.handshake();
    noisy.socket.write(Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7919) & 0xff)));
    await noisy.waitClosed(15_000).catch(() => noisy.close());

    await waitUntil('the live stream to keep producing parts', () => partsOf('main') > before + 6, 10_000);
    assert.equal(server.app.registry.get('main')?.state, 'live');
    const health = await fetch(`${server.httpUrl}/healthz`);
    assert.equal(health.status, 200);
    await waitUntil('hostile connections to be gone', () => server.app.registry.list().length === 1, 5000);
  });
});
