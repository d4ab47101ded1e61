/**
 * The web app end to end in Debian's headless Chromium, asserted on the pages themselves: a new user's empty
 * directory, a channel appearing with its thumbnail without a reload when ffmpeg publishes, playing it from the
 * directory, the viewer count of two pages; the admin flow (sign in with the printed API token, create a private
 * stream, copy its key, publish with it, watch with a minted link, kick that viewer, rotate the key, a webhook's
 * delivery log); viewers' QoE (a throttled viewer's stream shows the higher rebuffer ratio on the admin page and
 * in /metrics). Every page is screenshot at 1280×800 and 390×844 and audited with axe-core.
 */
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { launchChromium } from '../support/browser.js';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { checkPage, VIEWPORTS } from '../support/page-checks.js';
import { waitUntil } from '../support/wait.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

/** The watch page's player state and frames presented. */
async function playback(page: Page): Promise<{ state: string; frames: number; protocol: string | undefined }> {
  return page.evaluate(() => {
    const player = (window as unknown as { glasscast?: { getStats(): { state: string; framesDecoded: number; protocol: string | undefined } } }).glasscast;
    const s = player?.getStats();
    return { state: s?.state ?? 'none', frames: document.querySelector('video')?.getVideoPlaybackQuality().totalVideoFrames ?? 0, protocol: s?.protocol };
  });
}

async function assertPlays(page: Page, what: string): Promise<void> {
  await waitUntil(`${what} to play`, async () => (await playback(page)).state === 'playing', 30_000, 200);
  const first = (await playback(page)).frames;
  await waitUntil(`${what}: frames rising`, async () => (await playback(page)).frames > first + 30, 15_000, 200);
}

