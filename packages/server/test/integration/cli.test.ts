/** The `glasscast` command as a user runs it: first start prints the OBS settings; bad flags fail clearly. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';
import { HERE, linkedNamespace } from '../support/netns.js';
import { waitUntil } from '../support/wait.js';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const run = (args: string[]): ReturnType<typeof spawnSync> => spawnSync(process.execPath, ['--import', 'tsx', CLI, ...args], { encoding: 'utf8', timeout: 30_000 });

describe('glasscast command', { timeout: 60_000 }, () => {
  it('refuses an invalid flag with a sentence and exit code 1', () => {
    const r = run(['--http-port', 'abc']);
    assert.equal(r.status, 1);
    assert.match(String(r.stderr), /glasscast: --http-port: "abc" is not a number/);
  });

  it('creates a stream with a key on first start, prints OBS settings, keeps the key on the next start, and stops on SIGTERM', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-cli-'));
    try {
      const start = async (): Promise<string> => {
        const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--host', '127.0.0.1', '--http-port', '0', '--webrtc-tcp-port', '0', '--rtmp-port', '0', '--srt-port', '0', '--data-dir', dir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '';
        child.stdout.on('data', (d: Buffer) => (out += d.toString()));
        const deadline = Date.now() + 20_000;
        while (!out.includes('Glasscast is running') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
        child.kill('SIGTERM');
        const [code] = (await once(child, 'exit')) as [number | null];
        assert.equal(code, 0, 'exits cleanly on SIGTERM');
        return out;
      };
      const first = await start();
      const key = /Stream key: (\S+)/.exec(first)?.[1];
      assert.ok(key && key.length >= 32, first);
      assert.match(first, /Server: +rtmp:\/\/127\.0\.0\.1:[1-9]\d*\/live/, 'prints the bound RTMP port');
      assert.match(first, /SRT: Server srt:\/\/127\.0\.0\.1:[1-9]\d*,/, 'prints the bound SRT port');
      assert.match(first, /Watch: +http:\/\/127\.0\.0\.1:[1-9]\d*\/watch\/main/, 'prints the bound HTTP port');
      const second = await start();
      assert.doesNotMatch(second, /Stream key/, 'the key is printed only when created');
      const listed = run(['streams', '--data-dir', dir]);
      assert.match(String(listed.stdout), new RegExp(`key: +${key}`));
      assert.match(first, /^ {2}API token: {2}gcs_[0-9a-f]{12}_\S{32}$/m, 'the admin API token is printed beside the key');
      assert.doesNotMatch(second, /API token/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('manages streams and API keys on the data directory while the server runs, and the server uses them at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-cli-'));
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--host', '127.0.0.1', '--http-port', '0', '--webrtc-tcp-port', '0', '--rtmp-port', '0', '--srt-port', '0', '--data-dir', dir, '--log-level', 'warn', '--ladder', 'none'], { stdio: ['ignore', 'pipe', 'pipe'] });
    try {
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      const deadline = Date.now() + 20_000;
      while (!out.includes('Glasscast is running') && Date.now() < deadline && child.exitCode === null) await new Promise((r) => setTimeout(r, 100));
      const base = /Watch: +(http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;

      const created = run(['streams', 'create', 'talk', '--visibility', 'unlisted', '--data-dir', dir]);
      assert.equal(created.status, 0, String(created.stderr));
      const key = /key: +(\S+)/.exec(String(created.stdout))![1]!;
      assert.match(String(created.stdout), /talk {2}\(unlisted\)/);
      assert.equal(run(['streams', 'create', 'talk', '--data-dir', dir]).status, 1, 'a taken name is refused');

      const made = run(['api-keys', 'create', '--name', 'ci', '--scopes', 'streams:read', '--data-dir', dir]);
      assert.equal(made.status, 0, String(made.stderr));
      const token = /API token: +(\S+)/.exec(String(made.stdout))![1]!;
      const id = /^([0-9a-f]{12})/.exec(String(made.stdout))![1]!;
      // The running server sees both: the new key reads the new stream's key.
      const shown = (await (await fetch(`${base}/api/v1/streams/talk/key`, { headers: { authorization: `Bearer ${token}` } })).json()) as { key: string };
      assert.equal(shown.key, key);

      const rotated = run(['streams', 'rotate-key', 'talk', '--grace', '0', '--data-dir', dir]);
      assert.equal(rotated.status, 0);
      assert.notEqual(/key: +(\S+)/.exec(String(rotated.stdout))![1], key);
      assert.match(String(run(['api-keys', 'list', '--data-dir', dir]).stdout), /ci +scopes: streams:read/);
      assert.equal(run(['api-keys', 'revoke', id, '--data-dir', dir]).status, 0);
      // The server remembers a verified key for a second; a revocation from another process takes effect within it.
      await waitUntil('the revoked key to stop', async () => (await fetch(`${base}/api/v1/streams/talk/key`, { headers: { authorization: `Bearer ${token}` } })).status === 401, 3000, 100);
      assert.equal(run(['streams', 'delete', 'talk', '--data-dir', dir]).status, 0);
      assert.equal((await fetch(`${base}/api/v1/streams/talk`)).status, 200, 'status of an unknown stream is offline, not an error');
      assert.doesNotMatch(String(run(['streams', 'list', '--data-dir', dir]).stdout), /talk/);
    } finally {
      child.kill('SIGTERM');
      await once(child, 'exit');
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('on every interface, prints links with the LAN address (not the host name) and the WebRTC ports to forward', { skip: process.env['GLASSCAST_TEST_NETNS'] === '1' ? false : 'needs a network namespace of its own (run as root via npm test)' }, async () => {
    // The linked namespace gives this one a LAN-like interface (10.203.0.1) beside loopback.
    const ns = await linkedNamespace();
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-cli-'));
    try {
      const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--host', '0.0.0.0', '--http-port', '0', '--webrtc-tcp-port', '0', '--rtmp-port', '0', '--srt-port', '0', '--data-dir', dir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      await waitUntil('the start banner', () => out.includes('Test a network'), 20_000, 100).finally(() => child.kill('SIGTERM'));
      await once(child, 'exit');
      const lan = HERE.replace(/\./g, '\\.');
      assert.match(out, new RegExp(`Watch: +http://${lan}:[1-9]\\d*/watch/main`), out);
      assert.match(out, new RegExp(`Server: +rtmp://${lan}:[1-9]\\d*/live`));
      assert.match(out, /WebRTC: +UDP 40000–400\d\d and TCP [1-9]\d* \(forward them/);
      assert.match(out, new RegExp(`Test a network: http://${lan}:[1-9]\\d*/diagnostics`));
    } finally {
      ns.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
