/**
 * The directory, `/`: live public channels (thumbnail, title, viewers, uptime) pushed by the server as they
 * change, recent public recordings below, and — when nothing is live — how to go live.
 */
import { useQuery } from '@tanstack/react-query';
import { useEffect, useState } from 'react';
import { Link } from 'wouter';
import { api, type Page, type Recording, type StreamSummary } from '../api.js';
import { useLiveStreams, useNow } from '../events.js';
import { ago, duration, localPath, uptime, viewers } from '../format.js';

function Thumbnail({ src, alt }: { src: string | null; alt: string }) {
  const [failed, setFailed] = useState(false);
  useEffect(() => setFailed(false), [src]);
  // The frame keeps its 16:9 box whether or not there is a picture yet: nothing moves when it arrives.
  return <div className="thumb">{src && !failed ? <img src={src} alt={alt} loading="lazy" onError={() => setFailed(true)} /> : <span aria-hidden="true">▶</span>}</div>;
}

function Channel({ s, now }: { s: StreamSummary; now: number }) {
  // Until the first picture exists, ask for one anyway (asking is what makes the server keep it fresh).
  const thumb = s.thumbnail ?? `/thumbnails/${encodeURIComponent(s.name)}.jpg`;
  return (
    <li className="card" data-stream={s.name}>
      <Link href={`/watch/${encodeURIComponent(s.name)}`} className="card-link">
        <Thumbnail src={thumb} alt="" />
        <span className="badge live">{s.state === 'reconnecting' ? 'Reconnecting' : 'Live'}</span>
        <span className="card-title">{s.title || s.name}</span>
        <span className="card-meta">
          <span data-viewers={s.viewers}>{viewers(s.viewers)}</span> · <span>{uptime(s.startedAt, now)}</span>
        </span>
      </Link>
    </li>
  );
}

function HowToGoLive() {
  const server = useQuery({ queryKey: ['server'], queryFn: () => api<{ rtmp: string; srt: string; whip: string }>('/server', { auth: false }) });
  const rtmp = server.data?.rtmp ?? 'rtmp://<this server>:1935/live';
  return (
    <section className="empty" aria-labelledby="empty-title">
      <h2 id="empty-title">Nothing is live right now</h2>
      <p>Channels appear here by themselves the moment they go live. To go live:</p>
      <ol>
        <li>
          <strong>OBS</strong>: Settings → Stream → Service <em>Custom</em>, Server <code>{rtmp}</code>, Stream key: the key printed when Glasscast first started (or from <Link href="/admin">Admin</Link>).
        </li>
        <li>
          <strong>FFmpeg</strong>: <code>{`ffmpeg -re -i input.mp4 -c:v libx264 -tune zerolatency -g 60 -c:a aac -f flv ${rtmp}/<key>`}</code>
        </li>
        <li>
          <strong>This browser</strong>: <Link href="/broadcast">Go live with a camera or a screen</Link>.
        </li>
      </ol>
    </section>
  );
}

function RecentRecordings({ now, liveCount }: { now: number; liveCount: number }) {
  const recordings = useQuery({
    queryKey: ['recordings', 'public', liveCount],
    queryFn: () => api<Page<Recording>>('/recordings?limit=12', { auth: false }),
    refetchInterval: 30_000,
  });
  const ended = (recordings.data?.items ?? []).filter((r) => r.state !== 'recording' && r.state !== 'failed');
  if (ended.length === 0) return null;
  return (
    <section aria-labelledby="recent-title">
      <h2 id="recent-title">Recent broadcasts</h2>
      <ul className="grid">
        {ended.map((r) => (
          <li className="card" key={r.id}>
            <Link href={`/watch/${encodeURIComponent(r.stream)}/${r.id}`} className="card-link">
              <Thumbnail src={localPath(r.playback.thumbnail)} alt="" />
              <span className="badge">{duration(r.durationMs)}</span>
              <span className="card-title">{r.stream}</span>
              <span className="card-meta">{ago(r.startedAt, now)}</span>
            </Link>
          </li>
        ))}
      </ul>
    </section>
  );
}

export function Directory() {
  const { streams, connected } = useLiveStreams();
  const now = useNow();
  useEffect(() => {
    document.title = streams.length > 0 ? `(${streams.length}) Live · Glasscast` : 'Glasscast';
  }, [streams.length]);
  return (
    <main className="page" aria-busy={!connected}>
      <h1>Live now</h1>
      {connected && streams.length === 0 ? <HowToGoLive /> : null}
      <ul className="grid" aria-label="Live channels">
        {streams.map((s) => (
          <Channel key={s.name} s={s} now={now} />
        ))}
      </ul>
      <RecentRecordings now={now} liveCount={streams.length} />
    </main>
  );
}
