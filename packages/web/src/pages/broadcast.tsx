/**
 * Go live, `/broadcast`: a camera + microphone or a screen, previewed, sent over WHIP with the stream key
 * (`?stream=<name>&key=<key>` fills the form). Signed in to the admin, the operator picks one of their streams
 * and its key is filled in. The publishing logic is pages/broadcast-controller.ts.
 */
import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef } from 'react';
import { api, apiKey } from '../api.js';
import { mountBroadcast } from './broadcast-controller.js';

function StreamPicker() {
  const signedIn = apiKey() !== undefined;
  const streams = useQuery({ queryKey: ['admin', 'streams'], queryFn: () => api<{ streams: { name: string; title: string }[] }>('/streams?limit=100'), enabled: signedIn });
  if (!signedIn || !streams.data || streams.data.streams.length === 0) return null;
  const pick = async (name: string): Promise<void> => {
    const key = await api<{ key: string }>(`/streams/${encodeURIComponent(name)}/key`);
    const set = (id: string, value: string): void => {
      const input = document.getElementById(id) as HTMLInputElement | null;
      if (input) input.value = value;
    };
    set('stream', name);
    set('key', key.key);
    const link = document.getElementById('watch-link') as HTMLAnchorElement | null;
    if (link) link.href = `/watch/${encodeURIComponent(name)}`;
  };
  return (
    <label>
      Your streams
      <select id="my-streams" defaultValue="" onChange={(e) => void pick(e.target.value).catch(() => undefined)}>
        <option value="" disabled>
          Pick a stream…
        </option>
        {streams.data.streams.map((s) => (
          <option key={s.name} value={s.name}>
            {s.title ? `${s.title} (${s.name})` : s.name}
          </option>
        ))}
      </select>
    </label>
  );
}

export default function Broadcast() {
  const root = useRef<HTMLElement>(null);
  useEffect(() => {
    document.title = 'Go live · Glasscast';
    return mountBroadcast(root.current!);
  }, []);
  return (
    <main className="page watch broadcast" ref={root}>
      <div className="title-row">
        <h1>Go live</h1>
        <span id="badge" className="badge offline" role="status">
          Offline
        </span>
      </div>
      <div className="stage">
        <video id="preview" muted playsInline autoPlay aria-label="Preview of what you send" />
        <div id="overlay" className="overlay">
          <p id="hint">Pick a source to see a preview.</p>
        </div>
      </div>
      <form id="form" className="controls" autoComplete="off">
        <StreamPicker />
        <label>
          Source
          <select id="source">
            <option value="camera">Camera + microphone</option>
            <option value="screen">Screen share</option>
          </select>
        </label>
        <label>
          Quality
          <select id="quality" defaultValue="1280x720">
            <option value="1280x720">720p (2.5 Mb/s)</option>
            <option value="1920x1080">1080p (4.5 Mb/s)</option>
            <option value="854x480">480p (1.2 Mb/s)</option>
          </select>
        </label>
        <label>
          Stream <input id="stream" required pattern="[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,63}" />
        </label>
        <label>
          Stream key <input id="key" type="password" placeholder="from the server's first start or the admin page" />
        </label>
        <button id="preview-button" type="button">
          Preview
        </button>
        <button id="go" type="submit" className="primary">
          Go Live
        </button>
        <button id="stop" type="button" disabled>
          Stop
        </button>
      </form>
      <p id="status" className="status" role="status" />
      <p className="toolbar">
        <span id="stats" />
        <a id="watch-link" href="/watch/main" target="_blank" rel="noreferrer">
          watch link
        </a>
      </p>
    </main>
  );
}
