/** The `glasscast` command as a user runs it: first start prints the OBS settings; bad flags fail clearly. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'node:test';

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
        const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--host', '127.0.0.1', '--http-port', '0', '--rtmp-port', '0', '--data-dir', dir, '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'pipe'] });
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
      assert.match(first, /Watch: +http:\/\/127\.0\.0\.1:[1-9]\d*\/watch\/main/, 'prints the bound HTTP port');
      const second = await start();
      assert.doesNotMatch(second, /Stream key/, 'the key is printed only when created');
      const listed = run(['streams', '--data-dir', dir]);
      assert.match(String(listed.stdout), new RegExp(`key: +${key}`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
