/**
 * Glasscast configuration: defaults, then a JSON config file, then `GLASSCAST_*` environment variables, then
 * command-line flags. Every value is validated; a bad one stops the start with a sentence naming where it came
 * from.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { z } from 'zod';
import { GlasscastError } from '../core/errors.js';
import { DEFAULT_LADDER, parseLadder } from '../transcode/ladder.js';

const port = z.number().int().min(0).max(65535);

/** The validated configuration. Units are in the names (ms) or noted. */
export const configSchema = z
  .object({
    /** Address every listener binds to. Default 0.0.0.0. */
    host: z.string().min(1),
    /** HTTP port: web app, API, LL-HLS. Default 8080. */
    httpPort: port,
    /** RTMP ingest port. Default 1935. */
    rtmpPort: port,
    /** SRT ingest port (UDP). Default 9999. */
    srtPort: port,
    /** SRT receiver latency, ms; a session uses max(this, the caller's). 20–8000, default 120. */
    srtLatencyMs: z.number().int().min(20).max(8000),
    /** Stream id for SRT callers that send none (e.g. `live/<key>`); empty: they are refused. */
    srtDefaultStreamId: z.string().max(512),
    /** SRT passphrase (10–79 characters) for streams without their own; empty: only streams with one encrypt. */
    srtPassphrase: z.string().refine((p) => p === '' || (p.length >= 10 && p.length <= 79), 'an SRT passphrase has 10–79 characters'),
    /** Directory for the SQLite database and other state. Default ./data. */
    dataDir: z.string().min(1),
    /** `all`: every broadcast is recorded (record/recorder.ts); `none`: only streams with `record` set, or started over the API. */
    record: z.enum(['none', 'all']),
    /** Recordings older than this many days are deleted (0: kept). */
    recordingRetentionDays: z.number().min(0).max(36_500),
    /** Most disk space recordings may use, MB; the oldest ended ones are deleted past it (0: no quota). */
    recordingQuotaMb: z.number().min(0),
    /** Recording stops when the data directory's disk has less free space than this, MB. */
    recordingMinFreeMb: z.number().min(0),
    /** S3-compatible endpoint recordings are uploaded to (e.g. https://s3.eu-west-1.amazonaws.com); empty: no upload. */
    s3Endpoint: z.string(),
    /** S3 region (R2: `auto`). */
    s3Region: z.string().min(1),
    /** Bucket for recordings. */
    s3Bucket: z.string(),
    /** Key prefix inside the bucket. */
    s3Prefix: z.string(),
    s3AccessKeyId: z.string(),
    s3SecretAccessKey: z.string(),
    /** `path`: `endpoint/bucket/key` (MinIO, most self-hosted servers); `virtual`: `bucket.endpoint/key`. */
    s3UrlStyle: z.enum(['path', 'virtual']),
    /** `keep`: local files stay after upload; `delete`: they are removed and playback redirects to the bucket. */
    s3KeepLocal: z.enum(['keep', 'delete']),
    /** `key`: publishing needs a stream key; `open`: any key publishes as a stream of that name (development only). */
    publishAuth: z.enum(['key', 'open']),
    /** LL-HLS part target, ms (RFC 8216bis PART-TARGET). 100–1000, default 200. */
    partTargetMs: z.number().int().min(100).max(1000),
    /** LL-HLS segment target, ms; segments are cut at the first keyframe past it. 1000–10000, default 2000. */
    segmentTargetMs: z.number().int().min(1000).max(10000),
    /** Complete segments kept in each media playlist. 3–60, default 10. */
    playlistSegments: z.number().int().min(3).max(60),
    /** How long a dropped publisher may take to return before its stream ends, ms. Default 10 000. */
    reconnectGraceMs: z.number().int().min(0).max(600_000),
    /** Public base URL printed in links (e.g. https://live.example.com); default http://<host>:<httpPort>. */
    publicUrl: z.string().url().optional(),
    /**
     * First UDP port for WebRTC media: the server's own process uses it, each WebRTC process (webrtcProcesses) the
     * next one (every peer of a process shares its port: ICE UDP mux). Forward them on your router. Default 40000.
     */
    webrtcPortMin: port,
    /** Last UDP port for WebRTC media, inclusive. Default 40099. */
    webrtcPortMax: port,
    /** Local address WebRTC binds; empty = every interface. */
    webrtcBindAddress: z.string(),
    /** Comma-separated public IPs announced as candidates on the same ports (1:1 NAT / port forwarding). */
    webrtcPublicAddresses: z.string(),
    /** WebRTC over TCP (passive ICE-TCP, RFC 6544) for networks that block UDP: `on` (default) or `off`. */
    webrtcTcp: z.enum(['on', 'off']),
    /** TCP port of WebRTC over TCP (forward it beside the UDP range). Default 8189. */
    webrtcTcpPort: port,
    /**
     * Processes that send WebRTC to viewers (peer hosts), so delivery uses every core; 0 = in the server's own
     * process. 0–64; default one per core (0 on a single core).
     */
    webrtcProcesses: z.number().int().min(0).max(64),
    /** PEM certificate (chain) file: the web server speaks HTTPS on httpPort. Reloaded when the file changes. */
    tlsCert: z.string(),
    /** PEM private key file of tlsCert. */
    tlsKey: z.string(),
    /** Without tlsCert: `on` makes a self-signed certificate for the LAN (data dir, fingerprint printed). Default `off`. */
    tlsSelfSigned: z.enum(['on', 'off']),
    /** With HTTPS: a plain-HTTP port that redirects every request to HTTPS (e.g. 80); 0 = none (default). */
    httpRedirectPort: port,
    /** With HTTPS: `on` sends Strict-Transport-Security (browsers then refuse plain HTTP for a year). Default `off`. */
    hsts: z.enum(['on', 'off']),
    /** Most a WHIP publisher may send (announced with REMB), bits/s. 300 000–50 000 000, default 6 000 000. */
    whipMaxBitrate: z.number().int().min(300_000).max(50_000_000),
    /** Comma-separated STUN/TURN URLs the server uses and announces to players (e.g. stun:stun.example.com:3478). */
    iceServers: z.string(),
    /**
     * Venue mode (peer-assisted LL-HLS segments): the tracker on the HTTP port (`/p2p/announce/<stream>`) and the
     * STUN server. Streams can switch it off one by one (API: `p2p: false`). Default on.
     */
    p2p: z.enum(['on', 'off']),
    /** UDP port of the STUN server venue-mode viewers ask for their address (0: any free port). Default 3478. */
    stunPort: port,
    /** Tracker connections one client address may hold (a venue's viewers may share one public address). Default 1000. */
    p2pMaxPeersPerAddress: z.number().int().min(1).max(1_000_000),
    /**
     * ABR ladder for every stream (transcode/ladder.ts): `1080p=4500k,720p=2500k,480p=1200k@30,360p=600k@30`
     * (height, video bits/s, optional frame-rate cap); rungs at or above the source's height are skipped; `none`
     * turns transcoding off.
     */
    ladder: z.string(),
    /** Per-stream ladders overriding `ladder`, by stream name (e.g. `{"lobby":"none"}`). JSON in env/flags. */
    streamLadders: z.record(z.string(), z.string()),
    /**
     * Video encoder for the ladder: `auto` probes NVENC, VAAPI and QSV with a one-frame encode and takes the first
     * that works, else libx264; naming one forces it (it is still probed; a failing one falls back to libx264).
     */
    videoEncoder: z.enum(['auto', 'libx264', 'nvenc', 'vaapi', 'qsv']),
    /**
     * Admission hook URL, asked before every publish and play (auth/admission.ts); empty = off. It answers
     * `{"allow": true}` or `{"allow": false, "reason": "…"}`.
     */
    admissionUrl: z.union([z.literal(''), z.string().url()]),
    /** How long the admission hook may take to answer, ms. 100–30 000, default 2000. */
    admissionTimeoutMs: z.number().int().min(100).max(30_000),
    /** When the admission hook fails (timeout, error): `closed` refuses, `open` admits. Default closed. */
    admissionFailMode: z.enum(['open', 'closed']),
    /** JWKS URL of an external playback-token issuer (ES256/RS256 tokens with a `stream` claim); empty = off. */
    playbackJwksUrl: z.union([z.literal(''), z.string().url()]),
    /** Required `iss` of external playback tokens; empty = not checked. */
    playbackJwtIssuer: z.string(),
    /** Required `aud` of external playback tokens; empty = not checked. */
    playbackJwtAudience: z.string(),
    /** A token that reads `/metrics` (as `Authorization: Bearer`) besides API keys with `stats:read`; empty = none. */
    metricsToken: z.string(),
    /** First webhook retry delay, ms (doubles per attempt, with jitter). Default 1000. */
    webhookRetryBaseMs: z.number().int().min(100).max(3_600_000),
    /** Longest webhook retry delay, ms. Default 600 000 (10 min). */
    webhookRetryMaxMs: z.number().int().min(100).max(86_400_000),
    /** A webhook message undelivered this long is given up, ms. Default 86 400 000 (24 h). */
    webhookMaxAgeMs: z.number().int().min(1000).max(30 * 86_400_000),
    /** One webhook request's timeout, ms. Default 10 000. */
    webhookTimeoutMs: z.number().int().min(100).max(120_000),
    /** API requests per client (API key, else address) per minute; 0 = no limit. Default 1200. */
    rateLimitApi: z.number().int().min(0),
    /** Playback tokens minted per API key per minute; 0 = no limit. Default 600. */
    rateLimitTokens: z.number().int().min(0),
    /** WHIP/WHEP offers per address per minute; 0 = no limit. Default 300. */
    rateLimitOffers: z.number().int().min(0),
    /** Failed authentications (API key, playback token, WHIP key) per address per minute before 429; 0 = no limit. Default 30. */
    rateLimitAuthFailures: z.number().int().min(0),
    /** A live stream with no keyframe for this long raises `stream.health` no_keyframe, ms. Default 12 000. */
    healthNoKeyframeMs: z.number().int().min(1000).max(600_000),
    /** pino log level. */
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']),
  })
  .strict();

