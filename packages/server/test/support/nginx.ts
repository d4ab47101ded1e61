/**
 * Runs Debian's nginx with the documented LL-HLS cache tier (deploy/nginx/glasscast-llhls.conf) in front of a
 * Glasscast on loopback: the file as shipped, with its origin address, listen port and cache directory replaced,
 * inside a minimal main configuration of the test's own (workers, pid, logs and temp files in a temp directory).
 * Started by the caller, stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { waitUntil } from './wait.js';

export const NGINX = process.env['NGINX_PATH'] ?? '/usr/sbin/nginx';
export const NGINX_CONF = fileURLToPath(new URL('../../../../deploy/nginx/glasscast-llhls.conf', import.meta.url));

export interface NginxTier {
  /** http://127.0.0.1:<port> */
  url: string;
  /** Access log lines so far: `<request_uri> <upstream_cache_status> <status> <request_time>` each. */
  accessLog(): string[];
  stop(): Promise<void>;
}

/** Starts nginx listening on `listenPort` with `originPort` (Glasscast's HTTP port) as its origin. */
export async function startNginxTier(originPort: number, listenPort: number): Promise<NginxTier> {
  const dir = mkdtempSync(join(tmpdir(), 'glasscast-nginx-'));
  const site = readFileSync(NGINX_CONF, 'utf8')
    .replace('server 127.0.0.1:8080;', `server 127.0.0.1:${originPort};`)
    .replace(/listen 80;/, `listen 127.0.0.1:${listenPort};`)
    .replace('/var/cache/nginx/glasscast', join(dir, 'cache'))
    .replace(/proxy_cache_lock_timeout \S+;/, process.env['NGINX_LOCK_TIMEOUT'] ? `proxy_cache_lock_timeout ${process.env['NGINX_LOCK_TIMEOUT']};` : '$&');
  writeFileSync(join(dir, 'glasscast-llhls.conf'), site);
  const log = join(dir, 'access.log');
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;
${process.getuid?.() === 0 ? 'user root;\n' : ''}worker_processes 2;
pid ${join(dir, 'nginx.pid')};
error_log ${join(dir, 'error.log')} warn;
events { worker_connections 8192; }
http {
  client_body_temp_path ${join(dir, 'body')};
  proxy_temp_path ${join(dir, 'proxy')};
  fastcgi_temp_path ${join(dir, 'fastcgi')};
  uwsgi_temp_path ${join(dir, 'uwsgi')};
  scgi_temp_path ${join(dir, 'scgi')};
  log_format tier '$request_uri $upstream_cache_status $status $request_time';
  access_log ${log} tier buffer=64k flush=1s;
  include ${join(dir, 'glasscast-llhls.conf')};
}
`,
  );
  const child: ChildProcess = spawn(NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = `http://127.0.0.1:${listenPort}`;
  try {
    await waitUntil('nginx to listen', async () => child.exitCode === null && (await fetch(`${url}/healthz`).catch(() => undefined))?.ok, 10_000, 50);
  } catch (err) {
    child.kill('SIGKILL');
    const errorLog = (() => {
      try {
        return readFileSync(join(dir, 'error.log'), 'utf8');
      } catch {
        return '';
      }
    })();
    rmSync(dir, { recursive: true, force: true });
    throw new Error(
      `${String(err)}; nginx: ${stderr}${errorLog}`,
      { cause: err },
    );
  }
  return {
    url,
    accessLog: () => {
      try {
        return readFileSync(log, 'utf8').split('\n').filter((l) => l.length > 0);
      } catch {
        return [];
      }
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGQUIT'); // graceful: flushes the access log
        await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Of access log lines, how the /hls/ requests were answered: from the cache, and how many went to the origin, per URI. */
export function cacheFigures(lines: readonly string[]): { requests: number; hits: number; originRequests: number; objects: number } {
  let requests = 0;
  let hits = 0;
  let originRequests = 0;
  const objects = new Set<string>();
  for (const line of lines) {
    const [uri, cache] = line.split(' ');
    if (!uri?.startsWith('/hls/')) continue;
    requests++;
    if (cache === 'HIT') hits++;
    else if (cache !== '-') originRequests++;
    objects.add(uri);
  }
  return { requests, hits, originRequests, objects: objects.size };
}
