/** The watch page, `/watch/<name>`: plays the stream, shows offline/live state and latency. */
import { GlasscastPlayer, type PlayerState } from '@glasscast/player';

const name = decodeURIComponent(window.location.pathname.split('/').filter(Boolean)[1] ?? 'main');
const video = document.querySelector<HTMLVideoElement>('#video')!;
const badge = document.querySelector<HTMLSpanElement>('#badge')!;
const overlay = document.querySelector<HTMLDivElement>('#overlay')!;
const message = document.querySelector<HTMLParagraphElement>('#message')!;
const protocol = document.querySelector<HTMLSpanElement>('#protocol')!;
const latency = document.querySelector<HTMLSpanElement>('#latency')!;
document.querySelector('#title')!.textContent = name;
document.title = `${name} · Glasscast`;

const LABELS: Record<PlayerState, [string, string]> = {
  offline: ['Offline', 'This stream is offline. It will start here by itself when it goes live.'],
  connecting: ['Connecting', 'Connecting…'],
  playing: ['Live', ''],
  reconnecting: ['Reconnecting', 'The stream was interrupted; reconnecting…'],
  ended: ['Ended', 'The stream has ended.'],
};

const forced = new URLSearchParams(window.location.search).get('protocol');
const player = new GlasscastPlayer(video, {
  stream: name,
  protocol: forced === 'webrtc' || forced === 'll-hls' ? forced : 'auto',
  onStateChange(state) {
    const [label, text] = LABELS[state];
    badge.textContent = label;
    badge.className = `badge ${state}`;
    message.textContent = text;
    overlay.hidden = state === 'playing';
  },
});
player.start();

setInterval(() => {
  const stats = player.getStats();
  protocol.textContent = stats.protocol ? stats.protocol.toUpperCase() : '';
  latency.textContent = stats.latency !== undefined && stats.state === 'playing' ? `latency ${stats.latency.toFixed(2)} s` : '';
}, 500);

// For end-to-end tests and debugging from the console.
(window as unknown as { glasscast: GlasscastPlayer }).glasscast = player;
