/**
 * SRT encryption against real libsrt callers (Debian's ffmpeg): a stream with a passphrase takes AES-128, -192 and
 * -256 callers with that passphrase (LL-HLS then plays what was decrypted, and ffprobe reads it), follows the
 * caller's even/odd key refreshes, and refuses a wrong passphrase (SRT_REJ_BADSECRET), a missing one and an
 * encrypting caller to a stream without one (SRT_REJ_UNSECURE) — logged, counted, and nothing created.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FFMPEG, FFPROBE, runFfmpeg, type FfmpegProcess } from '../support/ffmpeg.js';
import { firstSegments, startTestServer, type TestServer } from '../support/glasscast.js';
import { waitUntil } from '../support/wait.js';

// ffmpeg 5.1 passes URL option values as typed (no percent-decoding): no spaces.
const PASSPHRASE = 'correct-horse-battery-staple';

function publishSrt(port: number, key: string, crypto: string): FfmpegProcess {
  return runFfmpeg([
    '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '30', '-b:v', '1500k', '-c:a', 'aac',
    '-f', 'mpegts', `srt://127.0.0.1:${port}?mode=caller&latency=200000&streamid=${encodeURIComponent(`#!::r=live/${key},m=publish`)}${crypto}`,
  ]);
}

describe('SRT encryption (passphrase, AES-CTR, key refresh) with ffmpeg/libsrt callers', { timeout: 240_000 }, () => {
  let server: TestServer;
  let secretKey = '';
  const api = (path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${server.httpUrl}/api/v1${path}`, { ...init, headers: { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json', ...init.headers } });

  before(async () => {
    server = await startTestServer();
    const created = await api('/streams', { method: 'POST', body: JSON.stringify({ name: 'secret', srtPassphrase: PASSPHRASE }) });
    assert.equal(created.status, 201);
    const body = (await created.json()) as { srtEncrypted: boolean; key: { key: string; srt: { passphrase: string; url: string } } };
    assert.equal(body.srtEncrypted, true);
    assert.equal(body.key.srt.passphrase, PASSPHRASE);
    secretKey = body.key.key;
  });
  after(async () => {
    await server?.stop();
  });

  const publisherOf = (name: string) => server.app.registry.get(name)?.getStats().children.find((c) => c.type === 'publisher');
  const playing = (name: string): boolean => server.app.llhls.muxer(name)?.ready === true && publisherOf(name)?.info['protocol'] === 'srt';
  const endStream = async (name: string): Promise<void> => {
    await waitUntil('the SRT session to end', () => server.app.srt.sessionCount === 0, 10_000);
    server.app.registry.get(name)?.close('next test');
    await waitUntil('the stream to end', () => server.app.registry.get(name) === undefined, 5000);
  };

  for (const keyLength of [16, 24, 32]) {
    it(`plays an AES-${keyLength * 8} caller with the right passphrase`, async () => {
      const publisher = publishSrt(server.app.ports.srt, secretKey, `&passphrase=${encodeURIComponent(PASSPHRASE)}&pbkeylen=${keyLength}`);
      try {
        await waitUntil('LL-HLS to play the encrypted stream', () => playing('secret'), 20_000, 100).catch((err: unknown) => {
          throw new Error(`${String(err)}\nffmpeg: ${publisher.stderr()}`);
        });
        assert.deepEqual(server.app.registry.get('secret')!.tracks.map((t) => `${t.kind}:${t.codec}`), ['video:h264', 'audio:aac']);
        const counters = publisherOf('secret')!.counters;
        assert.ok((counters['packetsReceived'] ?? 0) > 10);
        assert.equal(counters['packetsUndecryptable'], 0);
        const bytes = await firstSegments(server.httpUrl, 'secret');
        const probe = spawnSync(FFPROBE, ['-v', 'error', '-select_streams', 'v', '-show_entries', 'stream=codec_name,width', '-of', 'csv=p=0', '-i', 'pipe:0'], { input: bytes, timeout: 30_000 });
        assert.equal(probe.stdout.toString().trim(), 'h264,640', probe.stderr.toString().slice(0, 300));
      } finally {
        await publisher.stop();
      }
      await endStream('secret');
    });
  }

  it('plays the encrypted stream to a player with the passphrase (m=request), and refuses one without', async () => {
    const publisher = publishSrt(server.app.ports.srt, secretKey, `&passphrase=${encodeURIComponent(PASSPHRASE)}`);
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-srt-enc-'));
    const file = join(dir, 'played.ts');
    try {
      await waitUntil('the encrypted stream to be live', () => playing('secret'), 20_000, 100);
      const player = runFfmpeg(['-i', `srt://127.0.0.1:${server.app.ports.srt}?mode=caller&latency=200000&passphrase=${encodeURIComponent(PASSPHRASE)}&pbkeylen=32&streamid=${encodeURIComponent('#!::r=live/secret,m=request')}`, '-t', '3', '-map', '0', '-c', 'copy', '-f', 'mpegts', file]);
      await waitUntil('the player to finish', () => player.child.exitCode !== null, 20_000, 100);
      assert.equal(player.child.exitCode, 0, player.stderr());
      const decode = spawnSync(FFMPEG, ['-v', 'error', '-xerror', '-i', file, '-f', 'null', '-'], { timeout: 30_000 });
      assert.equal(decode.status, 0, decode.stderr.toString());
      const pictures = Number(/\d+/.exec(spawnSync(FFPROBE, ['-v', 'error', '-select_streams', 'v', '-count_packets', '-show_entries', 'stream=nb_read_packets', '-of', 'csv=p=0', file]).stdout.toString())?.[0]);
      assert.ok(pictures >= 60, `${pictures} pictures decrypted`);
      const before = server.app.srt.counters.rejected;
      const clear = runFfmpeg(['-i', `srt://127.0.0.1:${server.app.ports.srt}?mode=caller&streamid=${encodeURIComponent('#!::r=live/secret,m=request')}`, '-t', '1', '-f', 'null', '-']);
      await waitUntil('the clear player to be refused', () => server.app.srt.counters.rejected > before, 10_000, 50);
      await clear.stop();
      assert.equal(server.app.srt.lastRejection?.code, 1011);
    } finally {
      await publisher.stop();
      rmSync(dir, { recursive: true, force: true });
    }
    await endStream('secret');
  });

  it("follows the caller's even/odd key refreshes", async () => {
    // A new key every 400 packets, announced 100 packets before the switch (libsrt's KM refresh, in-band KMREQ).
    const publisher = publishSrt(server.app.ports.srt, secretKey, `&passphrase=${encodeURIComponent(PASSPHRASE)}&kmrefreshrate=400&kmpreannounce=100`);
    try {
      await waitUntil('LL-HLS to play the encrypted stream', () => playing('secret'), 20_000, 100).catch((err: unknown) => {
        throw new Error(`${String(err)}\nffmpeg: ${publisher.stderr()}`);
      });
      await waitUntil('three key refreshes', () => (publisherOf('secret')?.counters['keyRefreshes'] ?? 0) >= 3, 30_000, 200);
      const packets = publisherOf('secret')!.counters['packetsReceived']!;
      const partBefore = server.app.llhls.muxer('secret')!.lastPart()!;
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(publisherOf('secret')!.counters['packetsUndecryptable'], 0, 'every packet had its key');
      assert.ok(publisherOf('secret')!.counters['packetsReceived']! > packets, 'still receiving after the switches');
      assert.ok(server.app.llhls.muxer('secret')!.lastPart()!.msn > partBefore.msn, 'segments still complete');
    } finally {
      await publisher.stop();
    }
    await endStream('secret');
  });

  const refusals: [string, () => string, string, number][] = [
    ['a wrong passphrase', () => `#!::r=live/${secretKey},m=publish|&passphrase=${encodeURIComponent('not the passphrase')}`, 'wrong SRT passphrase', 1010],
    ['no passphrase for a stream that has one', () => `#!::r=live/${secretKey},m=publish|`, 'needs the SRT passphrase', 1011],
    ['a passphrase for a stream without one', () => `#!::r=live/${server.key},m=publish|&passphrase=${encodeURIComponent(PASSPHRASE)}`, 'has no SRT passphrase', 1011],
  ];
  for (const [what, target, logged, code] of refusals) {
    it(`refuses ${what} (SRT rejection ${code}) and creates nothing`, async () => {
      const [streamId, crypto] = target().split('|') as [string, string];
      const rejectedBefore = server.app.srt.counters.rejected;
      const publisher = runFfmpeg(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x90:rate=10', '-t', '20', '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', `srt://127.0.0.1:${server.app.ports.srt}?mode=caller&latency=200000&streamid=${encodeURIComponent(streamId)}${crypto}`]);
      try {
        await waitUntil('the caller to be refused', () => server.app.srt.counters.rejected > rejectedBefore, 15_000, 50);
        await waitUntil('ffmpeg to give up', () => publisher.child.exitCode !== null, 10_000, 50).catch((err: unknown) => {
          throw new Error(`${String(err)}\nffmpeg: ${publisher.stderr()}`);
        });
        assert.notEqual(publisher.child.exitCode, 0);
      } finally {
        await publisher.stop();
      }
      assert.equal(server.app.srt.sessionCount, 0);
      assert.equal(server.app.registry.get('secret'), undefined);
      assert.equal(server.app.registry.get('main'), undefined);
      const refusal = server.app.srt.lastRejection;
      assert.equal(refusal?.code, code);
      assert.match(refusal?.reason ?? '', new RegExp(logged));
    });
  }

  it('keeps a passphrase 10–79 characters long', async () => {
    const short = await api('/streams/secret', { method: 'PATCH', body: JSON.stringify({ srtPassphrase: 'short' }) });
    assert.equal(short.status, 400);
    assert.match(short.headers.get('content-type') ?? '', /application\/problem\+json/);
  });
});
