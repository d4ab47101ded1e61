#!/usr/bin/env node
/** The `glasscast` command: `glasscast [serve|streams] [--flags]` (see `glasscast --help`). */
import { GlasscastError } from './core/errors.js';
import { helpText, loadConfig, parseArgs, type GlasscastConfig, type ParsedArgs } from './config/config.js';
import { lanAddresses, localHostForLinks, publicBase, startGlasscast, urlHost } from './app.js';
import { srtPublishUrl } from './ingest/srt/srt-stream-id.js';
import { ApiKeyStore } from './store/api-key-store.js';
import { createLogger } from './observability/logger.js';
import { openDatabase } from './store/database.js';
import { StreamStore, type StreamRecord, type Visibility } from './store/stream-store.js';

/** `glasscast streams …`: list, create, rotate-key, delete, on the data directory (server running or not). */
async function streamsCommand(args: ParsedArgs, config: GlasscastConfig): Promise<void> {
  const db = await openDatabase(config.dataDir);
  try {
    const store = new StreamStore(db);
    const base = publicBase(config, { http: config.httpPort, rtmp: config.rtmpPort, srt: config.srtPort }, localHostForLinks());
    const [action = 'list', name] = args.positionals;
    const print = (s: StreamRecord): void => {
      process.stdout.write(`${s.name}${s.visibility === 'public' ? '' : `  (${s.visibility})`}\n  server: ${base.rtmp}\n  key:    ${s.key}\n  srt:    ${srtPublishUrl(base.srt, s.key)}${s.srtPassphrase ? '  (passphrase set)' : ''}\n  watch:  ${base.http}/watch/${s.name}\n`);
      if (s.previousKey) process.stdout.write(`  previous key publishes until ${s.previousKey.expiresAt}\n`);
    };
    const needName = (): string => {
      if (!name) throw new GlasscastError('CONFIG_INVALID', `streams ${action} needs a stream name`);
      return name;
    };
    if (action === 'list') {
      for (const s of await store.list()) print(s);
    } else if (action === 'create') {
      const visibility = args.options.visibility;
      if (visibility !== undefined && !['public', 'unlisted', 'private'].includes(visibility)) throw new GlasscastError('CONFIG_INVALID', '--visibility is public, unlisted or private');
      print(await store.create(needName(), { visibility: visibility as Visibility | undefined, title: args.options.title, description: args.options.description, ladder: args.options.ladder, srtPassphrase: (args.settings.srtPassphrase as string | undefined) || undefined }));
    } else if (action === 'rotate-key') {
      const grace = Number(args.options.grace ?? '300');
      if (!Number.isInteger(grace) || grace < 0) throw new GlasscastError('CONFIG_INVALID', '--grace is a whole number of seconds');
      print(await store.rotateKey(needName(), grace * 1000));
    } else if (action === 'delete') {
      await store.delete(needName());
      process.stdout.write(`deleted ${name} (a running server ends its publisher within a few seconds)\n`);
    } else {
      throw new GlasscastError('CONFIG_INVALID', `unknown action "streams ${action}" (list, create, rotate-key, delete)`);
    }
  } finally {
    await db.destroy();
  }
}

