/**
 * A venue's LAN made by the test itself: a bridge in the test's namespace (the server's side, {@link SERVER}) and
 * `count` viewer namespaces, each linked to the bridge by a veth pair (10.204.0.11, .12, …). Browsers in two
 * viewer namespaces reach each other over the bridge (a loopback-only namespace gives Chromium no candidates for
 * another browser). `isolateViewers()` makes the bridge drop traffic between viewers (a Wi-Fi access point's client
 * isolation) with nftables, leaving viewer ↔ server traffic alone. Needs root. Only these addresses are ever used.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM_PATH } from './browser.js';

/** The server's address on the LAN (the bridge). */
export const SERVER = '10.204.0.1';
const BRIDGE = 'gcvbr0';

/** The LAN. `close()` ends every namespace and link it made. */
export interface VenueLan {
  /** Address of viewer `i` (0-based). */
  viewerAddress(i: number): string;
  /** An executable that runs Chromium in viewer `i`'s namespace (playwright's `executablePath`). */
  chromium(i: number): string;
  /**
   * Drops what the bridge forwards from one viewer to another (nftables, bridge family): everything, as a Wi-Fi
   * access point with client isolation does, or only UDP (`udpOnly`).
   */
  isolateViewers(udpOnly?: boolean): void;
  close(): void;
}

function run(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
}

/** Makes the bridge and `count` viewer namespaces (≤ 50). Throws when not permitted (not root). */
export async function venueLan(count: number): Promise<VenueLan> {
  const holders: ChildProcess[] = [];
  const wrapperDir = mkdtempSync(join(tmpdir(), 'glasscast-venue-'));
  const cleanup = (): void => {
    for (const h of holders) h.kill('SIGKILL');
    for (let i = 0; i < count; i++) spawnSync('ip', ['link', 'del', `gcv${i}`]);
    spawnSync('ip', ['link', 'del', BRIDGE]);
    spawnSync('nft', ['delete', 'table', 'bridge', 'glasscast_venue']);
    rmSync(wrapperDir, { recursive: true, force: true });
  };
  try {
    spawnSync('ip', ['link', 'del', BRIDGE]); // a leftover from a killed run
    run(['ip', 'link', 'add', BRIDGE, 'type', 'bridge']);
    run(['ip', 'addr', 'add', `${SERVER}/24`, 'dev', BRIDGE]);
    run(['ip', 'link', 'set', BRIDGE, 'up']);
    for (let i = 0; i < count; i++) {
      const holder = spawn('unshare', ['-n', 'sleep', '3600'], { stdio: 'ignore' });
      holders.push(holder);
      await new Promise((r) => setTimeout(r, 100));
      const ns = `/proc/${holder.pid}/ns/net`;
      spawnSync('ip', ['link', 'del', `gcv${i}`]);
      run(['ip', 'link', 'add', `gcv${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      run(['ip', 'link', 'set', `gcv${i}`, 'master', BRIDGE]);
      run(['ip', 'link', 'set', `gcv${i}`, 'up']);
      run(['nsenter', `--net=${ns}`, 'ip', 'link', 'set', 'lo', 'up']);
      run(['nsenter', `--net=${ns}`, 'ip', 'addr', 'add', `10.204.0.${11 + i}/24`, 'dev', 'eth0']);
      run(['nsenter', `--net=${ns}`, 'ip', 'link', 'set', 'eth0', 'up']);
      const path = join(wrapperDir, `chromium-${i}`);
      writeFileSync(path, `#!/bin/sh\nexec nsenter --net=${ns} ${CHROMIUM_PATH} "$@"\n`);
      chmodSync(path, 0o755);
    }
  } catch (err) {
    cleanup();
    throw err;
  }
  return {
    viewerAddress: (i) => `10.204.0.${11 + i}`,
    chromium: (i) => join(wrapperDir, `chromium-${i}`),
    isolateViewers(udpOnly = false) {
      const ruleset = [
        'table bridge glasscast_venue',
        'delete table bridge glasscast_venue',
        'table bridge glasscast_venue {',
        '  chain forward {',
        '    type filter hook forward priority 0; policy accept;',
        `    ip saddr 10.204.0.0/24 ip daddr 10.204.0.0/24 ip daddr != ${SERVER} ip saddr != ${SERVER}${udpOnly ? ' meta l4proto udp' : ''} drop`,
        '  }',
        '}',
        '',
      ].join('\n');
      const r = spawnSync('nft', ['-f', '-'], { input: ruleset, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
    },
    close: cleanup,
  };
}
