/**
 * Glass-to-glass latency of RTMP → LL-HLS in hls.js (DESIGN.md "Figures"): a publisher draws its capture time
 * into each frame as a row of black/white blocks, x264 (zerolatency, 1 s GOP, 2.5 Mb/s) encodes it with an AAC
 * tone beside it, Glasscast packages it, and headless Chromium plays /watch/<name>, decoding the time from every
 * displayed frame (two rows of the decoded picture, copied as it is presented). Both ends read the same system
 * clock.
 *
 * By default it measures what a user gets (DESIGN.md): the server's default configuration (ladder on, 200 ms
 * parts), a 1280x720 30 fps source with AAC audio, and hls.js with its own default configuration
 * (`/watch/<name>?hls=defaults`). Flags change one thing each for the "tuned" rows: `--size 640x360`,
 * `--audio none`, `--ladder none`, `--hls player` (the watch page's tuning: live-edge catch-up at ≤ 1.05×),
 * `--hls page` (hls.js with its defaults on a bare page instead of the watch page),
 * `--part-target-ms 100`.
 *
 * With `--source srt` the same ffmpeg publishes MPEG-TS over SRT (`--srt-latency-ms`, default 200, as OBS users set
 * it), muxed as OBS muxes it (`--srt-publisher obs`, the default): OBS drives libavformat's MPEG-TS muxer without
 * setting `max_delay`, which the muxer then takes as 0, so every AAC frame leaves in its own PES at once — the
 * ffmpeg command line's `-muxdelay 0`. `--srt-publisher ffmpeg-cli` keeps the command line's 0.7 s default, which
 * gathers audio into ~2.9 kB PES (~180 ms of AAC at 128 kb/s): the audio arrives that late and the browser holds
 * the picture for lip sync (the README tells FFmpeg users to add `-muxdelay 0`).
 *
 * With `--source whip` the publisher is a browser instead: a page draws the same time code into a canvas and
 * publishes `canvas.captureStream()` from /broadcast over WHIP (the browser's own H.264 encoder), as a streamer
 * pressing Go Live does.
 *
 * With `--layer 240p` (WebRTC) the server transcodes a 240p rendition (the ABR ladder) and the viewer picks it
 * from the quality menu: the difference to the source's figure is the latency the transcoder adds.
 *
 * With `--transport tcp` (WebRTC) UDP is blocked between the browser and the server, so the viewer comes over the
 * ICE-TCP port; `--transport udp` is the same setup without the block (the like-for-like row).
 *
 * Prints median/p95 latency (ms) over the first page load, each later load's own median (a player that does not
 * change speed keeps the latency it joined with), time to first frame from the page's load and from the player's
 * first request (ms), and stalls. `G2G_TRACE=1` prints what hls.js believes each second (its latency, target,
 * stall count, buffer ahead) beside the measured latency, the probe's own main-thread time, dropped frames and the
 * publisher's backlog, and for LL-HLS each load's timeline to its first frame (requests; on the bare page also
 * hls.js's events).
 * Usage: npm run bench:latency [-- --protocol ll-hls|webrtc --source rtmp|srt|whip --srt-latency-ms 200 --srt-publisher obs|ffmpeg-cli --publisher-preset ultrafast|veryfast --layer src|240p --seconds 30 --loads 5
 *   --part-target-ms 200 --size 1280x720 --audio aac|none --ladder default|none --hls defaults|player|page --row default|tuned
 *   --server-log warn|info --api-load 200 --transport any|udp|tcp]
 * `--api-load N` sends N REST API requests a second (a mix of the public list and status, an admin's stats, sessions
 * and history, and Prometheus scrapes) while the latency is measured, from a separate process at the lowest CPU
 * priority (it stands for clients on other machines); the API rate limit is lifted for it (the load comes from
 * one address standing for many clients).
 */
import { spawn, spawnSync } from 'node:child_process';
import type { Writable } from 'node:stream';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { freePort, runInLoopbackNamespace } from './bench-support.js';
import type { Page } from 'playwright-core';
import { launchChromium } from '../packages/server/test/support/browser.js';
import { runFfmpeg } from '../packages/server/test/support/ffmpeg.js';
import { waitUntil } from '../packages/server/test/support/wait.js';

const { values: opts } = parseArgs({
  options: {
    seconds: { type: 'string', default: '30' },
    loads: { type: 'string', default: '5' },
    'part-target-ms': { type: 'string', default: '200' },
    protocol: { type: 'string', default: 'll-hls' },
    source: { type: 'string', default: 'rtmp' },
    layer: { type: 'string', default: 'src' },
    size: { type: 'string', default: '1280x720' },
    audio: { type: 'string', default: 'aac' },
    ladder: { type: 'string', default: 'default' },
    hls: { type: 'string', default: 'defaults' },
    row: { type: 'string', default: 'default' },
    'server-log': { type: 'string', default: 'warn' },
    'api-load': { type: 'string', default: '0' },
    'srt-latency-ms': { type: 'string', default: '200' },
    'srt-publisher': { type: 'string', default: 'obs' },
    'publisher-preset': { type: 'string', default: 'ultrafast' },
    transport: { type: 'string', default: 'any' },
    'warm-up': { type: 'boolean', default: false },
  },
});
/**
 * WebRTC's path (`--transport`): `any` (default: what ICE picks, UDP here), `udp` or `tcp`. For `udp`/`tcp` the
 * server's media binds 127.0.0.2 and nftables in the benchmark's namespace drops every UDP datagram between that
 * address and any other (`tcp`: the browser must come over the ICE-TCP port, bridged inside the server on
 * 127.0.0.2) or nothing (`udp`, the same setup for a like-for-like row).
 */
