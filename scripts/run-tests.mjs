// Runs the test files of the given tiers (unit, integration, e2e; default all) in one `node --test` run, so
// the runner prints one summary. Node 20's --test takes no globs, hence this file list.
import { spawnSync } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const tiers = process.argv.slice(2).length ? process.argv.slice(2) : ['unit', 'integration', 'e2e'];
const files = [];
const walk = (dir) => {
  for (const name of readdirSync(dir).sort()) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.test.ts')) files.push(path);
  }
};
for (const pkg of readdirSync('packages').sort()) {
  for (const tier of tiers) {
    const dir = join('packages', pkg, 'test', tier);
    try {
      if (statSync(dir).isDirectory()) walk(dir);
    } catch {
      // this package has no tests of that tier
    }
  }
}
if (files.length === 0) {
  console.error(`no test files for tiers ${tiers.join(', ')}`);
  process.exit(1);
}
// Integration and end-to-end tests run real ffmpeg and Chromium: one file at a time on a 2-core machine.
// --test-force-exit: a native library's threads (WebRTC) must not keep a finished test file's process alive.
const args = ['--import', 'tsx', '--test', '--test-concurrency=1', ...files];
// As root, run everything in a private network namespace whose only interface is loopback, so no test (above
// all WebRTC, whose ICE gathers every interface) can send a packet off this machine (DESIGN.md).
const has = (cmd) => spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
const isolate = process.getuid?.() === 0 && !process.env.GLASSCAST_NO_NETNS && has('unshare') && has('ip');
const result = isolate
  ? spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...args], {
      stdio: 'inherit',
      env: { ...process.env, GLASSCAST_TEST_NETNS: '1' },
    })
  : spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(result.status ?? 1);
