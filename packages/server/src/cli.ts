#!/usr/bin/env node
/** The `glasscast` command: `glasscast [serve|streams] [--flags]` (see `glasscast --help`). */
import { hostname } from 'node:os';
import { GlasscastError } from './core/errors.js';
import { helpText, loadConfig, parseArgs, type GlasscastConfig } from './config/config.js';
import { startGlasscast } from './app.js';
import { createLogger } from './observability/logger.js';
import { openDatabase } from './store/database.js';
import { StreamStore } from './store/stream-store.js';

/** Links as a user types them; `ports` are the bound ports (they differ from the config when it says 0). */
function publicBase(config: GlasscastConfig, ports = { http: config.httpPort, rtmp: config.rtmpPort }): { http: string; rtmp: string } {
  const host = config.host === '0.0.0.0' || config.host === '::' ? hostname() : config.host;
  return {
    http: config.publicUrl?.replace(/\/+$/, '') ?? `http://${host}:${ports.http}`,
    rtmp: `rtmp://${config.publicUrl ? new URL(config.publicUrl).hostname : host}:${ports.rtmp}/live`,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(helpText() + '\n');
    return;
  }
  const config = loadConfig(args);
  const command = args.command ?? 'serve';
  if (command === 'streams') {
    const db = await openDatabase(config.dataDir);
    const base = publicBase(config);
    for (const s of await new StreamStore(db).list()) {
      process.stdout.write(`${s.name}\n  server: ${base.rtmp}\n  key:    ${s.key}\n  watch:  ${base.http}/watch/${s.name}\n`);
    }
    await db.destroy();
    return;
  }
  if (command !== 'serve') throw new GlasscastError('CONFIG_INVALID', `unknown command "${command}" (see glasscast --help)`);

  const log = createLogger(config.logLevel);
  const app = await startGlasscast(config, log);
  const base = publicBase(config, app.ports);
  const lines = ['', 'Glasscast is running.'];
  if (app.createdStream) {
    lines.push(
      `  Created stream "${app.createdStream.name}" (saved in ${config.dataDir}).`,
      `  OBS → Settings → Stream → Service: Custom`,
      `    Server:     ${base.rtmp}`,
      `    Stream key: ${app.createdStream.key}`,
      `  Watch:        ${base.http}/watch/${app.createdStream.name}`,
    );
  } else if (config.publishAuth === 'open') {
    lines.push(`  OPEN publishing (development only): any key publishes, e.g. ${base.rtmp}/test → ${base.http}/watch/test`);
  } else {
    lines.push(`  RTMP server: ${base.rtmp}   (keys: glasscast streams --data-dir ${config.dataDir})`, `  Watch:       ${base.http}/watch/<name>`);
  }
  process.stdout.write(lines.join('\n') + '\n\n');

  let stopping = false;
  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    app.close().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((err: unknown) => {
  if (err instanceof GlasscastError) {
    process.stderr.write(`glasscast: ${err.message}\n`);
  } else {
    process.stderr.write(`glasscast: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
});