const TRANSPORT = opts.transport === 'tcp' || opts.transport === 'udp' ? opts.transport : 'any';
/** `--warm-up`: one unmeasured page plays the stream first (the browser is then not cold for the first join). */
const WARM_UP = opts['warm-up'] === true;
/** REST API requests per second sent while the first page load is measured (0: none). */
const API_LOAD = Number(opts['api-load']);
/** The rendition watched: `src`, or a rung of a one-rung ladder made for the run (e.g. `240p`). */
const LAYER = /^\d{3}p$/.test(opts.layer!) ? opts.layer! : 'src';
const PROTOCOL = opts.protocol === 'webrtc' ? 'webrtc' : 'll-hls';
const SOURCE = opts.source === 'whip' ? 'whip' : opts.source === 'srt' ? 'srt' : 'rtmp';
/** The SRT caller's latency (`--source srt`), ms: the receiver's TSBPD delay, a floor under the figure. */
const SRT_LATENCY_MS = Number(opts['srt-latency-ms']);
if (PROTOCOL === 'webrtc' || SOURCE === 'whip') runInLoopbackNamespace();
const SECONDS = Number(opts.seconds);
const LOADS = Number(opts.loads);
const [WIDTH, HEIGHT] = (/^(\d{3,4})x(\d{3,4})$/.exec(opts.size!)?.slice(1) ?? ['1280', '720']).map(Number) as [number, number];
const AUDIO = opts.audio !== 'none';
/** The server's ladder flag: none for the default (the server's own), else the given ladder. */
const LADDER_FLAG = LAYER !== 'src' ? ['--ladder', `${LAYER}=500k`] : opts.ladder === 'default' ? [] : ['--ladder', opts.ladder!];
const HLS_DEFAULTS = opts.hls !== 'player';
/**
 * `--hls page`: a bare page with hls.js (the full build, its default config) playing the multivariant playlist,
 * served by this process on its own loopback port: what any hls.js page gets, without the watch page's own work
 * (the web app, its status requests and stats) on the same main thread.
 */
const BARE_PAGE = PROTOCOL === 'll-hls' && opts.hls === 'page';
const FPS = 30;
/**
 * The raw frames the publisher is fed are half the source's size each way; ffmpeg scales them up (nearest
 * neighbour: the blocks stay exact) before x264 encodes the full size. Piping full 720p yuv420p (41 MB/s) cost
 * this process ~17 % of a core in pipe writes alone, taken from the server and the browser being measured.
 */
const RAW_WIDTH = WIDTH / 2;
const RAW_HEIGHT = HEIGHT / 2;
/** Bytes of one raw yuv420p frame the publisher is fed. */
const FRAME_BYTES = (RAW_WIDTH * RAW_HEIGHT * 3) / 2;
/** The most frames waiting in the publisher's stdin during the measured window (it fell behind real time when > 1). */
let publisherBacklog = 0;
/**
 * The publisher's x264 preset: `ultrafast` by default, standing for a streamer's own machine (or OBS on a hardware
 * encoder). With `veryfast` the publisher, the server's ladder and Chromium share this box's 2 cores and the
 * publisher falls seconds behind real time (its backlog, printed, reached 78–241 frames), which measures the box.
 */
const PUBLISHER_PRESET = opts['publisher-preset']!;
/** The publisher's nice value (root may raise priority; a failure leaves it at 0). */
const PUBLISHER_NICE = -10;
const BITS = 32;
const BLOCK = WIDTH / BITS; // 20 px blocks in the top rows

/** A raw (half-size) yuv420p frame whose top rows carry `ms mod 2^32` as 32 black/white blocks, MSB first. */
function frame(ms: number, n: number): Buffer {
  const w = RAW_WIDTH;
  const block = w / BITS;
  const y = Buffer.allocUnsafe(FRAME_BYTES);
  y.fill(96, 0, w * RAW_HEIGHT);
  y.fill(128, w * RAW_HEIGHT);
  // A moving bar below the code keeps the encoder honest (real motion, real bits).
  const bar = (n * 4) % w;
  for (let row = block * 2; row < RAW_HEIGHT; row++) y.fill(200, row * w + bar, row * w + Math.min(w, bar + 20));
  const code = ms % 2 ** 32;
  for (let bit = 0; bit < BITS; bit++) {
    const on = Math.floor(code / 2 ** (BITS - 1 - bit)) % 2 === 1;
    for (let row = 0; row < block; row++) y.fill(on ? 235 : 16, row * w + bit * block, row * w + (bit + 1) * block);
  }
  return y;
}

/** Where the receiver's time goes (ms, averages between two readings): Chromium's jitter buffers per kind. */
interface ReceiverDelays {
  /** NetEq's buffer: `jitterBufferDelay / jitterBufferEmittedCount` of the audio inbound-rtp. */
  audioJitterBuffer: number | undefined;
  /** Audio from the buffer to the output device (`media-playout`'s `totalPlayoutDelay / totalSamplesCount`). */
  audioPlayout: number | undefined;
  /** The video jitter buffer, which includes the hold for lip sync with the audio. */
  videoJitterBuffer: number | undefined;
}

/** Cumulative [total delay s, count] per figure of ReceiverDelays. */
type ReceiverTotals = Record<keyof ReceiverDelays, [number, number] | undefined>;

