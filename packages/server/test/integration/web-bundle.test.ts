/**
 * The built web app's weight where it matters (issue 14: the watch page's JavaScript stays under 250 kB gzip): what
 * a watch page loads — the page's module and its preloads, plus hls.js when it plays LL-HLS — read from the
 * build `npm test` makes first, gzipped as a server or CDN would send it.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { describe, it } from 'node:test';

const DIST = fileURLToPath(new URL('../../../web/dist', import.meta.url));
const gzipKb = (file: string): number => gzipSync(readFileSync(join(DIST, file)), { level: 9 }).length / 1024;

describe('web app bundle', { skip: existsSync(join(DIST, 'index.html')) ? false : 'the web app is not built (npm run build)' }, () => {
  it('keeps the watch page under 250 kB of gzipped JavaScript, hls.js included, and leaves admin and go-live out of it', () => {
    const html = readFileSync(join(DIST, 'index.html'), 'utf8');
    const first = [...html.matchAll(/<(?:script[^>]*src|link[^>]*rel="modulepreload"[^>]*href)="\/([^"]+\.js)"/g)].map((m) => m[1]!);
    assert.ok(first.length >= 1, 'the page loads a module');
    const hls = readdirSync(join(DIST, 'assets')).filter((f) => /^hls.*\.js$/.test(f)).map((f) => `assets/${f}`);
    assert.equal(hls.length, 1, 'hls.js is a chunk of its own, loaded for LL-HLS only');
    const webrtcKb = first.reduce((sum, f) => sum + gzipKb(f), 0);
    const llhlsKb = webrtcKb + gzipKb(hls[0]!);
    console.log(`# watch page JavaScript, gzip: ${webrtcKb.toFixed(1)} kB playing WebRTC, ${llhlsKb.toFixed(1)} kB playing LL-HLS (${first.concat(hls).join(', ')})`);
    assert.ok(llhlsKb < 250, `${llhlsKb.toFixed(1)} kB`);
    assert.ok(!first.some((f) => /admin|broadcast/.test(f)), 'admin and go-live are loaded when visited');
  });
});