/** The validated configuration. */
export type GlasscastConfig = z.infer<typeof configSchema>;

/** Defaults for every setting. */
export const DEFAULT_CONFIG: GlasscastConfig = {
  host: '0.0.0.0',
  httpPort: 8080,
  rtmpPort: 1935,
  srtPort: 9999,
  srtLatencyMs: 120,
  srtDefaultStreamId: '',
  srtPassphrase: '',
  dataDir: './data',
  record: 'none',
  recordingRetentionDays: 0,
  recordingQuotaMb: 0,
  recordingMinFreeMb: 500,
  s3Endpoint: '',
  s3Region: 'us-east-1',
  s3Bucket: '',
  s3Prefix: 'recordings/',
  s3AccessKeyId: '',
  s3SecretAccessKey: '',
  s3UrlStyle: 'path',
  s3KeepLocal: 'keep',
  publishAuth: 'key',
  partTargetMs: 200,
  segmentTargetMs: 2000,
  playlistSegments: 10,
  reconnectGraceMs: 10_000,
  webrtcPortMin: 40000,
  webrtcPortMax: 40099,
  webrtcBindAddress: '',
  webrtcPublicAddresses: '',
  webrtcTcp: 'on',
  webrtcTcpPort: 8189,
  webrtcProcesses: availableParallelism() > 1 ? availableParallelism() : 0,
  tlsCert: '',
  tlsKey: '',
  tlsSelfSigned: 'off',
  httpRedirectPort: 0,
  hsts: 'off',
  whipMaxBitrate: 6_000_000,
  iceServers: '',
  p2p: 'on',
  stunPort: 3478,
  p2pMaxPeersPerAddress: 1000,
  ladder: DEFAULT_LADDER,
  streamLadders: {},
  videoEncoder: 'auto',
  admissionUrl: '',
  admissionTimeoutMs: 2000,
  admissionFailMode: 'closed',
  playbackJwksUrl: '',
  playbackJwtIssuer: '',
  playbackJwtAudience: '',
  metricsToken: '',
  webhookRetryBaseMs: 1000,
  webhookRetryMaxMs: 600_000,
  webhookMaxAgeMs: 86_400_000,
  webhookTimeoutMs: 10_000,
  rateLimitApi: 1200,
  rateLimitTokens: 600,
  rateLimitOffers: 300,
  rateLimitAuthFailures: 30,
  healthNoKeyframeMs: 12_000,
  logLevel: 'info',
};

