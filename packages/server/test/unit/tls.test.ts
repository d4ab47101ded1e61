/**
 * HTTPS material (http/tls.ts): a certificate and key are checked to belong together with a sentence when they do
 * not; the self-signed certificate is made once for the LAN addresses and reused; a pair replaced on disk is
 * picked up by the watcher, a half-written one is not.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { GlasscastError } from '../../src/core/errors.js';
import { silentLogger } from '../../src/core/logger.js';
import { loadConfig, parseArgs } from '../../src/config/config.js';
import { readTls, selfSignedTls, watchTls, type TlsMaterial } from '../../src/http/tls.js';
import { makeTestCa } from '../support/test-ca.js';
import { waitUntil } from '../support/wait.js';

describe('TLS material', () => {
  const dir = mkdtempSync(join(tmpdir(), 'glasscast-tls-unit-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('refuses a missing file, a non-PEM file and a key of another certificate, in a sentence', async () => {
    const ca = await makeTestCa();
    const a = await ca.issue(['127.0.0.1']);
    const b = await ca.issue(['127.0.0.1']);
    writeFileSync(join(dir, 'a.crt'), a.chain);
    writeFileSync(join(dir, 'b.key'), b.key);
    writeFileSync(join(dir, 'junk.crt'), 'hello');
    assert.throws(() => readTls(join(dir, 'none.crt'), join(dir, 'b.key')), (e: unknown) => e instanceof GlasscastError && e.code === 'CONFIG_INVALID' && /cannot read .*none\.crt/.test(e.message));
    assert.throws(() => readTls(join(dir, 'junk.crt'), join(dir, 'b.key')), /holds no PEM certificate/);
    assert.throws(() => readTls(join(dir, 'a.crt'), join(dir, 'b.key')), /does not belong to the certificate/);
    assert.throws(() => loadConfig(parseArgs(['--tls-cert', join(dir, 'a.crt')]), {}), /tlsCert and tlsKey go together/);
  });

  it('makes a self-signed certificate for the LAN addresses once, then reuses it', async () => {
    const first = await selfSignedTls(dir, ['192.0.2.7']);
    const names = new X509Certificate(first.cert).subjectAltName ?? '';
    assert.match(names, /IP Address:192\.0\.2\.7/);
    assert.match(names, /DNS:localhost/);
    assert.equal(first.source, 'self-signed');
    assert.equal((await selfSignedTls(dir, ['192.0.2.7'])).fingerprint256, first.fingerprint256, 'reused');
    assert.notEqual((await selfSignedTls(dir, ['192.0.2.8'])).fingerprint256, first.fingerprint256, 'made anew for a new address');
  });

  it('the watcher applies a replaced pair, and skips a half-written one', async () => {
    const ca = await makeTestCa();
    const one = await ca.issue(['127.0.0.1']);
    const two = await ca.issue(['127.0.0.1']);
    const cert = join(dir, 'w.crt');
    const key = join(dir, 'w.key');
    writeFileSync(cert, one.chain);
    writeFileSync(key, one.key);
    const applied: TlsMaterial[] = [];
    const stop = watchTls(readTls(cert, key), (next) => applied.push(next), silentLogger);
    try {
      writeFileSync(key, two.key); // the key first: the pair does not match yet
      await new Promise((r) => setTimeout(r, 2500));
      assert.equal(applied.length, 0, 'a mismatched pair is not applied');
      writeFileSync(cert, two.chain);
      const next = await waitUntil('the new pair to be applied', () => applied[0], 5000, 100);
      assert.equal(next.fingerprint256, new X509Certificate(two.chain).fingerprint256);
    } finally {
      stop();
    }
  });
});