/** Reads the WebRTC viewer's cumulative receiver delays (W3C webrtc-stats) from the peer connections PAGE_PROBE collected. */
async function receiverTotals(page: Page): Promise<ReceiverTotals> {
  // As text: tsx would inject helpers into a serialized function.
  return page.evaluate(`(async () => {
    const out = {};
    for (const pc of window.benchPeers.filter((p) => p.connectionState === 'connected')) {
      (await pc.getStats()).forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audioJitterBuffer = [r.jitterBufferDelay, r.jitterBufferEmittedCount];
        if (r.type === 'inbound-rtp' && r.kind === 'video') out.videoJitterBuffer = [r.jitterBufferDelay, r.jitterBufferEmittedCount];
        if (r.type === 'media-playout') out.audioPlayout = [r.totalPlayoutDelay, r.totalSamplesCount];
      });
    }
    return out;
  })()`);
}

/** Average delays (ms) between two readings. */
function receiverDelays(from: ReceiverTotals, to: ReceiverTotals): ReceiverDelays {
  const avg = (k: keyof ReceiverDelays): number | undefined => {
    const a = from[k], b = to[k];
    return a && b && b[1] > a[1] ? Math.round(((b[0] - a[0]) / (b[1] - a[1])) * 1000) : undefined;
  };
  return { audioJitterBuffer: avg('audioJitterBuffer'), audioPlayout: avg('audioPlayout'), videoJitterBuffer: avg('videoJitterBuffer') };
}

/**
 * Runs in the page (as text: tsx would inject helpers into a serialized function). Samples the displayed
 * picture every 4 ms and records each new time code when it first appears (requestVideoFrameCallback does not
 * fire in this headless build), as { latency, at } in window.benchFrames.
 */
/**
 * Serves the bare hls.js page (`--hls page`) on a free loopback port. Its `window.glasscast` answers what this
 * benchmark reads from the watch page's player: stalls (a `waiting` event after playback began), latency and
 * buffer as hls.js reports them.
 */
