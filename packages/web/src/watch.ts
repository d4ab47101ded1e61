/** The watch page, `/watch/<name>`: plays the stream, shows offline/live state and latency. */
import { GlasscastPlayer, type PlayerState } from '@glasscast/player';

const name = decodeURIComponent(window.location.pathname.split('/').filter(Boolean)[1] ?? 'main');
const video = document.querySelector<HTMLVideoElement>('#video')!;
const badge = document.querySelector<HTMLSpanElement>('#badge')!;
const overlay = document.querySelector<HTMLDivElement>('#overlay')!;
const message = document.querySelector<HTMLParagraphElement>('#message')!;
const protocol = document.querySelector<HTMLSpanElement>('#protocol')!;
const latency = document.querySelector<HTMLSpanElement>('#latency')!;
const rendition = document.querySelector<HTMLSpanElement>('#rendition')!;
const quality = document.querySelector<HTMLSelectElement>('#quality')!;
const qualityLabel = quality.closest('label')!;
document.querySelector('#title')!.textContent = name;
document.title = `${name} · Glasscast`;

const LABELS: Record<PlayerState, [string, string]> = {
  offline: ['Offline', 'This stream is offline. It will start here by itself when it goes live.'],
  connecting: ['Connecting', 'Connecting…'],
  playing: ['Live', ''],
  reconnecting: ['Reconnecting', 'The stream was interrupted; reconnecting…'],
  ended: ['Ended', 'The stream has ended.'],
};

const query = new URLSearchParams(window.location.search);
const forced = query.get('protocol');
const player = new GlasscastPlayer(video, {
  stream: name,
  protocol: forced === 'webrtc' || forced === 'll-hls' ? forced : 'auto',
  // `?hls=defaults`: hls.js with the library's defaults (benchmarks compare what any hls.js page gets).
  hlsDefaults: query.get('hls') === 'defaults',
  // `?token=`: a private stream's playback token.
  token: query.get('token') ?? undefined,
  onStateChange(state, detail) {
    const [label, text] = LABELS[state];
    badge.textContent = label;
    badge.className = `badge ${state}`;
    // A refusal (private stream, expired token) is worth more than "offline".
    message.textContent = state === 'offline' && / token|not allowed|denied/i.test(detail) ? detail : text;
    overlay.hidden = state === 'playing';
  },
});
player.start();

// Quality menu: Auto plus every level (the same for WebRTC and LL-HLS); the level playing is shown beside it.
let menuKey = '';
quality.addEventListener('change', () => {
  void player.setQuality(quality.value);
});

setInterval(() => {
  const stats = player.getStats();
  protocol.textContent = stats.protocol ? stats.protocol.toUpperCase() : '';
  latency.textContent = stats.latency !== undefined && stats.state === 'playing' ? `latency ${stats.latency.toFixed(2)} s` : '';
  const q = stats.quality;
  const key = q.levels.map((l) => `${l.id}:${l.label}`).join(',');
  if (key !== menuKey) {
    menuKey = key;
    quality.replaceChildren(new Option('Auto', 'auto'), ...q.levels.map((l) => new Option(l.label, l.id)));
  }
  qualityLabel.hidden = q.levels.length < 2;
  if (document.activeElement !== quality) quality.value = q.mode === 'auto' ? 'auto' : (q.current ?? 'auto');
  const playing = q.levels.find((l) => l.id === q.current);
  rendition.textContent = playing && q.levels.length > 1 ? `${playing.label}${q.mode === 'auto' ? ' (auto)' : ''}` : '';
  rendition.dataset['level'] = q.current ?? '';
}, 500);

// For end-to-end tests and debugging from the console.
(window as unknown as { glasscast: GlasscastPlayer }).glasscast = player;
