/**
 * The watch page, `/watch/<name>`: plays the stream (WebRTC first, LL-HLS when WebRTC cannot), shows its state,
 * title, viewer count, protocol and latency, a quality menu, a "stats for nerds" panel, a share panel with a QR
 * code, fullscreen and picture-in-picture. An offline page starts by itself the moment the server says the stream
 * is playable. `?protocol=webrtc|ll-hls` forces one; `?mode=venue` plays in venue mode (viewers share segments
 * peer to peer; the stats show the share from peers); `?token=` plays a private stream; `?hls=defaults` runs
 * hls.js with its own defaults and `?events=off` polls instead of listening (benchmarks). `window.glasscast` is the player, for tests and the console.
 */
import type { DetailedStats, GlasscastPlayer, PlayerState, PlayerStats } from '@glasscast/player';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useLayoutEffect, useRef, useState } from 'react';
import { api } from '../api.js';
import { CopyButton } from '../components/copy-button.js';
import { QrCode } from '../components/qr-code.js';
import { bitrate, viewers } from '../format.js';
import { startWatchPlayer, takeEarlyPlayer, type WatchPlayer } from '../watch-player.js';

/** Venue mode's share of segment bytes that came from other viewers, as `42 % from peers`. */
function offload(v: NonNullable<PlayerStats['venue']>): string {
  const all = v.peerBytes + v.httpBytes;
  return all > 0 ? `${Math.round((100 * v.peerBytes) / all)} % from peers` : 'no segments yet';
}

const LABELS: Record<PlayerState, [string, string]> = {
  offline: ['Offline', 'This stream is offline. It will start here by itself when it goes live.'],
  connecting: ['Connecting', 'Connecting…'],
  playing: ['Live', ''],
  reconnecting: ['Reconnecting', 'The stream was interrupted; reconnecting…'],
  ended: ['Ended', 'The stream has ended.'],
};

function NerdStats({ player }: { player: GlasscastPlayer }) {
  const [d, setD] = useState<DetailedStats | undefined>();
  useEffect(() => {
    let live = true;
    const read = (): void => void player.getDetailedStats().then((x) => live && setD(x), () => undefined);
    read();
    const t = setInterval(read, 1000);
    return () => {
      live = false;
      clearInterval(t);
    };
  }, [player]);
  const ms = (v: number | undefined): string => (v === undefined ? '–' : `${v} ms`);
  const rows: [string, string][] = d
    ? [
        ['Protocol', d.protocol?.toUpperCase() ?? '–'],
        ['Transport', d.transport?.toUpperCase().replace('RELAY-', 'TURN relay, ') ?? '–'],
        ['Rendition', d.rendition ?? '–'],
        ['Resolution', d.width ? `${d.width}×${d.height}` : '–'],
        ['Bitrate', bitrate(d.bitrate)],
        ['Frames decoded', String(d.framesDecoded)],
        ['Frames dropped', String(d.framesDropped)],
        [d.protocol === 'webrtc' ? 'Jitter buffer' : 'Buffer ahead', ms(d.bufferMs)],
        ['Round trip', ms(d.rttMs)],
        ['Packets lost', d.packetsLost === undefined ? '–' : String(d.packetsLost)],
        ['Glass-to-glass (est.)', ms(d.latencyMs)],
      ]
    : [];
  return (
    <section className="nerds" aria-label="Stats for nerds" id="nerds">
      <dl>
        {rows.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd>{v}</dd>
          </div>
        ))}
      </dl>
    </section>
  );
}

function SharePanel({ url }: { url: string }) {
  return (
    <section className="share" aria-label="Share">
      <QrCode text={url} />
      <div>
        <p>Scan with a phone in the same room, or send the link:</p>
        <p className="share-url">
          <code>{url}</code> <CopyButton text={url} label="Copy link" />
        </p>
      </div>
    </section>
  );
}

