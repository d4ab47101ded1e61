/** Starts a real Glasscast on loopback with ephemeral ports and a fresh data directory. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Glasscast } from '../../src/app.js';
import { startGlasscast } from '../../src/app.js';
import { DEFAULT_CONFIG, type GlasscastConfig } from '../../src/config/config.js';
import { createLogger } from '../../src/observability/logger.js';

/** A test server plus what a test needs to reach it. */
export interface TestServer {
  app: Glasscast;
  httpUrl: string;
  rtmpUrl: string;
  /** Key of the stream "main" (key mode). */
  key: string;
  /** The admin API token made on first start. */
  apiToken: string;
  stop(): Promise<void>;
}

/** Starts Glasscast on 127.0.0.1 with ports 0; `overrides` change the config. */
export async function startTestServer(overrides: Partial<GlasscastConfig> = {}): Promise<TestServer> {
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-test-'));
  // No ladder unless a test asks for one: transcoding would load the 2 cores every other test measures on.
  const config: GlasscastConfig = { ...DEFAULT_CONFIG, host: '127.0.0.1', httpPort: 0, rtmpPort: 0, srtPort: 0, webrtcTcpPort: 0, stunPort: 0, dataDir, logLevel: 'error', ladder: 'none', ...overrides };
  const app = await startGlasscast(config, createLogger(process.env['GLASSCAST_TEST_LOG'] ?? config.logLevel));
  const key = app.createdStream?.key ?? '';
  return {
    app,
    httpUrl: `${app.tls() ? 'https' : 'http'}://127.0.0.1:${app.ports.http}`,
    rtmpUrl: `rtmp://127.0.0.1:${app.ports.rtmp}/live`,
    key,
    apiToken: app.createdApiToken ?? '',
    async stop() {
      await app.close();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Waits until `stream` on the server at `httpUrl` offers WebRTC and `count` transcoded renditions (API status). */
export async function waitForRenditions(httpUrl: string, stream: string, count: number, timeoutMs = 40_000): Promise<void> {
  const { waitUntil } = await import('./wait.js');
  await waitUntil(`${count} renditions of ${stream}`, async () => {
    const r = await fetch(`${httpUrl}/api/v1/streams/${stream}`).catch(() => undefined);
    const s = r?.ok ? ((await r.json()) as { webrtc: boolean; renditions: unknown[] }) : undefined;
    return s?.webrtc === true && s.renditions.length === count;
  }, timeoutMs, 200);
}

/**
 * The init segment and the first `count` complete LL-HLS segments of `stream`'s source rendition, concatenated (what
 * ffprobe/ffmpeg read as one fMP4 file); waits up to 15 s for them to exist.
 */
export async function firstSegments(httpUrl: string, stream: string, count = 2): Promise<Buffer> {
  const { waitUntil } = await import('./wait.js');
  const base = `${httpUrl}/hls/${stream}/src`;
  const complete = (playlist: string): string[] => playlist.match(/^[^#].*seg\d+\.m4s$/gm) ?? [];
  let playlist = '';
  await waitUntil(`${count} complete segments of ${stream}`, async () => complete((playlist = await (await fetch(`${base}/media.m3u8`)).text())).length >= count, 15_000, 250);
  const init = /#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)![1]!;
  const uris = [init, ...complete(playlist).slice(0, count)];
  return Buffer.concat(await Promise.all(uris.map(async (u) => Buffer.from(await (await fetch(`${base}/${u}`)).arrayBuffer()))));
}
