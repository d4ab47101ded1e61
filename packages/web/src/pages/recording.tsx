/**
 * A recording, `/watch/<name>/<recordingId>`: plays its HLS playlist (VOD, or EVENT while still recording) from the
 * start with seeking, and offers the MP4 download once ready. `?token=` plays a private stream's recording.
 */
import { loadHls } from '@glasscast/player';
import type Hls from 'hls.js';
import { useQuery } from '@tanstack/react-query';
import { useEffect, useRef, useState } from 'react';
import { Link } from 'wouter';
import { api, ApiError, type Recording } from '../api.js';
import { bytes, duration } from '../format.js';

export default function RecordingPage({ name, id }: { name: string; id: string }) {
  const videoRef = useRef<HTMLVideoElement>(null);
  const [error, setError] = useState<string>();
  const token = new URLSearchParams(window.location.search).get('token') ?? undefined;
  const q = token ? `?token=${encodeURIComponent(token)}` : '';
  const rec = useQuery({
    queryKey: ['recording', id],
    queryFn: () => api<Recording>(`/recordings/${encodeURIComponent(id)}`),
    retry: false,
    refetchInterval: (query) => (query.state.data?.state === 'recording' || query.state.data?.state === 'finalizing' ? 5000 : false),
  });

  useEffect(() => {
    const video = videoRef.current!;
    const url = `/vod/${encodeURIComponent(id)}/index.m3u8${q}`;
    let hls: Hls | undefined;
    let gone = false;
    void loadHls().then(
      (Hls) => {
        if (gone) return;
        if (!Hls.isSupported()) {
          video.src = url;
          return;
        }
        const player = new Hls({ startPosition: 0 });
        hls = player;
        player.on(Hls.Events.ERROR, (_e, data) => {
          if (!data.fatal) return;
          setError(data.response?.code === 401 || data.response?.code === 403 ? 'This recording is private: open it with its link (a playback token).' : `The recording cannot be played (${data.details}).`);
          player.destroy();
        });
        player.loadSource(url);
        player.attachMedia(video);
        (window as unknown as { glasscastRecording: unknown }).glasscastRecording = player;
      },
      () => setError('The player could not be loaded; reload the page.'),
    );
    return () => {
      gone = true;
      hls?.destroy();
    };
  }, [id, q]);

  const r = rec.data;
  const notFound = rec.error instanceof ApiError && rec.error.status === 404;
  useEffect(() => {
    document.title = `${name} (recording) · Glasscast`;
  }, [name]);
  return (
    <main className="page watch">
      <div className="title-row">
        <h1 id="title">{name}</h1>
        <span className={`badge ${r?.state === 'recording' ? 'live' : ''}`}>{r?.state === 'recording' ? 'Recording now' : 'Recorded'}</span>
        <Link href={`/watch/${encodeURIComponent(name)}${q}`}>Live page</Link>
      </div>
      <div className="stage">
        <video id="video" ref={videoRef} playsInline controls muted aria-label={`${name}, recording`} />
        {error || notFound ? (
          <div className="overlay">
            <p id="message">{error ?? 'No such recording.'}</p>
          </div>
        ) : null}
      </div>
      {r ? (
        <p className="toolbar">
          <span>Started {new Date(r.startedAt).toLocaleString()}</span>
          <span>{duration(r.durationMs)}</span>
          <span>{bytes(r.sizeBytes)}</span>
          <span className="spacer" />
          {r.state !== 'recording' && r.state !== 'finalizing' && r.state !== 'failed' ? (
            <a className="button small" href={`/vod/${encodeURIComponent(r.id)}.mp4${q}`} download>
              Download MP4
            </a>
          ) : null}
        </p>
      ) : null}
    </main>
  );
}