export function Watch({ name }: { name: string }) {
  const slotRef = useRef<HTMLDivElement>(null);
  const stageRef = useRef<HTMLDivElement>(null);
  const [watch, setWatch] = useState<WatchPlayer>();
  const [, setVersion] = useState(0);
  const [stats, setStats] = useState<PlayerStats>();
  const [panel, setPanel] = useState<'none' | 'nerds' | 'share'>('none');
  /** The level the viewer picked, shown until the player reaches it (a switch lands at the next segment or keyframe). */
  const [chosen, setChosen] = useState<{ id: string; at: number }>();
  const query = new URLSearchParams(window.location.search);
  const token = query.get('token') ?? undefined;
  const status = useQuery({
    queryKey: ['status', name, token],
    queryFn: () => api<{ title: string; description: string }>(`/streams/${encodeURIComponent(name)}${token ? `?token=${encodeURIComponent(token)}` : ''}`, { auth: false }),
    retry: false,
  });

  // The player started at page load (watch-player.ts) or a new one; its video element goes into the stage. A
  // layout effect: in the same task as the first render, not after the browser's next paint.
  useLayoutEffect(() => {
    const w = takeEarlyPlayer(name) ?? startWatchPlayer(name, window.location.search);
    slotRef.current!.replaceChildren(w.video);
    w.onChange = () => setVersion((v) => v + 1);
    setWatch(w);
    const t = setInterval(() => setStats(w.player.getStats()), 500);
    return () => {
      clearInterval(t);
      w.onChange = undefined;
      w.player.destroy();
      w.video.remove();
    };
    // One player per mount (the page is keyed by stream name).
  }, [name]);

  const player = watch?.player;
  const state = watch?.state ?? { state: 'offline' as PlayerState, detail: '' };
  const summary = watch?.summary;
  const title = summary?.title || status.data?.title || name;
  useEffect(() => {
    document.title = `${title} · Glasscast`;
    watch?.video.setAttribute('aria-label', `${title}, live video`);
  }, [title, watch]);

  const [label, text] = LABELS[state.state];
  // A refusal (private stream, expired token) is worth more than "offline".
  const message = state.state === 'offline' && / token|not allowed|denied/i.test(state.detail) ? state.detail : text;
  const q = stats?.quality;
  const shown = q ? (q.mode === 'auto' ? 'auto' : (q.current ?? 'auto')) : 'auto';
  const menuValue = chosen && chosen.id !== shown && Date.now() - chosen.at < 5000 ? chosen.id : shown;
  const playing = q?.levels.find((l) => l.id === q.current);
  const shareUrl = `${window.location.origin}/watch/${encodeURIComponent(name)}${token ? `?token=${encodeURIComponent(token)}` : ''}`;
  const live = summary ? summary.state !== 'offline' : state.state === 'playing';

  const fullscreen = (): void => {
    if (document.fullscreenElement) void document.exitFullscreen();
    else void (stageRef.current?.requestFullscreen?.() ?? Promise.resolve()).catch(() => undefined);
  };
  const pip = (): void => {
    if (document.pictureInPictureElement) void document.exitPictureInPicture();
    else void watch?.video.requestPictureInPicture?.().catch(() => undefined);
  };

  return (
    <main className="page watch">
      <div className="title-row">
        <h1 id="title">{title}</h1>
        <span id="badge" className={`badge ${state.state}`} role="status">
          {label}
        </span>
        {live && summary ? (
          <span className="viewers" id="viewers" data-viewers={summary.viewers}>
            {viewers(summary.viewers)}
          </span>
        ) : null}
      </div>
      <div className="stage" ref={stageRef}>
        <div className="video-slot" ref={slotRef} />
        <div id="overlay" className="overlay" hidden={state.state === 'playing'}>
          <p id="message">{message}</p>
        </div>
      </div>
      <div className="toolbar" role="toolbar" aria-label="Player">
        <span id="protocol" data-transport={stats?.transport ?? ''}>
          {stats?.protocol ? stats.protocol.toUpperCase() : ''}
          {stats?.venue ? ` · venue ${offload(stats.venue)}` : ''}
          {stats?.transport === 'tcp' || stats?.transport?.startsWith('relay') ? ' (TCP)' : ''}
        </span>
        {stats?.webrtcFailed && stats.protocol === 'll-hls' ? (
          <a id="diagnostics-link" className="diag-link" href="/diagnostics" title="WebRTC could not connect from this network; find out why">
            Why not sub-second?
          </a>
        ) : null}
        <span id="latency">{stats?.latency !== undefined && stats.state === 'playing' ? `latency ${stats.latency.toFixed(2)} s` : ''}</span>
        <span id="rendition" data-level={q?.current ?? ''}>
          {playing && q && q.levels.length > 1 ? `${playing.label}${q.mode === 'auto' ? ' (auto)' : ''}` : ''}
        </span>
        <span className="spacer" />
        <label className="quality" hidden={!q || q.levels.length < 2}>
          Quality{' '}
          <select id="quality" aria-label="Quality" value={menuValue}
            onChange={(e) => {
              setChosen({ id: e.target.value, at: Date.now() });
              void player?.setQuality(e.target.value);
            }}
          >
            <option value="auto">Auto</option>
            {q?.levels.map((l) => (
              <option key={l.id} value={l.id}>
                {l.label}
              </option>
            ))}
          </select>
        </label>
        <button type="button" className="small" aria-pressed={panel === 'nerds'} onClick={() => setPanel(panel === 'nerds' ? 'none' : 'nerds')}>
          Stats
        </button>
        <button type="button" className="small" aria-pressed={panel === 'share'} onClick={() => setPanel(panel === 'share' ? 'none' : 'share')}>
          Share
        </button>
        <button type="button" className="small" onClick={pip} disabled={!document.pictureInPictureEnabled}>
          Picture in picture
        </button>
        <button type="button" className="small" onClick={fullscreen}>
          Fullscreen
        </button>
      </div>
      {panel === 'nerds' && player ? <NerdStats player={player} /> : null}
      {panel === 'share' ? <SharePanel url={shareUrl} /> : null}
      {status.data?.description ? <p className="description">{status.data.description}</p> : null}
    </main>
  );
}