type Key = keyof GlasscastConfig;
const NUMERIC: ReadonlySet<Key> = new Set<Key>(Object.entries(DEFAULT_CONFIG).filter(([, v]) => typeof v === 'number').map(([k]) => k as Key));

/** camelCase key → kebab-case flag name (`httpPort` → `http-port`). */
const flagName = (key: string): string => key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
/** camelCase key → environment variable (`httpPort` → `GLASSCAST_HTTP_PORT`). */
const envName = (key: string): string => `GLASSCAST_${flagName(key).replace(/-/g, '_').toUpperCase()}`;

/** Settings given as JSON in environment variables and flags. */
const JSON_VALUED: ReadonlySet<Key> = new Set<Key>(['streamLadders']);

function coerce(key: Key, raw: string, source: string): unknown {
  if (JSON_VALUED.has(key)) {
    try {
      return JSON.parse(raw) as unknown;
    } catch {
      throw new GlasscastError('CONFIG_INVALID', `${source}: "${raw.slice(0, 80)}" is not JSON`);
    }
  }
  if (!NUMERIC.has(key)) return raw;
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n)) {
    throw new GlasscastError('CONFIG_INVALID', `${source}: "${raw}" is not a number`);
  }
  return n;
}

/** Flags of the management commands (`streams create --visibility private`), not server settings. */
export const COMMAND_FLAGS = ['visibility', 'title', 'description', 'grace', 'scopes', 'name', 'ladder'] as const;

