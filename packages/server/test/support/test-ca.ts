/**
 * A certificate authority made for one test run (selfsigned over WebCrypto), and server certificates it issues:
 * HTTPS as a real deployment has it (a chain to a CA the browser trusts), without touching the system's trust
 * store. Chromium trusts it through `--ignore-certificate-errors-spki-list` with the CA's key hash
 * ({@link TestCa.spkiHash}), which accepts a chain only when one of its certificates carries that key.
 */
import { createHash, createPublicKey } from 'node:crypto';
import { generate } from 'selfsigned';

/** A test CA. */
export interface TestCa {
  /** PEM certificate of the CA. */
  cert: string;
  /** base64 SHA-256 of the CA's SubjectPublicKeyInfo (Chromium's SPKI list format). */
  spkiHash: string;
  /** Issues a server certificate for `ips` (and localhost): its PEM chain (leaf, then the CA) and key. */
  issue(ips: string[], validDays?: number): Promise<{ chain: string; key: string }>;
}

/** Makes a fresh CA (EC P-256, valid a day). */
export async function makeTestCa(): Promise<TestCa> {
  const now = new Date(Date.now() - 60_000);
  const ca = await generate([{ name: 'commonName', value: 'Glasscast test CA' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notBeforeDate: now,
    notAfterDate: new Date(now.getTime() + 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const spki = createPublicKey(ca.cert).export({ type: 'spki', format: 'der' });
  return {
    cert: ca.cert,
    spkiHash: createHash('sha256').update(spki).digest('base64'),
    async issue(ips, validDays = 1) {
      const leaf = await generate([{ name: 'commonName', value: 'glasscast.test' }], {
        keyType: 'ec',
        algorithm: 'sha256',
        notBeforeDate: now,
        notAfterDate: new Date(now.getTime() + validDays * 86_400_000),
        ca: { key: ca.private, cert: ca.cert },
        extensions: [
          { name: 'basicConstraints', cA: false },
          { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
          { name: 'extKeyUsage', serverAuth: true },
          { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, ...ips.map((ip) => ({ type: 7 as const, ip }))] },
        ],
      });
      return { chain: `${leaf.cert.trim()}\n${ca.cert.trim()}\n`, key: leaf.private };
    },
  };
}
