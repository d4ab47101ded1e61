/**
 * A second network namespace made by the test itself, linked to the test's own namespace by a veth pair
 * (10.203.0.1 here, 10.203.0.2 there), whose outgoing side can be given a bottleneck (htb: a rate and a short
 * queue, so excess traffic queues and then drops). Tests put a server there and watch it from here, so the
 * viewer's network can be made bad while the publisher (inside, on its loopback) is not touched. Needs root
 * (the test runner's namespace). Only addresses inside these two namespaces are ever used.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHROMIUM_PATH } from './browser.js';

/** Address of the test's side of the link. */
export const HERE = '10.203.0.1';
/** Address of the other namespace's side. */
export const THERE = '10.203.0.2';

/** A namespace holder plus helpers. `close()` ends it (and everything still running in it that we started). */
export interface LinkedNamespace {
  /** Runs `command` inside the namespace. */
  spawn(command: string, args: string[], options?: { stdio?: 'ignore' | 'pipe' }): ChildProcess;
  /** Limits traffic leaving the namespace towards the test to `kbit` kbit/s with a `packets`-long queue. */
  bottleneck(kbit: number, packets: number): void;
  /**
   * Replaces the namespace's firewall (nftables): traffic leaving it towards the test loses every UDP datagram
   * when `udp` is false, and every TCP segment to a port not in `tcpPorts` when that is given (a network that
   * lets only web traffic out). `{ udp: true }` opens everything again.
   */
  firewall(rules: { udp: boolean; tcpPorts?: number[] }): void;
  /** An executable that runs Chromium inside the namespace (playwright's `executablePath`): a browser on a bad network. */
  chromium(): string;
  close(): void;
}

function run(args: string[]): void {
  const r = spawnSync(args[0]!, args.slice(1), { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')}: ${r.stderr}`);
}

/** Makes the namespace and the link. Throws when not permitted (not root, no veth). */
export async function linkedNamespace(): Promise<LinkedNamespace> {
  const holder = spawn('unshare', ['-n', 'sleep', '3600'], { stdio: 'ignore' });
  await new Promise((r) => setTimeout(r, 200));
  const ns = `/proc/${holder.pid}/ns/net`;
  const inside = (args: string[]): string[] => ['nsenter', `--net=${ns}`, ...args];
  const children: ChildProcess[] = [];
  let wrapperDir: string | undefined;
  try {
    spawnSync('ip', ['link', 'del', 'gcab0']); // a leftover from a killed run
    run(['ip', 'link', 'add', 'gcab0', 'type', 'veth', 'peer', 'name', 'gcab1', 'netns', ns]);
    run(['ip', 'addr', 'add', `${HERE}/30`, 'dev', 'gcab0']);
    run(['ip', 'link', 'set', 'gcab0', 'up']);
    run(inside(['ip', 'link', 'set', 'lo', 'up']));
    run(inside(['ip', 'addr', 'add', `${THERE}/30`, 'dev', 'gcab1']));
    run(inside(['ip', 'link', 'set', 'gcab1', 'up']));
  } catch (err) {
    holder.kill('SIGKILL');
    throw err;
  }
  return {
    spawn(command, args, options = {}) {
      const child = spawn('nsenter', [`--net=${ns}`, command, ...args], { stdio: options.stdio === 'pipe' ? ['ignore', 'pipe', 'pipe'] : 'ignore' });
      children.push(child);
      return child;
    },
    bottleneck(kbit, packets) {
      spawnSync('nsenter', [`--net=${ns}`, 'tc', 'qdisc', 'del', 'dev', 'gcab1', 'root']);
      run(inside(['tc', 'qdisc', 'add', 'dev', 'gcab1', 'root', 'handle', '1:', 'htb', 'default', '10']));
      run(inside(['tc', 'class', 'add', 'dev', 'gcab1', 'parent', '1:', 'classid', '1:10', 'htb', 'rate', `${kbit}kbit`, 'ceil', `${kbit}kbit`]));
      run(inside(['tc', 'qdisc', 'add', 'dev', 'gcab1', 'parent', '1:10', 'handle', '10:', 'pfifo', 'limit', String(packets)]));
    },
    firewall(rules) {
      const drops = [
        ...(rules.udp ? [] : ['oifname "gcab1" meta l4proto udp drop']),
        ...(rules.tcpPorts ? [`oifname "gcab1" tcp dport != { ${rules.tcpPorts.join(', ')} } drop`] : []),
      ];
      const ruleset = ['table inet glasscast_test', 'delete table inet glasscast_test', 'table inet glasscast_test {', '  chain output {', '    type filter hook output priority 0; policy accept;', ...drops.map((d) => `    ${d}`), '  }', '}', ''].join('\n');
      const r = spawnSync('nsenter', [`--net=${ns}`, 'nft', '-f', '-'], { input: ruleset, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
    },
    chromium() {
      wrapperDir ??= mkdtempSync(join(tmpdir(), 'glasscast-netns-'));
      const path = join(wrapperDir, 'chromium');
      writeFileSync(path, `#!/bin/sh\nexec nsenter --net=${ns} ${CHROMIUM_PATH} "$@"\n`);
      chmodSync(path, 0o755);
      return path;
    },
    close() {
      for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
      holder.kill('SIGKILL');
      spawnSync('ip', ['link', 'del', 'gcab0']);
      if (wrapperDir) rmSync(wrapperDir, { recursive: true, force: true });
    },
  };
}