/** Parsed command line: settings plus the optional config file path. */
export interface ParsedArgs {
  configFile: string | undefined;
  settings: Partial<Record<Key, unknown>>;
  command: string | undefined;
  /** Words after the command (`streams create talk` → `create`, `talk`). */
  positionals: string[];
  /** Values of {@link COMMAND_FLAGS}. */
  options: Partial<Record<(typeof COMMAND_FLAGS)[number], string>>;
  help: boolean;
}

/**
 * Parses `--key value` / `--key=value` flags.
 * @throws GlasscastError `CONFIG_INVALID` for an unknown flag or a missing value.
 */
export function parseArgs(argv: readonly string[]): ParsedArgs {
  const keys = Object.keys(DEFAULT_CONFIG).concat('publicUrl') as Key[];
  const byFlag = new Map(keys.map((k) => [flagName(k), k]));
  const out: ParsedArgs = { configFile: undefined, settings: {}, command: undefined, positionals: [], options: {}, help: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--help' || arg === '-h') {
      out.help = true;
      continue;
    }
    if (!arg.startsWith('--')) {
      if (out.command === undefined) {
        out.command = arg;
        continue;
      }
      if (out.command !== 'serve' && out.positionals.length < 4) {
        out.positionals.push(arg);
        continue;
      }
      throw new GlasscastError('CONFIG_INVALID', `unexpected argument "${arg}"`);
    }
    const eq = arg.indexOf('=');
    const flag = arg.slice(2, eq < 0 ? undefined : eq);
    const value = eq < 0 ? argv[++i] : arg.slice(eq + 1);
    if (value === undefined) throw new GlasscastError('CONFIG_INVALID', `--${flag} needs a value`);
    if (flag === 'config') {
      out.configFile = value;
      continue;
    }
    if ((COMMAND_FLAGS as readonly string[]).includes(flag) && out.command !== undefined && out.command !== 'serve') {
      out.options[flag as (typeof COMMAND_FLAGS)[number]] = value;
      continue;
    }
    const key = byFlag.get(flag);
    if (!key) throw new GlasscastError('CONFIG_INVALID', `unknown flag --${flag} (see glasscast --help)`);
    out.settings[key] = coerce(key, value, `--${flag}`);
  }
  return out;
}

/**
 * Builds the configuration from defaults, file, environment and flags, in that order.
 * @throws GlasscastError `CONFIG_INVALID` naming the setting, its source and what is wrong.
 */
