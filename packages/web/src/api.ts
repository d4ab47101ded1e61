/**
 * Talking to the Glasscast API from the web app: JSON in and out, RFC 9457 problem details turned into
 * `ApiError`s with the server's catalogue code, and the admin's API key (kept in sessionStorage — gone when the
 * tab closes, never put in a URL).
 */

/** An API answer that was not 2xx: `code` is the server's catalogue code (`STREAM_NOT_FOUND`, …). */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const KEY_ITEM = 'glasscast.apiKey';

/** The admin's API key for this tab, if signed in. */
export function apiKey(): string | undefined {
  return sessionStorage.getItem(KEY_ITEM) ?? undefined;
}

/** Signs in (keeps `key` for this tab) or out (`undefined`). */
export function setApiKey(key: string | undefined): void {
  if (key) sessionStorage.setItem(KEY_ITEM, key);
  else sessionStorage.removeItem(KEY_ITEM);
}

/**
 * Calls `/api/v1<path>` with the tab's API key (if any) and JSON `body` (if any); resolves the parsed JSON
 * (undefined for 204). @throws ApiError for a non-2xx answer, TypeError when the server is unreachable.
 */
export async function api<T>(path: string, init: { method?: string; body?: unknown; auth?: boolean } = {}): Promise<T> {
  const headers: Record<string, string> = {};
  const key = init.auth === false ? undefined : apiKey();
  if (key) headers['authorization'] = `Bearer ${key}`;
  if (init.body !== undefined) headers['content-type'] = 'application/json';
  const res = await fetch(`/api/v1${path}`, { method: init.method ?? 'GET', headers, body: init.body === undefined ? undefined : JSON.stringify(init.body), cache: 'no-store' });
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown;
  try {
    data = text ? JSON.parse(text) : undefined;
  } catch {
    data = undefined;
  }
  if (!res.ok) {
    const p = (data ?? {}) as { code?: string; detail?: string; title?: string };
    throw new ApiError(res.status, p.code ?? `HTTP_${res.status}`, p.detail ?? p.title ?? res.statusText);
  }
  return data as T;
}

/** A stream's public summary, as the event stream gives it. */
export type { StreamSummary } from '@glasscast/player';

/** A recording as `GET /recordings` lists it. */
export interface Recording {
  id: string;
  stream: string;
  state: 'recording' | 'finalizing' | 'ready' | 'failed' | 'uploading' | 'uploaded';
  startedAt: string;
  endedAt: string | null;
  durationMs: number;
  sizeBytes: number;
  error: string | null;
  visibility: string;
  renditions: string[];
  playback: { hls: string; mp4: string; thumbnail: string };
}

/** A page of a list. */
export interface Page<T> {
  items: T[];
  nextCursor: string | null;
}