async function serveBarePage(base: string): Promise<{ url: string; server: Server }> {
  const hlsJs = readFileSync('node_modules/hls.js/dist/hls.min.js');
  const html = `<!doctype html><meta charset="utf-8"><title>hls.js</title><video muted autoplay playsinline style="width:1280px"></video>
<script src="/hls.js"></script><script>
const video = document.querySelector('video');
const hls = new Hls();
let playing = false, stalls = 0;
video.addEventListener('playing', () => { playing = true; });
video.addEventListener('waiting', () => { if (playing) stalls++; });
// G2G_TRACE: what hls.js did before the first frame, ms from the page's time origin.
window.benchTimeline = [];
const mark = (what) => { if (window.benchTimeline.length < 80) window.benchTimeline.push(Math.round(performance.now()) + ' ' + what); };
hls.on(Hls.Events.MANIFEST_LOADING, () => mark('manifest loading'));
hls.on(Hls.Events.LEVEL_LOADED, (e, d) => mark('level loaded edge=' + d.details.edge.toFixed(3) + ' age=' + d.details.age.toFixed(3) + ' phb=' + d.details.partHoldBack + ' live=' + hls.liveSyncPosition?.toFixed(3)));
hls.on(Hls.Events.FRAG_LOADING, (e, d) => mark('load sn=' + d.frag.sn + ' part=' + (d.part ? d.part.index + ' start=' + d.part.start.toFixed(3) : '-')));
hls.on(Hls.Events.FRAG_LOADED, (e, d) => mark('loaded sn=' + d.frag.sn + ' part=' + (d.part ? d.part.index : '-')));
hls.on(Hls.Events.BUFFER_APPENDED, (e, d) => mark('appended ' + d.type + ' ' + (video.buffered.length ? video.buffered.start(0).toFixed(3) + '-' + video.buffered.end(video.buffered.length - 1).toFixed(3) : '')));
video.addEventListener('seeking', () => mark('seeking to ' + video.currentTime.toFixed(3)));
video.addEventListener('playing', () => mark('playing at ' + video.currentTime.toFixed(3) + ' latency=' + hls.latency?.toFixed(3)));
window.glasscast = {
  hls,
  getStats: () => ({ stalls, latencyMs: Number.isFinite(hls.latency) ? Math.round(hls.latency * 1000) : undefined, bufferMs: video.buffered.length ? Math.round((video.buffered.end(video.buffered.length - 1) - video.currentTime) * 1000) : 0 }),
  getQuality: () => ({ current: 'src' }),
};
hls.loadSource('${base}/hls/bench/index.m3u8');
hls.attachMedia(video);
</script>`;
  const server = createServer((req, res) => {
    if (req.url === '/hls.js') res.writeHead(200, { 'content-type': 'text/javascript' }).end(hlsJs);
    else res.writeHead(200, { 'content-type': 'text/html' }).end(html);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`, server };
}

/**
 * G2G_TRACE on the watch page: hls.js's events before the first frame (as the bare page records them), from the
 * moment the player made its hls.js instance.
 */
const TRACE_PLAYER = `
  window.benchTimeline = window.benchTimeline || [];
  const mark = (what) => { if (window.benchTimeline.length < 80) window.benchTimeline.push(Math.round(performance.now()) + ' ' + what); };
  const attach = setInterval(() => {
    const hls = window.glasscast && window.glasscast.hls;
    const video = document.querySelector('video');
    if (!hls || !video) return;
    clearInterval(attach);
    const E = hls.constructor.Events;
    mark('hls.js made');
    hls.on(E.LEVEL_LOADED, (e, d) => mark('level loaded edge=' + d.details.edge.toFixed(3) + ' live=' + (hls.liveSyncPosition || 0).toFixed(3)));
    hls.on(E.FRAG_LOADED, (e, d) => mark('loaded sn=' + d.frag.sn + ' part=' + (d.part ? d.part.index : '-')));
    hls.on(E.FRAG_BUFFERED, () => mark('buffered to ' + (video.buffered.length ? video.buffered.end(video.buffered.length - 1).toFixed(3) : '-') + ' live=' + (hls.liveSyncPosition || 0).toFixed(3) + ' at ' + video.currentTime.toFixed(3)));
    video.addEventListener('seeking', () => mark('seeking to ' + video.currentTime.toFixed(3)));
    video.addEventListener('playing', () => mark('playing at ' + video.currentTime.toFixed(3) + ' latency=' + (hls.latency || 0).toFixed(3)));
  }, 2);`;

const PAGE_PROBE = `(() => {
  const Native = window.RTCPeerConnection;
  window.benchPeers = [];
  if (Native) window.RTCPeerConnection = class extends Native { constructor(...a) { super(...a); window.benchPeers.push(this); } };
  const bits = ${BITS}, block = ${BLOCK};
  window.benchFrames = [];
  window.benchBad = 0;
  const canvas = document.createElement('canvas');
  canvas.width = bits * block;
  canvas.height = block;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  let last = -1;
  // Read each frame once, as it is presented (requestVideoFrameCallback), rather than polling: the probe must cost
  // the browser little next to what it measures. Where rVFC is missing, poll every 4 ms.
  const watch = (video) => {
    if (video.requestVideoFrameCallback) {
      const onFrame = () => { const t0 = performance.now(); sample(); window.benchProbeMs = (window.benchProbeMs || 0) + performance.now() - t0; window.benchProbeFast = fast; video.requestVideoFrameCallback(onFrame); };
      video.requestVideoFrameCallback(onFrame);
    } else setInterval(sample, 4);
    // The code's row, read as luminance at the middle of each block. Fast path: copy just two rows of the decoded
    // frame's Y plane (WebCodecs VideoFrame.copyTo with a rect) — a canvas drawImage + getImageData of a 720p frame
    // cost this headless, GPU-less browser 60–90 ms of its main thread per second, starving the player it measures.
    // Falls back to the canvas where a frame cannot be copied (no WebCodecs, or a frame without a CPU layout).
    let fast = typeof VideoFrame === 'function';
    const lumaRow = async () => {
      if (fast) {
        let vf;
        try {
          vf = new VideoFrame(video);
          const r = vf.visibleRect;
          const rect = { x: r.x & ~1, y: (r.y + Math.floor(r.width / bits / 2)) & ~1, width: r.width & ~1, height: 2 };
          const data = new Uint8Array(vf.allocationSize({ rect }));
          const layout = await vf.copyTo(data, { rect });
          const rgb = vf.format === 'RGBA' || vf.format === 'RGBX' || vf.format === 'BGRA' || vf.format === 'BGRX';
          const step = rgb ? 4 : 1;
          const off = layout[0].offset + (rgb && vf.format.startsWith('B') ? 1 : 0);
          return (bit) => data[off + Math.floor(((bit + 0.5) * rect.width) / bits) * step];
        } catch (e) {
          fast = false;
        } finally {
          vf?.close();
        }
      }
      ctx.drawImage(video, 0, 0, video.videoWidth, block * video.videoWidth / (bits * block), 0, 0, bits * block, block);
      const px = ctx.getImageData(0, 0, bits * block, block).data;
      return (bit) => px[((block / 2) * bits * block + bit * block + block / 2) * 4];
    };
    const sample = () => {
    if (video.readyState < 2 || video.videoWidth === 0) return;
    const now = Date.now();
    return lumaRow().then((lumAt) => {
    let code = 0, ambiguous = false;
    for (let bit = 0; bit < bits; bit++) {
      const lum = lumAt(bit);
      if (lum > 70 && lum < 180) ambiguous = true;
      code = code * 2 + (lum >= 128 ? 1 : 0);
    }
    if (code === last) return;
    last = code;
    if (window.benchFirstFrame === undefined) window.benchFirstFrame = now - performance.timeOrigin;
    // Rebuild the full epoch ms from the low 32 bits and our own clock.
    let captured = now - (now % 2 ** 32) + code;
    if (captured > now + 2 ** 31) captured -= 2 ** 32;
    if (ambiguous || now - captured > 60000 || captured > now + 1000) window.benchBad++;
    else window.benchFrames.push({ latency: now - captured, at: now });
    });
    };
  };
  const poll = setInterval(() => {
    const v = document.querySelector('video');
    if (v) { clearInterval(poll); watch(v); }
  }, 5);
  ${process.env.G2G_TRACE ? TRACE_PLAYER : ''}
})();`;

/**
 * Runs in the publisher page (as text, like PAGE_PROBE): getUserMedia returns a 640x360 canvas stream whose top
 * rows carry the capture time (same blocks as the ffmpeg source), redrawn at 30 fps, plus a 440 Hz tone.
 */
const PUBLISHER_SOURCE = `(() => {
  const bits = ${BITS}, block = ${BLOCK}, width = ${WIDTH}, height = ${HEIGHT};
  navigator.mediaDevices.getUserMedia = async () => {
    const canvas = document.createElement('canvas');
    canvas.width = width; canvas.height = height;
    const ctx = canvas.getContext('2d');
    let n = 0;
    const draw = () => {
      const ms = Date.now();
      ctx.fillStyle = 'rgb(96,96,96)'; ctx.fillRect(0, 0, width, height);
      ctx.fillStyle = 'rgb(200,200,200)'; ctx.fillRect((n++ * 8) % width, block * 2, 40, height);
      const code = ms % 2 ** 32;
      for (let bit = 0; bit < bits; bit++) {
        const on = Math.floor(code / 2 ** (bits - 1 - bit)) % 2 === 1;
        ctx.fillStyle = on ? 'rgb(235,235,235)' : 'rgb(16,16,16)';
        ctx.fillRect(bit * block, 0, block, block);
      }
    };
    draw();
    setInterval(draw, 1000 / ${FPS});
    const stream = canvas.captureStream(${FPS});
    try {
      const audio = new AudioContext();
      const osc = audio.createOscillator();
      const dest = audio.createMediaStreamDestination();
      osc.frequency.value = 440; osc.connect(dest); osc.start();
      dest.stream.getAudioTracks().forEach((t) => stream.addTrack(t));
    } catch (e) { /* video only */ }
    return stream;
  };
})();`;

const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};

/** Drops UDP between the server's media address (127.0.0.2) and every other address (`--transport tcp`). */
function blockUdpToServer(): void {
  const rules = ['table inet glasscast_bench {', '  chain output {', '    type filter hook output priority 0; policy accept;', '    meta l4proto udp ip daddr 127.0.0.2 ip saddr != 127.0.0.2 drop', '    meta l4proto udp ip saddr 127.0.0.2 ip daddr != 127.0.0.2 drop', '  }', '}', ''].join('\n');
  const r = spawnSync('nft', ['-f', '-'], { input: rules, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`nft: ${r.stderr}`);
}

async function main(): Promise<void> {
  if (TRANSPORT === 'tcp') blockUdpToServer();
  const dataDir = mkdtempSync(join(tmpdir(), 'glasscast-bench-'));
  const [httpPort, rtmpPort, srtPort] = [await freePort(), await freePort(), await freePort()];
  const server = spawn(
    process.execPath,
    ['packages/server/dist/cli.js', '--host', '127.0.0.1', '--http-port', String(httpPort), '--rtmp-port', String(rtmpPort), '--srt-port', String(srtPort), '--webrtc-tcp-port', String(await freePort()), '--data-dir', dataDir, '--publish-auth', 'open', '--log-level', opts['server-log']!, '--part-target-ms', opts['part-target-ms']!, '--webrtc-bind-address', TRANSPORT === 'any' ? '127.0.0.1' : '127.0.0.2', ...LADDER_FLAG, ...(API_LOAD > 0 ? ['--rate-limit-api', '0'] : [])],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let serverOut = '';
  server.stdout!.on('data', (d: Buffer) => {
    serverOut += d.toString();
    if (opts['server-log'] !== 'warn') process.stdout.write(d);
  });
  // Never leave the server behind, even if this process dies on an uncaught error.
  process.once('exit', () => server.kill('SIGKILL'));
  const base = `http://127.0.0.1:${httpPort}`;
  const bare = BARE_PAGE ? await serveBarePage(base) : undefined;
  let publisher: ReturnType<typeof runFfmpeg> | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let browser: Awaited<ReturnType<typeof launchChromium>> | undefined;
  let publisherPage: Page | undefined;
  const results = { latencies: [] as number[], ttff: [] as number[], ttffPlayer: [] as number[], joins: [] as number[], stalls: 0, frames: 0, undecodable: 0, playing: '', receiver: undefined as ReceiverDelays | undefined, transport: undefined as string | undefined };
  const apiLoad = { sent: 0, ok: 0, failed: 0, child: undefined as ReturnType<typeof spawn> | undefined, done: undefined as Promise<void> | undefined };
  /**
   * Starts N requests/s of API traffic for the measurement, from a separate process at the lowest CPU priority:
   * it stands for clients on other machines, so its own work must not take the cores from the server.
   */
  const startApiLoad = (seconds: number): void => {
    const token = /API token:\s+(\S+)/.exec(serverOut)?.[1] ?? '';
    const child = spawn('nice', ['-n', '19', process.execPath, '--import', 'tsx', 'bench/api-load-client.ts', base, String(API_LOAD), String(seconds), token], { stdio: ['ignore', 'pipe', 'inherit'] });
    apiLoad.child = child;
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    apiLoad.done = new Promise((resolve) =>
      child.once('exit', () => {
        try {
          Object.assign(apiLoad, JSON.parse(out) as { sent: number; ok: number; failed: number });
        } catch {
          // no figures: the run shows 0 requests
        }
        resolve();
      }),
    );
  };
  try {
    await waitUntil('the server', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.ok, 20_000, 100);
    if (SOURCE === 'rtmp' || SOURCE === 'srt') {
      const ff = runFfmpeg(
        [
          '-f', 'rawvideo', '-pix_fmt', 'yuv420p', '-s', `${RAW_WIDTH}x${RAW_HEIGHT}`, '-r', String(FPS), '-i', 'pipe:0',
          // A tone beside the picture, written by the same clock as the frames (a camera and a microphone). (A
          // `-re` lavfi tone is paced by ffmpeg's own clock: its FLV muxer then holds every picture ~270 ms
          // waiting for audio to interleave — a publisher artefact that would dominate the figures.)
          ...(AUDIO ? ['-f', 's16le', '-ar', '48000', '-ac', '2', '-i', 'pipe:3'] : []),
          '-map', '0:v', '-vf', `scale=${WIDTH}:${HEIGHT}:flags=neighbor`, '-c:v', 'libx264', '-preset', PUBLISHER_PRESET, '-tune', 'zerolatency', '-g', String(FPS), '-keyint_min', String(FPS), '-sc_threshold', '0',
          '-b:v', '2500k', '-maxrate', '2500k', '-bufsize', '2500k', '-pix_fmt', 'yuv420p',
          ...(AUDIO ? ['-map', '1:a', '-c:a', 'aac', '-b:a', '128k', '-ar', '48000'] : []),
          ...(SOURCE === 'rtmp'
            ? ['-f', 'flv', `rtmp://127.0.0.1:${rtmpPort}/live/bench`]
            : ['-f', 'mpegts', ...(opts['srt-publisher'] === 'ffmpeg-cli' ? [] : ['-muxdelay', '0']), `srt://127.0.0.1:${srtPort}?mode=caller&latency=${SRT_LATENCY_MS * 1000}&pkt_size=1316&streamid=${encodeURIComponent('#!::r=live/bench,m=publish')}`]),
        ],
        // The publisher stands for a machine of its own (OBS on the streamer's PC): ahead of the server and the
        // browser for the CPU, so it keeps real time (its backlog is printed; > 1 frame means it fell behind).
        { stdin: true, pipes: AUDIO ? 1 : 0, nice: PUBLISHER_NICE },
      );
      publisher = ff;

      ff.child.stdin!.on('error', () => undefined); // ffmpeg exiting shows up below as no frames
      const pcm = AUDIO ? (ff.child.stdio[3] as Writable) : undefined;
      pcm?.on('error', () => undefined);
      let n = 0;
      let samples = 0;
      const start = Date.now();
      ticker = setInterval(() => {
        // Frames and samples are paced by the wall clock; each frame carries the time it was "captured".
        const elapsed = Date.now() - start;
        const due = Math.floor((elapsed * FPS) / 1000);
        while (n <= due && ff.child.stdin!.writable) ff.child.stdin!.write(frame(Date.now(), n++));
        publisherBacklog = Math.max(publisherBacklog, Math.floor(ff.child.stdin!.writableLength / FRAME_BYTES));
        const dueSamples = elapsed * 48;
        if (pcm?.writable && dueSamples > samples) {
          const block = Buffer.alloc((dueSamples - samples) * 4);
          for (let i = 0; i < dueSamples - samples; i++) {
            const v = Math.round(8000 * Math.sin((2 * Math.PI * 440 * (samples + i)) / 48_000));
            block.writeInt16LE(v, i * 4);
            block.writeInt16LE(v, i * 4 + 2);
          }
          samples = dueSamples;
          pcm.write(block);
        }
      }, 5);
      browser = await launchChromium();
      // This process draws the frames (the camera): the publisher's priority, or frames wait behind the browser
      // (set after Chromium started, which would inherit it).
      try {
        setPriority(PUBLISHER_NICE);
      } catch {
        // not root: frames may come late, which the backlog figure shows
      }
    } else {
      browser = await launchChromium(['--use-fake-ui-for-media-stream']);
      const page = await browser.newPage();
      page.on('pageerror', (err) => console.error(`publisher page error: ${err.message}`));
      await page.addInitScript(PUBLISHER_SOURCE);
      await page.goto(`${base}/broadcast?stream=bench&key=open`);
      await page.click('#go');
      await waitUntil('the publisher page to be live', async () => (await page.textContent('#badge')) === 'Live', 20_000, 100);
      publisherPage = page;
    }
    await waitUntil('the stream to be playable', async () => {
      const r = await fetch(`${base}/api/v1/streams/bench`).catch(() => undefined);
      return r?.ok && ((await r.json()) as { playable: boolean }).playable;
    }, 30_000, 250).catch((err: unknown) => {
      throw new Error(`${String(err)}\nffmpeg: ${publisher?.stderr() ?? ''}`);
    });
    await new Promise((r) => setTimeout(r, 3000)); // a few segments, as a viewer arriving mid-stream finds

    if (WARM_UP) {
      // A viewer's browser is usually running already: one page plays the stream (to its first frame) and closes
      // before the measured loads, so the first measured join is not also the browser's own start.
      const page = await browser.newPage();
      await page.addInitScript(PAGE_PROBE);
      await page.goto(bare ? bare.url : `${base}/watch/bench?protocol=${PROTOCOL}${PROTOCOL === 'll-hls' && HLS_DEFAULTS ? '&hls=defaults' : ''}`);
      await waitUntil('the warm-up page’s first frame', () => page.evaluate(() => (window as unknown as { benchFirstFrame?: number }).benchFirstFrame), 20_000, 50);
      await page.close();
    }
    for (let load = 0; load < LOADS; load++) {
      const page = await browser.newPage();
      page.on('pageerror', (err) => console.error(`page error: ${err.message}`));
      page.on('console', (msg) => {
        if (msg.type() === 'error' || msg.text().startsWith('{"hlsLatencyMs')) console.error(`page console: ${msg.text()}`);
      });
      await page.addInitScript(PAGE_PROBE);
      await page.goto(bare ? bare.url : `${base}/watch/bench?protocol=${PROTOCOL}${PROTOCOL === 'll-hls' && HLS_DEFAULTS ? '&hls=defaults' : ''}`);
      await waitUntil('the first frame', () => page.evaluate(() => (window as unknown as { benchFirstFrame?: number }).benchFirstFrame), 20_000, 50).catch(
        async (err: unknown) => {
          const state = await page.evaluate(() => {
            const v = document.querySelector('video');
            return { stats: (window as unknown as { glasscast?: { getStats(): unknown } }).glasscast?.getStats(), readyState: v?.readyState, error: v?.error?.message };
          });
          throw new Error(`${String(err)}; page: ${JSON.stringify(state)}`);
        },
      );
      if (LAYER !== 'src' && load === 0) {
        // Pick the rendition from the player's quality menu, then measure only once it plays.
        await page.evaluate(`window.glasscast.setQuality('${LAYER}')`);
        await waitUntil(`the ${LAYER} rendition`, () => page.evaluate(`window.glasscast.getStats().quality.current === '${LAYER}' && document.querySelector('video').videoHeight === ${Number.parseInt(LAYER)}`), 20_000, 100);
        await page.evaluate('window.benchFrames = []');
      }
      const measureMs = load === 0 ? SECONDS * 1000 : 5000;
      const trace = process.env.G2G_TRACE ? setInterval(() => {
        void page.evaluate(() => {
          const h = (window as unknown as { glasscast: { hls?: { latency: number; targetLatency: number; latencyController?: { stallCount: number } } } }).glasscast.hls;
          const v = document.querySelector('video')!;
          const f = (window as unknown as { benchFrames: { latency: number }[] }).benchFrames;
          return { fast: (window as unknown as { benchProbeFast: boolean }).benchProbeFast, probeMs: Math.round((window as unknown as { benchProbeMs: number }).benchProbeMs), dropped: (v as HTMLVideoElement).getVideoPlaybackQuality().droppedVideoFrames, lat: h?.latency, target: h?.targetLatency, stalls: h?.latencyController?.stallCount, buf: v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0, g2g: f[f.length - 1]?.latency };
        }).then((x) => console.error('trace', JSON.stringify({ ...x, backlog: publisher ? Math.floor(publisher.child.stdin!.writableLength / FRAME_BYTES) : undefined }))).catch(() => undefined);
      }, 1000) : undefined;
      const receiverAtStart = PROTOCOL === 'webrtc' && load === 0 ? await receiverTotals(page) : undefined;
      if (load === 0) publisherBacklog = 0; // counted over the measured window
      if (load === 0 && API_LOAD > 0) startApiLoad(SECONDS);
      await new Promise((r) => setTimeout(r, measureMs));
      clearInterval(trace);
      if (load === 0) await apiLoad.done;
      const receiver = PROTOCOL === 'webrtc' && load === 0 && receiverAtStart ? receiverDelays(receiverAtStart, await receiverTotals(page)) : undefined;
      const got = await page.evaluate(() => {
        const w = window as unknown as { benchFrames: { latency: number; at: number }[]; benchFirstFrame: number; benchBad: number; glasscast: { getStats(): { stalls: number }; getQuality(): { current: string | undefined } } };
        const stats = w.glasscast.getStats() as { stalls: number; transport?: string; latencyMs?: number; bufferMs?: number };
        console.log(JSON.stringify({ hlsLatencyMs: stats.latencyMs, bufferMs: stats.bufferMs }));
        // The player's own start: its first request for the stream (status or playlist), from the page's resources.
        const playerStart = performance.getEntriesByType('resource').find((e) => /\/api\/v1\/streams\/|\/hls\/|\/whep\//.test(e.name))?.startTime;
        return { playerStart, frames: w.benchFrames, first: w.benchFirstFrame, bad: w.benchBad, stalls: stats.stalls, transport: stats.transport, level: w.glasscast.getQuality().current, height: document.querySelector('video')?.videoHeight };
      });
      if (process.env.G2G_TRACE && PROTOCOL === 'll-hls') console.error(`load ${load} timeline (first frame at ${Math.round(got.first)}):\n  ` + ((await page.evaluate(`(window.benchTimeline || []).concat(performance.getEntriesByType('resource').slice(0, 40).map((e) => Math.round(e.startTime) + ' fetch ' + e.name.replace(/^.*\\//, '') + ' +' + Math.round(e.responseStart - e.startTime) + ' +' + Math.round(e.responseEnd - e.startTime)))`)) as string[]).sort((a, b) => parseInt(a) - parseInt(b)).join('\n  '));
      results.ttff.push(got.first);
      if (got.playerStart !== undefined) results.ttffPlayer.push(got.first - got.playerStart);
      // Each join's own latency: its frames after the first second (hls.js with its defaults never changes speed,
      // so where a join starts is where it stays).
      const joinT0 = got.frames[0]?.at ?? 0;
      results.joins.push(quantile(got.frames.filter((f) => f.at - joinT0 > 1000).map((f) => f.latency), 0.5));
      if (load === 0) {
        // Skip the first 3 s while the player settles onto its target latency.
        const t0 = got.frames[0]?.at ?? 0;
        results.latencies = got.frames.filter((f) => f.at - t0 > 3000).map((f) => f.latency);
        results.stalls = got.stalls;
        results.playing = `${got.level ?? '?'} (${got.height ?? '?'} lines)`;
        results.frames = got.frames.length;
        results.undecodable = got.bad;
        results.receiver = receiver;
        results.transport = got.transport;
      }
      await page.close();
    }
  } finally {
    clearInterval(ticker);
    apiLoad.child?.kill('SIGKILL');
    await publisherPage?.click('#stop').catch(() => undefined);
    await browser?.close();
    publisher?.child.stdin!.end();
    (publisher?.child.stdio[3] as Writable | null | undefined)?.end();
    await publisher?.stop('SIGKILL');
    server.kill('SIGTERM');
    if (server.exitCode === null) await new Promise((r) => server.once('exit', r));
    rmSync(dataDir, { recursive: true, force: true });
    bare?.server.close();
  }
  const figures = {
    bench: `${SOURCE}-to-${PROTOCOL}-glass-to-glass${LAYER === 'src' ? '' : `-${LAYER}-rendition`}${TRANSPORT === 'any' ? '' : `-over-${TRANSPORT}`}`,
    transport: PROTOCOL === 'webrtc' ? (results.transport ?? 'unknown') : undefined,
    row: opts.row,
    rendition: LAYER === 'src' ? 'source' : `${LAYER} (x264 ladder, 500 kb/s)`,
    source: SOURCE !== 'whip' ? `x264 veryfast zerolatency, ${WIDTH}x${HEIGHT}@30, 1 s GOP, 2.5 Mb/s CBR, ${AUDIO ? 'AAC 128 kb/s' : 'no audio'}, ${SOURCE === 'srt' ? `MPEG-TS over SRT (latency ${SRT_LATENCY_MS} ms)` : 'RTMP'}` : `canvas ${WIDTH}x${HEIGHT}@30 + tone → Chromium H.264 (OpenH264) + Opus over WHIP from /broadcast`,
    server: { ladder: LADDER_FLAG[1] ?? 'default (1080p=4500k,720p=2500k,480p=1200k@30,360p=600k@30)', partTargetMs: Number(opts['part-target-ms']) },
    player: PROTOCOL === 'll-hls' ? (BARE_PAGE ? 'hls.js defaults on a bare page' : HLS_DEFAULTS ? 'hls.js defaults' : 'watch page tuning (live-edge catch-up ≤ 1.05×)') : 'Chromium WebRTC',
    partTargetMs: Number(opts['part-target-ms']),
    latencyMs: { median: quantile(results.latencies, 0.5), p95: quantile(results.latencies, 0.95), samples: results.latencies.length },
    timeToFirstFrameMs: { median: quantile(results.ttff, 0.5), max: Math.max(...results.ttff), loads: results.ttff.length },
    /** From the player's first request (status or playlist) to the first frame: the page's own load left out. */
    playerStartToFirstFrameMs: { median: quantile(results.ttffPlayer, 0.5), max: Math.max(...results.ttffPlayer) },
    /** Median latency of each join (page load), after its first second. */
    joinMediansMs: results.joins,
    stalls: results.stalls,
    undecodableFrames: results.undecodable,
    playing: results.playing,
    receiverDelayMs: results.receiver,
    apiLoad: API_LOAD > 0 ? { requestsPerSecond: Math.round(apiLoad.sent / SECONDS), ok: apiLoad.ok, failed: apiLoad.failed } : undefined,
  };
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(`bench/results/${SOURCE === 'rtmp' ? '' : `${SOURCE}-to-`}${PROTOCOL}${LAYER === 'src' ? '' : `-${LAYER}`}${TRANSPORT === 'any' ? '' : `-${TRANSPORT}`}-${opts.row}-latency.json`, JSON.stringify(figures, null, 2) + '\n');
  console.log(
    `[${opts.row}] ${PROTOCOL === 'webrtc' ? `WebRTC (WHEP over ${figures.transport?.toUpperCase()})` : `LL-HLS (${figures.player})`} glass-to-glass, ${SOURCE === 'whip' ? 'WHIP (browser)' : `${SOURCE === 'srt' ? `SRT ${SRT_LATENCY_MS} ms` : 'RTMP'} (x264 ${WIDTH}x${HEIGHT}${AUDIO ? ' + AAC' : ''})`} source, ladder ${figures.server.ladder}, ${figures.rendition} rendition, headless Chromium: median ${figures.latencyMs.median} ms, p95 ${figures.latencyMs.p95} ms ` +
      `over ${figures.latencyMs.samples} frames; time to first frame median ${Math.round(figures.timeToFirstFrameMs.median)} ms ` +
      `(max ${Math.round(figures.timeToFirstFrameMs.max)} ms, ${LOADS} loads; from the player's first request median ${Math.round(figures.playerStartToFirstFrameMs.median)} ms, max ${Math.round(figures.playerStartToFirstFrameMs.max)} ms); ` +
      `each join's median ${results.joins.join('/')} ms; stalls ${figures.stalls}; undecodable frames ${figures.undecodableFrames}; played ${figures.playing}` +
      (results.receiver ? `; in Chromium: audio jitter buffer ${results.receiver.audioJitterBuffer} ms (playout ${results.receiver.audioPlayout ?? '?'} ms), video jitter buffer ${results.receiver.videoJitterBuffer} ms (lip sync included)` : '') +
      `; publisher backlog max ${publisherBacklog} frames` +
      (figures.apiLoad ? `; API load ${figures.apiLoad.requestsPerSecond} req/s (${figures.apiLoad.ok} answered 2xx, ${figures.apiLoad.failed} not)` : ''),
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
