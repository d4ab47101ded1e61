/** Small formatters shared by the pages. */

/** `1:02:03` or `4:05` since `iso`, at `now` (ms). */
export function uptime(iso: string | null, now: number): string {
  if (!iso) return '';
  return duration(Math.max(0, now - Date.parse(iso)));
}

/** `1:02:03` or `4:05` for `ms`. */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

/** `2.45 Mb/s`, `640 kb/s` for bits/s. */
export function bitrate(bps: number | undefined | null): string {
  if (bps === undefined || bps === null || !Number.isFinite(bps)) return '–';
  return bps >= 1_000_000 ? `${(bps / 1_000_000).toFixed(2)} Mb/s` : `${Math.round(bps / 1000)} kb/s`;
}

/** `12.3 MB` for bytes. */
export function bytes(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  return `${Math.round(n / 1e3)} kB`;
}

/** `3 minutes ago`, `2 hours ago`, or a date, for `iso` at `now`. */
export function ago(iso: string, now: number): string {
  const s = Math.max(0, (now - Date.parse(iso)) / 1000);
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86_400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

/** `1 viewer`, `3 viewers`. */
export function viewers(n: number): string {
  return `${n} ${n === 1 ? 'viewer' : 'viewers'}`;
}

/** The path and query of `url` (the server's absolute links may name a host this browser reaches differently). */
export function localPath(url: string): string {
  try {
    const u = new URL(url, window.location.origin);
    return u.pathname + u.search;
  } catch {
    return url;
  }
}
