/**
 * HTTPS for the web server: a certificate and key from PEM files (`--tls-cert`/`--tls-key`, reloaded when either
 * file changes, without dropping a connection or a stream), or, with `--tls-self-signed on` and no files, a
 * self-signed one made once in the data directory for the machine's names and LAN addresses (for a LAN where a
 * browser needs HTTPS to use the camera; its SHA-256 fingerprint is printed so users can check what they accept).
 * Certificates come from `selfsigned` (X.509 over WebCrypto); contexts from node:tls.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, unwatchFile, watchFile, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { generate } from 'selfsigned';
import { GlasscastError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** A certificate in use. */
export interface TlsMaterial {
  /** PEM: the certificate (and its chain, if the file has one). */
  cert: string;
  /** PEM private key. */
  key: string;
  /** `files` (given by the operator) or `self-signed` (made here). */
  source: 'files' | 'self-signed';
  /** SHA-256 fingerprint of the leaf certificate, `AB:CD:…`. */
  fingerprint256: string;
  /** Expiry of the leaf certificate, Unix ms. */
  validTo: number;
  /** Where it was read from. */
  certPath: string;
  keyPath: string;
}

/** How often the certificate files are checked for a change, ms. */
const WATCH_INTERVAL_MS = 1000;
/** A self-signed certificate is made anew this long before it expires, ms. */
const RENEW_BEFORE_MS = 30 * 86_400_000;

/**
 * Reads and checks a certificate and key (the key must match the certificate).
 * @throws GlasscastError CONFIG_INVALID with a sentence when a file is missing, not PEM, or the pair does not match.
 */
export function readTls(certPath: string, keyPath: string, source: TlsMaterial['source'] = 'files'): TlsMaterial {
  let cert: string;
  let key: string;
  try {
    cert = readFileSync(certPath, 'utf8');
    key = readFileSync(keyPath, 'utf8');
  } catch (err) {
    throw new GlasscastError('CONFIG_INVALID', `TLS: cannot read ${(err as NodeJS.ErrnoException).path ?? certPath}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch {
    throw new GlasscastError('CONFIG_INVALID', `TLS: ${certPath} holds no PEM certificate`);
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(key))) throw new Error('mismatch');
  } catch (err) {
    throw new GlasscastError('CONFIG_INVALID', (err as Error).message === 'mismatch' ? `TLS: the key in ${keyPath} does not belong to the certificate in ${certPath}` : `TLS: ${keyPath} holds no usable PEM private key`);
  }
  return { cert, key, source, fingerprint256: leaf.fingerprint256, validTo: Date.parse(leaf.validTo), certPath, keyPath };
}

/** A secure context for `material` (for `server.setSecureContext` and new listeners). */
export function secureContextOptions(material: TlsMaterial): { cert: string; key: string } {
  return { cert: material.cert, key: material.key };
}

/**
 * The self-signed certificate in `dataDir/tls/`, made when missing or within 30 days of expiring: EC P-256,
 * SHA-256, valid a year, for `localhost`, the host name, 127.0.0.1, ::1 and `addresses`.
 */
export async function selfSignedTls(dataDir: string, addresses: readonly string[]): Promise<TlsMaterial> {
  const dir = join(dataDir, 'tls');
  const certPath = join(dir, 'self-signed.crt');
  const keyPath = join(dir, 'self-signed.key');
  if (existsSync(certPath) && existsSync(keyPath)) {
    try {
      const material = readTls(certPath, keyPath, 'self-signed');
      const names = new X509Certificate(material.cert).subjectAltName ?? '';
      if (material.validTo - Date.now() > RENEW_BEFORE_MS && addresses.every((a) => names.includes(a))) return material;
    } catch {
      // unreadable: make a new one
    }
  }
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(notBefore.getTime() + 365 * 86_400_000);
  const ips = [...new Set(['127.0.0.1', '::1', ...addresses])];
  const pems = await generate([{ name: 'commonName', value: `Glasscast on ${hostname()}` }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: notBefore,
    notAfterDate: notAfter,
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 2, value: hostname() }, ...ips.map((ip) => ({ type: 7 as const, ip }))] },
    ],
  });
  mkdirSync(dir, { recursive: true });
  writeFileSync(keyPath, pems.private, { mode: 0o600 });
  writeFileSync(certPath, pems.cert);
  return readTls(certPath, keyPath, 'self-signed');
}

/**
 * Watches the certificate and key files; when either changes and the pair reads and matches, calls `apply` with
 * it (existing connections keep their session; new ones get the new certificate). A half-written pair (the key
 * replaced, the certificate not yet) is skipped until the next change. Returns the function that stops watching.
 */
export function watchTls(material: TlsMaterial, apply: (next: TlsMaterial) => void, log: Logger): () => void {
  let current = material;
  const check = (): void => {
    let next: TlsMaterial;
    try {
      next = readTls(current.certPath, current.keyPath, current.source);
    } catch (err) {
      log.warn({ err: (err as Error).message }, 'TLS certificate changed on disk but cannot be used yet; keeping the current one');
      return;
    }
    if (next.fingerprint256 === current.fingerprint256 && next.key === current.key) return;
    current = next;
    apply(next);
    log.info({ fingerprint256: next.fingerprint256, validTo: new Date(next.validTo).toISOString() }, 'TLS certificate reloaded');
  };
  const listener = (): void => check();
  watchFile(material.certPath, { interval: WATCH_INTERVAL_MS }, listener);
  watchFile(material.keyPath, { interval: WATCH_INTERVAL_MS }, listener);
  return () => {
    unwatchFile(material.certPath, listener);
    unwatchFile(material.keyPath, listener);
  };
}

/** A context made from `material` (throws like node:tls on a bad pair). */
export function secureContext(material: TlsMaterial): SecureContext {
  return createSecureContext(secureContextOptions(material));
}