describe('web app in headless Chromium', { timeout: 420_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let browser: Browser;
  let context: BrowserContext;
  const publishers: FfmpegProcess[] = [];
  const a11y: string[] = [];

  before(async () => {
    server = await startTestServer({ reconnectGraceMs: 500, webrtcBindAddress: '127.0.0.1' });
    browser = await launchChromium();
    context = await browser.newContext({ viewport: VIEWPORTS.desktop });
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: server.httpUrl });
  });
  after(async () => {
    for (const p of publishers) await p.stop();
    await browser?.close();
    await server?.stop();
  });

  it('shows a new user the empty directory, then the channel with its thumbnail without a reload; plays it from there; two pages read 2 viewers', async () => {
    const home = await context.newPage();
    await home.goto(server.httpUrl + '/');
    await home.getByRole('heading', { name: 'Nothing is live right now' }).waitFor({ timeout: 10_000 });
    assert.match((await home.textContent('.empty')) ?? '', /rtmp:\/\/127\.0\.0\.1:\d+\/live/, 'the empty state says where to publish');
    a11y.push(...(await checkPage(home, 'directory-empty')));

    // Without B-frames (zerolatency, as OBS's low-latency presets): both pages play WebRTC at once, each its own
    // session. (Two LL-HLS pages of one browser on one address count as one viewer: HTTP has no sessions.)
    publishers.push(publishTestPattern(`${server.rtmpUrl}/${server.key}`, { size: '640x360', gopSeconds: 1, zerolatency: true }));
    const card = home.locator('li.card[data-stream="main"]');
    await card.waitFor({ timeout: 20_000 });
    await waitUntil('the channel thumbnail', () => card.locator('img').evaluate((img: HTMLImageElement) => img.complete && img.naturalWidth > 0).catch(() => false), 30_000, 250);
    assert.equal(await home.getByRole('heading', { name: 'Nothing is live right now' }).count(), 0, 'the empty state is gone');
    a11y.push(...(await checkPage(home, 'directory-live')));

    await card.locator('a').click();
    await home.waitForURL(/\/watch\/main$/);
    await assertPlays(home, 'the watch page opened from the directory');
    const second = await context.newPage();
    await second.goto(`${server.httpUrl}/watch/main`);
    await assertPlays(second, 'a second watch page');
    await waitUntil('both pages to read 2 viewers', async () => (await home.getAttribute('#viewers', 'data-viewers')) === '2' && (await second.getAttribute('#viewers', 'data-viewers')) === '2', 15_000, 250).catch(async (err: Error) => {
      throw new Error(`${err.message}: pages read ${await home.getAttribute('#viewers', 'data-viewers')} and ${await second.getAttribute('#viewers', 'data-viewers')}, playing ${(await playback(home)).protocol} and ${(await playback(second)).protocol}`);
    });
    assert.match((await second.textContent('#viewers')) ?? '', /2 viewers/);
    await second.getByRole('button', { name: 'Stats' }).click();
    await waitUntil('stats for nerds', async () => /\d+×\d+/.test((await second.textContent('#nerds')) ?? ''), 5000, 200);
    a11y.push(...(await checkPage(second, 'watch-stats')));
    await second.getByRole('button', { name: 'Share' }).click();
    await second.getByRole('img', { name: /QR code of http/ }).waitFor();
    a11y.push(...(await checkPage(second, 'watch-share')));
    await second.close();
    await home.close();
  });

  it('lets an operator sign in, create a private stream, publish with its copied key, watch with a minted link, kick the viewer, rotate the key and read a webhook delivery log', async () => {
    const received: string[] = [];
    const receiver: Server = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        received.push((JSON.parse(body) as { type: string }).type);
        res.statusCode = 204;
        res.end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    const admin = await context.newPage();
    try {
      await admin.goto(`${server.httpUrl}/admin`);
      a11y.push(...(await checkPage(admin, 'admin-sign-in')));
      await admin.fill('#api-key', server.apiToken);
      await admin.click('#sign-in');
      await admin.getByRole('heading', { name: 'Streams' }).waitFor();
      assert.ok(!admin.url().includes(server.apiToken), 'the key is never in the URL');

      await admin.fill('#new-stream-name', 'vip');
      await admin.fill('#new-stream-title', 'Board meeting');
      await admin.selectOption('#new-stream-visibility', 'private');
      await admin.click('#create-stream');
      await admin.waitForURL(/\/admin\/streams\/vip$/);
      await admin.getByRole('heading', { name: 'Publish settings' }).waitFor();
      // Copy the key with the page's own button, and read what it put on the clipboard.
      await admin.locator('.field', { has: admin.locator('#stream-key') }).getByRole('button', { name: 'Copy' }).click();
      const key = (await admin.evaluate('navigator.clipboard.readText()')) as string;
      assert.equal(key, await admin.getAttribute('#stream-key', 'data-value'));
      assert.ok(key.length >= 16, 'a stream key was copied');

      publishers.push(publishTestPattern(`${server.rtmpUrl}/${key}`, { size: '640x360', gopSeconds: 1 }));
      await waitUntil('the admin page to show the stream live', async () => (await admin.textContent('#live-state')) === 'live', 20_000, 250);
      await admin.fill('#token-viewer', 'alice');
      await admin.click('#mint-token');
      const link = await waitUntil('a watch link', async () => (await admin.getAttribute('#watch-link-token', 'data-value')) ?? undefined, 10_000, 100);
      assert.match(link, /\/watch\/vip\?token=/);
      a11y.push(...(await checkPage(admin, 'admin-stream')));

      const refused = await context.newPage();
      await refused.goto(`${server.httpUrl}/watch/vip`);
      await waitUntil('the page without a token to explain', async () => /token/i.test((await refused.textContent('#message')) ?? ''), 15_000, 250);
      await refused.close();
      const viewer = await context.newPage();
      await viewer.goto(link);
      await assertPlays(viewer, 'the minted watch link');

      const row = admin.locator('#sessions tr[data-role="viewer"]', { hasText: 'alice' });
      await row.waitFor({ timeout: 10_000 });
      await row.getByRole('button', { name: 'Kick' }).click();
      await waitUntil('the kicked viewer to stop playing', async () => (await playback(viewer)).state !== 'playing', 10_000, 200);
      await waitUntil('the session to leave the table', async () => (await row.count()) === 0, 10_000, 250);
      await new Promise((r) => setTimeout(r, 4000));
      assert.notEqual((await playback(viewer)).state, 'playing', 'a kicked viewer does not come straight back');
      await viewer.close();

      await admin.locator('.field', { has: admin.locator('#stream-key') }).getByRole('button', { name: 'Show' }).click();
      await admin.click('#rotate-key');
      await waitUntil('a new key on the page', async () => {
        const now = await admin.getAttribute('#stream-key', 'data-value');
        return now !== null && now !== key;
      }, 10_000, 200);

      await admin.getByRole('link', { name: 'Webhooks' }).click();
      await admin.fill('#webhook-url', `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`);
      await admin.fill('#webhook-events', 'stream.started, stream.ended');
      await admin.click('#create-webhook');
      const hook = admin.locator('li[data-webhook]').first();
      await hook.waitFor();
      await hook.getByRole('button', { name: 'Send test' }).click();
      await hook.locator('tr[data-type="webhook.test"][data-state="delivered"]').waitFor({ timeout: 15_000 });
      assert.ok(received.includes('webhook.test'), 'the receiver got the test');
      a11y.push(...(await checkPage(admin, 'admin-webhooks')));
      for (const [tab, name] of [['Recordings', 'admin-recordings'], ['API keys', 'admin-api-keys'], ['Streams', 'admin-streams']] as const) {
        await admin.getByRole('navigation', { name: 'Admin' }).getByRole('link', { name: tab }).click();
        await admin.getByRole('heading', { name: tab }).waitFor();
        a11y.push(...(await checkPage(admin, name)));
      }
      // Go live in the same tab: the signed-in operator picks among their streams (the key is per tab).
      await admin.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Go live' }).click();
      await admin.selectOption('#my-streams', 'vip');
      await waitUntil('the stream and its key filled in', async () => (await admin.inputValue('#stream')) === 'vip' && (await admin.inputValue('#key')).length >= 16, 10_000, 100);
      a11y.push(...(await checkPage(admin, 'broadcast')));
    } finally {
      await admin.close();
      receiver.close();
      for (const p of publishers.splice(0)) await p.stop();
    }
  });

  it('shows the stream whose viewer rebuffers on a throttled link with the higher rebuffer ratio, on the admin page and in /metrics', async () => {
    // Two new streams, one viewer each (main's earlier viewers would count in its figures for 5 minutes).
    const keyOf = async (name: string): Promise<string> =>
      ((await (await fetch(`${server.httpUrl}/api/v1/streams`, { method: 'POST', headers: { authorization: `Bearer ${server.apiToken}`, 'content-type': 'application/json' }, body: JSON.stringify({ name }) })).json()) as { key: { key: string } }).key.key;
    publishers.push(publishTestPattern(`${server.rtmpUrl}/${await keyOf('busy')}`, { size: '640x360', gopSeconds: 1 }));
    publishers.push(publishTestPattern(`${server.rtmpUrl}/${await keyOf('calm')}`, { size: '640x360', gopSeconds: 1 }));
    const throttled = await context.newPage();
    const calm = await context.newPage();
    await calm.goto(`${server.httpUrl}/watch/calm?protocol=ll-hls`);
    await throttled.goto(`${server.httpUrl}/watch/busy?protocol=ll-hls`);
    await assertPlays(calm, 'the calm viewer');
    await assertPlays(throttled, 'the viewer about to be throttled');
    // The link drops to a third of the stream's rate: LL-HLS drains its buffer and stalls, again and again.
    const cdp = await context.newCDPSession(throttled);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 50, downloadThroughput: 300_000 / 8, uploadThroughput: 300_000 / 8 });
    const stalled = async (page: Page): Promise<number> => (await page.evaluate('window.glasscast.getStats().stalledMs')) as number;
    await waitUntil('the throttled viewer to stall 3 s more than the calm one', async () => (await stalled(throttled)) > (await stalled(calm)) + 3000, 60_000, 500);
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
    for (const page of [throttled, calm]) await page.evaluate('window.glasscast.reportQoe()');
    const ratioOf = (metrics: string, stream: string): number => Number(new RegExp(`^glasscast_qoe_rebuffer_ratio\\{stream="${stream}"\\} (\\S+)$`, 'm').exec(metrics)?.[1] ?? NaN);
    const metrics = await waitUntil('both streams in /metrics', async () => {
      const text = await (await fetch(`${server.httpUrl}/metrics`, { headers: { authorization: `Bearer ${server.apiToken}` } })).text();
      return Number.isFinite(ratioOf(text, 'busy')) && Number.isFinite(ratioOf(text, 'calm')) ? text : undefined;
    }, 10_000, 250);
    const pages = `throttled page ${JSON.stringify(await throttled.evaluate('window.glasscast.getStats()'))}; calm page ${JSON.stringify(await calm.evaluate('window.glasscast.getStats()'))}`;
    assert.ok(ratioOf(metrics, 'busy') > ratioOf(metrics, 'calm'), `rebuffer ratio busy ${ratioOf(metrics, 'busy')} > calm ${ratioOf(metrics, 'calm')}; ${pages}`);

    const admin = await context.newPage();
    await admin.goto(`${server.httpUrl}/admin`);
    await admin.fill('#api-key', server.apiToken);
    await admin.click('#sign-in');
    await admin.getByRole('heading', { name: 'Streams' }).waitFor();
    const shown = async (name: string): Promise<number> => {
      await admin.goto(`${server.httpUrl}/admin/streams/${name}`);
      return Number(await waitUntil(`QoE of ${name} on the admin page`, async () => (await admin.getAttribute('#qoe-rebuffer', 'data-ratio')) ?? undefined, 10_000, 200));
    };
    const busyRatio = await shown('busy');
    const calmRatio = await shown('calm');
    assert.ok(busyRatio > calmRatio && busyRatio > 0, `the admin page shows busy ${busyRatio} above calm ${calmRatio}`);
    await admin.close();
    await throttled.close();
    await calm.close();
  });

  it('passes the accessibility audit on every page (no serious or critical violations) and fits a phone screen', () => {
    assert.deepEqual(a11y, []);
  });
});