export function loadConfig(args: ParsedArgs, env: NodeJS.ProcessEnv = process.env): GlasscastConfig {
  const merged: Record<string, unknown> = { ...DEFAULT_CONFIG };
  const sources = new Map<string, string>();
  const configFile = args.configFile ?? env['GLASSCAST_CONFIG'];
  if (configFile) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(configFile, 'utf8'));
    } catch (err) {
      throw new GlasscastError('CONFIG_INVALID', `config file ${configFile}: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new GlasscastError('CONFIG_INVALID', `config file ${configFile}: must hold a JSON object`);
    }
    for (const [k, v] of Object.entries(parsed)) {
      merged[k] = v;
      sources.set(k, `config file ${configFile}`);
    }
  }
  for (const key of [...Object.keys(DEFAULT_CONFIG), 'publicUrl'] as Key[]) {
    const raw = env[envName(key)];
    if (raw !== undefined) {
      merged[key] = coerce(key, raw, envName(key));
      sources.set(key, envName(key));
    }
  }
  for (const [k, v] of Object.entries(args.settings)) {
    merged[k] = v;
    sources.set(k, `--${flagName(k)}`);
  }
  const result = configSchema.safeParse(merged);
  if (!result.success) {
    const lines = result.error.issues.map((issue) => {
      const key = String(issue.path[0] ?? '');
      const where = sources.get(key) ?? 'default';
      return issue.code === 'unrecognized_keys'
        ? `unknown setting(s) ${issue.keys.join(', ')} (${[...new Set(issue.keys.map((k) => sources.get(k) ?? 'default'))].join(', ')})`
        : `${key} (${where}): ${issue.message}`;
    });
    throw new GlasscastError('CONFIG_INVALID', `invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  if ((result.data.tlsCert === '') !== (result.data.tlsKey === '')) {
    throw new GlasscastError('CONFIG_INVALID', 'invalid configuration: tlsCert and tlsKey go together (give both PEM files, or neither)');
  }
  if (result.data.webrtcPortMin > result.data.webrtcPortMax) {
    throw new GlasscastError('CONFIG_INVALID', `invalid configuration: webrtcPortMin (${result.data.webrtcPortMin}) is above webrtcPortMax (${result.data.webrtcPortMax})`);
  }
  if (result.data.partTargetMs * 3 > result.data.segmentTargetMs) {
    throw new GlasscastError('CONFIG_INVALID', `invalid configuration: partTargetMs (${result.data.partTargetMs}) must be at most a third of segmentTargetMs (${result.data.segmentTargetMs})`);
  }
  for (const [where, text] of [['ladder', result.data.ladder], ...Object.entries(result.data.streamLadders).map(([n, t]) => [`streamLadders.${n}`, t])] as const) {
    try {
      parseLadder(text);
    } catch (err) {
      throw new GlasscastError('CONFIG_INVALID', `invalid configuration: ${where} (${sources.get(where.split('.')[0]!) ?? 'default'}): ${(err as Error).message}`);
    }
  }
  return result.data;
}

/** Splits a comma-separated setting into its non-empty items. */
export function listSetting(value: string): string[] {
  return value
    .split(',')
    .map((v) => v.trim())
    .filter((v) => v.length > 0);
}

/** Help text for `glasscast --help`. */
export function helpText(): string {
  const rows = Object.entries(DEFAULT_CONFIG).map(([k, v]) => `  --${flagName(k).padEnd(20)} ${envName(k).padEnd(32)} default ${typeof v === 'object' ? JSON.stringify(v) : String(v)}`);
  return [
    'Usage: glasscast [command] [--config FILE] [--flag value ...]',
    '',
    'Commands:',
    '  serve (default)                      run the server',
    '  streams [list]                       list streams with their keys and links',
    '  streams create NAME [--visibility public|unlisted|private] [--title T] [--description D] [--ladder L] [--srt-passphrase P]',
    '  streams rotate-key NAME [--grace SECONDS]   new key; the old one publishes for SECONDS more (default 300)',
    '  streams delete NAME',
    '  api-keys create [--name N] [--scopes admin|streams:read,streams:write,stats:read,webhooks,playback-tokens,api-keys]',
    '  api-keys list',
    '  api-keys revoke ID',
    '  (these work on --data-dir with the server running or not)',
    '',
    'Settings (flag, environment variable, default); a JSON config file uses the camelCase names:',
    ...rows,
    `  --${'public-url'.padEnd(20)} ${envName('publicUrl').padEnd(32)} default http://<host>:<http-port>`,
  ].join('\n');
}
