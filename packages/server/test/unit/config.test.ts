import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DEFAULT_CONFIG, loadConfig, parseArgs } from '../../src/config/config.js';
import { GlasscastError } from '../../src/core/errors.js';

const fails = (fn: () => unknown, pattern: RegExp): void => {
  assert.throws(fn, (err: unknown) => err instanceof GlasscastError && err.code === 'CONFIG_INVALID' && pattern.test(err.message));
};

describe('configuration', () => {
  it('uses the embedded defaults with no file, environment or flags', () => {
    assert.deepEqual(loadConfig(parseArgs([]), {}), DEFAULT_CONFIG);
  });

  it('layers file < environment < flags', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-config-'));
    try {
      const file = join(dir, 'glasscast.json');
      writeFileSync(file, JSON.stringify({ httpPort: 9000, rtmpPort: 1936, logLevel: 'debug' }));
      const config = loadConfig(parseArgs(['--config', file, '--http-port=9100']), { GLASSCAST_RTMP_PORT: '1937' });
      assert.deepEqual([config.httpPort, config.rtmpPort, config.logLevel], [9100, 1937, 'debug']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the setting, its source and the problem', () => {
    fails(() => loadConfig(parseArgs(['--http-port', 'abc']), {}), /--http-port: "abc" is not a number/);
    fails(() => loadConfig(parseArgs(['--http-port', '70000']), {}), /httpPort \(--http-port\)/);
    fails(() => loadConfig(parseArgs([]), { GLASSCAST_PUBLISH_AUTH: 'maybe' }), /publishAuth \(GLASSCAST_PUBLISH_AUTH\)/);
    fails(() => parseArgs(['--nope', '1']), /unknown flag --nope/);
    fails(() => parseArgs(['--http-port']), /--http-port needs a value/);
    fails(() => loadConfig(parseArgs(['--part-target-ms', '900']), {}), /at most a third of segmentTargetMs/);
    fails(() => loadConfig(parseArgs(['--config', '/nonexistent/glasscast.json']), {}), /config file \/nonexistent/);
  });

  it('rejects unknown keys in a config file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'glasscast-config-'));
    try {
      const file = join(dir, 'bad.json');
      writeFileSync(file, JSON.stringify({ htpPort: 1 }));
      fails(() => loadConfig(parseArgs(['--config', file]), {}), /unknown setting\(s\) htpPort/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
