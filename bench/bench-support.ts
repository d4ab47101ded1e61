/** Helpers shared by the benchmarks. */
import { spawnSync } from 'node:child_process';
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