/** `glasscast api-keys …`: create, list, revoke. */
async function apiKeysCommand(args: ParsedArgs, config: GlasscastConfig): Promise<void> {
  const db = await openDatabase(config.dataDir);
  try {
    const keys = new ApiKeyStore(db);
    const [action = 'list', id] = args.positionals;
    if (action === 'list') {
      for (const k of await keys.list()) {
        process.stdout.write(`${k.id}  ${k.name}  scopes: ${k.scopes.join(',')}  created ${k.createdAt}${k.lastUsedAt ? `  last used ${k.lastUsedAt}` : ''}${k.revokedAt ? `  REVOKED ${k.revokedAt}` : ''}\n`);
      }
    } else if (action === 'create') {
      const scopes = (args.options.scopes ?? 'admin').split(',').map((s) => s.trim()).filter(Boolean);
      const k = await keys.create(args.options.name ?? 'created with the CLI', scopes);
      process.stdout.write(`${k.id}  scopes: ${k.scopes.join(',')}\n  API token:  ${k.token}\n  (shown once; only its hash is stored)\n`);
    } else if (action === 'revoke') {
      if (!id) throw new GlasscastError('CONFIG_INVALID', 'api-keys revoke needs a key id (see api-keys list)');
      await keys.revoke(id);
      process.stdout.write(`revoked ${id}\n`);
    } else {
      throw new GlasscastError('CONFIG_INVALID', `unknown action "api-keys ${action}" (list, create, revoke)`);
    }
  } finally {
    await db.destroy();
  }
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    process.stdout.write(helpText() + '\n');
    return;
  }
  const config = loadConfig(args);
  const command = args.command ?? 'serve';
  if (command === 'streams') return streamsCommand(args, config);
  if (command === 'api-keys') return apiKeysCommand(args, config);
  if (command !== 'serve') throw new GlasscastError('CONFIG_INVALID', `unknown command "${command}" (see glasscast --help)`);

  const log = createLogger(config.logLevel);
  const app = await startGlasscast(config, log);
  const base = app.base();
  const lines = ['', 'Glasscast is running.'];
  if (app.createdStream) {
    lines.push(
      `  Created stream "${app.createdStream.name}" (saved in ${config.dataDir}).`,
      `  OBS → Settings → Stream → Service: Custom`,
      `    Server:     ${base.rtmp}`,
      `    Stream key: ${app.createdStream.key}`,
      `    (or SRT: Server ${base.srt}, the same Stream Key)`,
      `  Watch:        ${base.http}/watch/${app.createdStream.name}`,
    );
  }
  if (app.createdApiToken) {
    lines.push(`  API token:  ${app.createdApiToken}`, `              (admin; shown once — only its hash is stored. More: glasscast api-keys create)`);
  }
  if (!app.createdStream && config.publishAuth === 'open') {
    lines.push(`  OPEN publishing (development only): any key publishes, e.g. ${base.rtmp}/test → ${base.http}/watch/test`);
  } else if (!app.createdStream) {
    lines.push(`  RTMP server: ${base.rtmp}   (keys: glasscast streams --data-dir ${config.dataDir})`, `  Watch:       ${base.http}/watch/<name>`);
  }
  lines.push(`  Channels:     ${base.http}/   ·   Admin: ${base.http}/admin (sign in with an API key)`);
  const everywhere = config.host === '0.0.0.0' || config.host === '::';
  const others = everywhere && !config.publicUrl ? lanAddresses().slice(1) : [];
  if (others.length > 0) lines.push(`  Also at:      ${others.map((a) => `${new URL(base.http).protocol}//${urlHost(a)}:${app.ports.http}/`).join('  ')}`);
  lines.push(
    `  WebRTC:       UDP ${app.ports.webrtcUdp.min}–${app.ports.webrtcUdp.max}${app.ports.webrtcTcp ? ` and TCP ${app.ports.webrtcTcp}` : ''} (forward them with port ${app.ports.http} for viewers outside this network)`,
    `  Test a network: ${base.http}/diagnostics`,
  );
  const tls = app.tls();
  if (tls?.source === 'self-signed') {
    lines.push(
      `  HTTPS:        self-signed certificate; browsers warn once — accept it if they show this SHA-256 fingerprint:`,
      `                ${tls.fingerprint256}`,
    );
  } else if (tls) {
    lines.push(`  HTTPS:        certificate valid until ${new Date(tls.validTo).toISOString().slice(0, 10)} (replaced on disk → reloaded)`);
  }
  if (tls && config.httpRedirectPort > 0) lines.push(`  HTTP port ${config.httpRedirectPort} redirects to HTTPS.`);
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
