/** Helpers shared by the benchmarks. */
import { spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

/** A TCP port free on 127.0.0.1 right now (for a server started as a child process). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * Re-runs this benchmark inside a private network namespace whose only interface is loopback (DESIGN.md: WebRTC
 * gathers every interface, so it must not see any other), then exits with its status. No-op when already inside.
 */
export function runInLoopbackNamespace(): void {
  if (process.env['GLASSCAST_TEST_NETNS'] === '1') return;
  const r = spawnSync('unshare', ['-n', '--', 'sh', '-c', 'ip link set lo up && exec "$0" "$@"', process.execPath, ...process.execArgv, ...process.argv.slice(1)], {
    stdio: 'inherit',
    env: { ...process.env, GLASSCAST_TEST_NETNS: '1' },
  });
  process.exit(r.status ?? 1);
}

/** CPU time a process has used, in clock ticks (USER_HZ, 100 a second): utime + stime from /proc. */
export function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** Ends a benchmark's server (SIGTERM, waiting for its exit) and removes its directory. */
export async function endServer(server: ChildProcess, dir: string): Promise<void> {
  if (server.exitCode === null && server.signalCode === null) {
    server.kill('SIGTERM');
    await new Promise((r) => server.once('exit', r));
  }
  rmSync(dir, { recursive: true, force: true });
}
