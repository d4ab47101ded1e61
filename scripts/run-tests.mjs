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
const result = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(result.status ?? 1);
