/**
 * The watch page's player, made outside React: on a direct load of `/watch/<name>`, this module (the app's first
 * import) creates the `<video>` element and starts the player before React and the rest of the app are even
 * evaluated, so the stream's status, its events and the WHEP offer go out ~100 ms sooner; the watch page then
 * adopts it. Navigating to a watch page inside the app makes one the same way, later.
 */
import { GlasscastPlayer, type PlayerState, type StreamSummary } from '@glasscast/player';

/** A player with its video element and what it said last, for the page that shows it. */
export interface WatchPlayer {
  name: string;
  video: HTMLVideoElement;
  player: GlasscastPlayer;
  state: { state: PlayerState; detail: string };
  summary: StreamSummary | undefined;
  /** Called on every state or summary change (the page re-renders). */
  onChange: (() => void) | undefined;
}

/** Makes the video element and starts the player of stream `name`, with the page's query options. */
export function startWatchPlayer(name: string, search: string): WatchPlayer {
  const query = new URLSearchParams(search);
  const video = document.createElement('video');
  video.id = 'video';
  video.muted = true;
  video.playsInline = true;
  video.controls = true;
  const forced = query.get('protocol');
  const w: WatchPlayer = { name, video, player: undefined as unknown as GlasscastPlayer, state: { state: 'offline', detail: '' }, summary: undefined, onChange: undefined };
  w.player = new GlasscastPlayer(video, {
    stream: name,
    protocol: forced === 'webrtc' || forced === 'll-hls' ? forced : 'auto',
    // `?hls=defaults`: hls.js with the library's defaults (benchmarks compare what any hls.js page gets).
    hlsDefaults: query.get('hls') === 'defaults',
    // `?mode=venue`: viewers on one network share segments (P2P through this server's tracker), ~5 s behind.
    venue: query.get('mode') === 'venue',
    // `?events=off`: poll the status instead of listening to the server's events (benchmarks compare the two).
    events: query.get('events') !== 'off',
    // `?token=`: a private stream's playback token.
    token: query.get('token') ?? undefined,
    onStateChange: (state, detail) => {
      w.state = { state, detail };
      w.onChange?.();
    },
    onSummary: (summary) => {
      w.summary = summary;
      w.onChange?.();
    },
  });
  // For end-to-end tests and debugging from the console.
  (window as unknown as { glasscast: GlasscastPlayer }).glasscast = w.player;
  w.player.start();
  return w;
}

/** The stream name of a `/watch/<name>` path (not a recording's `/watch/<name>/<id>`). */
export function watchedStream(path: string): string | undefined {
  const m = /^\/watch\/([^/]+)\/?$/.exec(path);
  return m ? decodeURIComponent(m[1]!) : undefined;
}

let early: WatchPlayer | undefined;
const direct = watchedStream(window.location.pathname);
if (direct !== undefined) early = startWatchPlayer(direct, window.location.search);

/** The player started at load for `name`, once (the first watch page takes it; later ones make their own). */
export function takeEarlyPlayer(name: string): WatchPlayer | undefined {
  const p = early?.name === name ? early : undefined;
  early = undefined;
  return p;
}
