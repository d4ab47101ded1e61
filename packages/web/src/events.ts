/**
 * The server's pushed stream state (`/api/v1/events`, Server-Sent Events) as a React hook: the directory's list
 * of live public streams, kept current without polling.
 */
import { useEffect, useState } from 'react';
import type { StreamSummary } from './api.js';

/** Live public streams, in the order they went live (newest first); `connected` once the first list arrived. */
export function useLiveStreams(): { streams: StreamSummary[]; connected: boolean } {
  const [streams, setStreams] = useState<Map<string, StreamSummary>>(new Map());
  const [connected, setConnected] = useState(false);
  useEffect(() => {
    const es = new EventSource('/api/v1/events');
    es.addEventListener('streams', (e) => {
      const list = (JSON.parse((e as MessageEvent<string>).data) as { streams: StreamSummary[] }).streams;
      setStreams(new Map(list.map((s) => [s.name, s])));
      setConnected(true);
    });
    es.addEventListener('stream', (e) => {
      const s = JSON.parse((e as MessageEvent<string>).data) as StreamSummary;
      setStreams((before) => {
        const next = new Map(before);
        if (s.state === 'offline') next.delete(s.name);
        else next.set(s.name, s);
        return next;
      });
    });
    return () => es.close();
  }, []);
  const list = [...streams.values()].sort((a, b) => (b.startedAt ?? '').localeCompare(a.startedAt ?? '') || a.name.localeCompare(b.name));
  return { streams: list, connected };
}

/** `Date.now()`, renewed every `ms` (for uptimes). */
export function useNow(ms = 1000): number {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(t);
  }, [ms]);
  return now;
}
