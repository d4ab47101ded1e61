/** A Server-Sent Events reader for tests: fetch + the event-stream format (WHATWG HTML §9.2.6), events kept in order. */
import { waitUntil } from './wait.js';

/** One event as received. */
export interface SseEvent {
  event: string;
  data: unknown;
  /** Date.now() when it arrived. */
  at: number;
}

/** An open event stream; `close()` ends it. */
export class SseClient {
  readonly events: SseEvent[] = [];
  status = 0;
  contentType = '';
  private readonly abort = new AbortController();

  /** Opens `url`; resolves once the response headers arrived. */
  static async open(url: string, headers: Record<string, string> = {}): Promise<SseClient> {
    const client = new SseClient();
    const res = await fetch(url, { headers: { accept: 'text/event-stream', ...headers }, signal: client.abort.signal });
    client.status = res.status;
    client.contentType = res.headers.get('content-type') ?? '';
    if (res.ok && res.body) void client.read(res.body);
    else await res.body?.cancel();
    return client;
  }

  private async read(body: ReadableStream<Uint8Array>): Promise<void> {
    const decoder = new TextDecoder();
    let buffer = '';
    try {
      for await (const chunk of body) {
        buffer += decoder.decode(chunk, { stream: true });
        let end: number;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length > 0) this.events.push({ event, data: JSON.parse(data.join('\n')), at: Date.now() });
        }
      }
    } catch {
      // aborted by close(), or the server ended the stream
    }
  }

  /** The first event (from index `from`) that `match` accepts, waiting up to `timeoutMs`. */
  async next(what: string, match: (e: SseEvent) => boolean, timeoutMs = 15_000, from = 0): Promise<SseEvent> {
    return waitUntil(what, () => this.events.slice(from).find(match), timeoutMs, 20);
  }

  close(): void {
    this.abort.abort();
  }
}
