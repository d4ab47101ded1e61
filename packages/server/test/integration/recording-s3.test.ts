/**
 * Recording upload to S3-compatible storage (issue 13) against a real S3-protocol server run by the test (s3rver,
 * in-process, on loopback): segments, playlist and MP4 arrive with their content types; the S3 server is down for
 * 20 s mid-upload and Glasscast is restarted meanwhile, and the upload still completes; afterwards the local files
 * are gone and playback redirects to signed URLs, a private recording only with a playback token.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { HeadObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { startGlasscast, type Glasscast } from '../../src/app.js';
import { DEFAULT_CONFIG, type GlasscastConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/observability/logger.js';
import { ffprobeJson, publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { waitUntil } from '../support/wait.js';

const BUCKET = 'vod';

describe('recording upload to S3', { timeout: 240_000 }, () => {
  const dirs: string[] = [];
  const cleanups: (() => Promise<void>)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('uploads every file with its content type through an S3 outage and a Glasscast restart, then plays from the bucket', async () => {
    const s3Dir = mkdtempSync(join(tmpdir(), 'glasscast-s3rver-'));
    const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-s3-data-'));
    dirs.push(s3Dir, dataDir);
    let s3: S3rver | undefined = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: s3Dir, configureBuckets: [{ name: BUCKET }] });
    const s3Port = (await s3.run()).port;
    cleanups.push(async () => s3?.close());
    const endpoint = `http://127.0.0.1:${s3Port}`;
    const config: GlasscastConfig = {
      ...DEFAULT_CONFIG,
      host: '127.0.0.1', httpPort: 0, rtmpPort: 0, srtPort: 0, dataDir, logLevel: 'error', ladder: 'none',
      record: 'all', reconnectGraceMs: 500,
      s3Endpoint: endpoint, s3Bucket: BUCKET, s3AccessKeyId: 'S3RVER', s3SecretAccessKey: 'S3RVER', s3KeepLocal: 'delete',
    };
    const log = createLogger(process.env['GLASSCAST_TEST_LOG'] ?? 'error');
    let app: Glasscast | undefined = await startGlasscast(config, log);
    cleanups.push(async () => app?.close());
    const base = (): string => `http://127.0.0.1:${app!.ports.http}`;
    const token = app.createdApiToken!;
    const key = app.createdStream!.key;
    const api = async (method: string, path: string, body?: unknown): Promise<Record<string, unknown>> => {
      const res = await fetch(`${base()}${path}`, { method, headers: { authorization: `Bearer ${token}`, ...(body ? { 'content-type': 'application/json' } : {}) }, body: body ? JSON.stringify(body) : undefined });
      const text = await res.text();
      assert.ok(res.status < 300, `${method} ${path} → ${res.status} ${text}`);
      return text ? (JSON.parse(text) as Record<string, unknown>) : {};
    };
    await api('PATCH', '/api/v1/streams/main', { visibility: 'private' });
    const recording = async (): Promise<{ id: string; state: string; durationMs: number } | undefined> => ((await api('GET', '/api/v1/recordings'))['items'] as { id: string; state: string; durationMs: number }[])[0];

    const publisher: FfmpegProcess = publishTestPattern(`rtmp://127.0.0.1:${app.ports.rtmp}/live/${key}`, { gopSeconds: 1, seconds: 10, size: '640x360' });
    cleanups.push(() => publisher.stop());
    await waitUntil('segments uploading', async () => ((await recording())?.durationMs ?? 0) >= 3000 && app!.uploader!.counters.uploaded >= 2, 20_000, 250);

    // The S3 server goes away for 20 s; meanwhile the broadcast ends and Glasscast restarts.
    const downAt = Date.now();
    await s3.close();
    s3 = undefined;
    await once(publisher.child, 'exit');
    await waitUntil('the recording uploading', async () => (await recording())?.state === 'uploading', 20_000, 250);
    const id = (await recording())!.id;
    assert.ok(app.uploader!.counters.failures > 0 || (await app.recordings.uploadBacklog()).pending > 0, 'uploads were waiting');
    await app.close();
    app = await startGlasscast(config, log);
    await new Promise((r) => setTimeout(r, Math.max(0, 20_000 - (Date.now() - downAt))));
    assert.equal((await recording())!.state, 'uploading', 'nothing completes while the bucket is away');
    s3 = new S3rver({ address: '127.0.0.1', port: s3Port, silent: true, directory: s3Dir, configureBuckets: [{ name: BUCKET }] });
    await s3.run();
    await waitUntil('the recording uploaded', async () => (await recording())?.state === 'uploaded', 90_000, 500);

    // Every file is in the bucket with its content type.
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
    cleanups.push(async () => client.destroy());
    const listed = await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `recordings/${id}/` }));
    const keys = (listed.Contents ?? []).map((o) => o.Key!.slice(`recordings/${id}/`.length)).sort();
    assert.ok(keys.includes('download.mp4') && keys.includes('src/index.m3u8') && keys.includes('src/init1.mp4') && keys.includes('src/seg0.m4s'), keys.join(' '));
    const segments = keys.filter((k) => /^src\/seg\d+\.m4s$/.test(k)).length;
    const playlist = await (await fetch(`${base()}/vod/${id}/src/media.m3u8?token=${await playbackToken()}`)).text();
    assert.equal(segments, (playlist.match(/^seg\d+\.m4s/gm) ?? []).length, 'every segment uploaded');
    const type = async (k: string): Promise<string | undefined> => (await client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: `recordings/${id}/${k}` }))).ContentType;
    assert.equal(await type('src/seg0.m4s'), 'video/iso.segment');
    assert.equal(await type('src/init1.mp4'), 'video/mp4');
    assert.equal(await type('download.mp4'), 'video/mp4');
    assert.equal(await type('src/index.m3u8'), 'application/vnd.apple.mpegurl');

    // Local files are gone; playback redirects to the bucket, for a private recording only with a token.
    assert.equal(existsSync(join(dataDir, 'recordings', id)), false);
    assert.equal((await fetch(`${base()}/vod/${id}/src/seg0.m4s`, { redirect: 'manual' })).status, 401);
    const t = await playbackToken();
    const redirected = await fetch(`${base()}/vod/${id}/src/seg0.m4s?token=${t}`, { redirect: 'manual' });
    assert.equal(redirected.status, 302);
    assert.match(redirected.headers.get('location') ?? '', new RegExp(`^${endpoint}/${BUCKET}/recordings/${id}/src/seg0\\.m4s\\?.*X-Amz-Signature=`));
    assert.equal((await fetch(redirected.headers.get('location')!)).status, 200);
    const mp4 = await fetch(`${base()}/vod/${id}.mp4?token=${t}`);
    assert.equal(mp4.status, 200);
    const file = join(dataDir, 'check.mp4');
    writeFileSync(file, Buffer.from(await mp4.arrayBuffer()));
    const probed = (await ffprobeJson(['-show_entries', 'format=duration', file])) as { format: { duration: string } };
    assert.ok(Math.abs(Number(probed.format.duration) - 10) <= 1, `the MP4 from the bucket lasts ${probed.format.duration} s`);

    // Deleting the recording deletes its objects.
    assert.equal((await fetch(`${base()}/api/v1/recordings/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${token}` } })).status, 204);
    assert.equal((await client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `recordings/${id}/` }))).KeyCount ?? 0, 0);

    async function playbackToken(): Promise<string> {
      return encodeURIComponent(String((await api('POST', '/api/v1/streams/main/playback-tokens', { ttlSeconds: 300 }))['token']));
    }
  });
});
