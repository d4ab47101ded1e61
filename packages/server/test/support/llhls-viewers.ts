/**
 * Simulated LL-HLS viewers for load tests and benchmarks (bench/llhls-load.ts, the nginx tier test): bare HTTP/1.1
 * over keep-alive sockets, so that a thousand of them cost less than the server they measure.
 */
import { connect, type Socket } from 'node:net';

/**
 * One keep-alive HTTP/1.1 connection that sends one GET at a time: a bare client (socket writes, a small response
 * parser: status, Content-Length or chunked body) so that a thousand simulated viewers cost this box less than the
 * server they measure. Reconnects when the server closes. Not for anything but this benchmark.
 */
export class Connection {
  private socket: Socket | undefined;
  private buffer: Buffer = Buffer.alloc(0);
  /** Requests wait their turn (one in flight per connection, as HTTP/1.1 without pipelining). */
  private tail: Promise<unknown> = Promise.resolve();
  private pending: { resolve: (r: { status: number; body: Buffer }) => void; reject: (err: Error) => void; timer: NodeJS.Timeout } | undefined;
  /** The response being read: its status, and what is left of its body. */
  private response: { status: number; length: number | undefined; chunked: boolean; body: Buffer[]; chunkLeft: number } | undefined;

  constructor(
    private readonly host: string,
    private readonly port: number,
  ) {}

  get(path: string): Promise<{ status: number; body: Buffer }> {
    const result = this.tail.then(() => this.send(path));
    this.tail = result.catch(() => undefined);
    return result;
  }

  private send(path: string): Promise<{ status: number; body: Buffer }> {
    const socket = this.connect();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new Error('timeout')), 10_000);
      this.pending = { resolve, reject, timer };
      socket.write(`GET ${path} HTTP/1.1\r\nHost: ${this.host}:${this.port}\r\nUser-Agent: llhls-load\r\n\r\n`);
    });
  }

  close(): void {
    this.socket?.destroy();
    this.socket = undefined;
  }

  private connect(): Socket {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = connect({ host: this.host, port: this.port, noDelay: true });
    socket.on('data', (data: Buffer) => this.onData(data));
    socket.on('error', (err) => this.fail(err));
    socket.on('close', () => {
      if (this.socket === socket) this.socket = undefined;
      this.fail(new Error('closed'));
    });
    this.socket = socket;
    this.buffer = Buffer.alloc(0);
    this.response = undefined;
    return socket;
  }

  private fail(err: Error): void {
    const p = this.pending;
    this.pending = undefined;
    this.response = undefined;
    if (p) {
      clearTimeout(p.timer);
      p.reject(err);
      this.socket?.destroy();
    }
  }

  private done(): void {
    const p = this.pending!;
    const r = this.response!;
    this.pending = undefined;
    this.response = undefined;
    clearTimeout(p.timer);
    p.resolve({ status: r.status, body: r.body.length === 1 ? r.body[0]! : Buffer.concat(r.body) });
  }

  private onData(data: Buffer): void {
    this.buffer = this.buffer.length === 0 ? data : Buffer.concat([this.buffer, data]);
    for (;;) {
      if (!this.pending) return;
      if (!this.response) {
        const end = this.buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = this.buffer.toString('latin1', 0, end);
        this.buffer = this.buffer.subarray(end + 4);
        const status = Number(head.slice(9, 12));
        const length = /\r\ncontent-length: *(\d+)/i.exec(head)?.[1];
        const chunked = /\r\ntransfer-encoding: *chunked/i.test(head);
        this.response = { status, length: length === undefined ? undefined : Number(length), chunked, body: [], chunkLeft: -1 };
        if (!chunked && (length === undefined || Number(length) === 0)) {
          this.done();
          continue;
        }
      }
      const r = this.response;
      if (!r.chunked) {
        const take = Math.min(r.length!, this.buffer.length);
        r.body.push(this.buffer.subarray(0, take));
        r.length! -= take;
        this.buffer = this.buffer.subarray(take);
        if (r.length === 0) {
          this.done();
          continue;
        }
        return;
      }
      // Chunked: size line, data, CRLF; a zero size ends the body (no trailers here).
      if (r.chunkLeft === -3) {
        if (this.buffer.length < 2) return;
        this.buffer = this.buffer.subarray(2);
        r.chunkLeft = -1;
        continue;
      }
      if (r.chunkLeft === -1) {
        const eol = this.buffer.indexOf('\r\n');
        if (eol < 0) return;
        r.chunkLeft = parseInt(this.buffer.toString('latin1', 0, eol), 16);
        this.buffer = this.buffer.subarray(eol + 2);
        if (r.chunkLeft === 0) {
          if (this.buffer.length < 2) {
            r.chunkLeft = -2; // waiting for the final CRLF
            return;
          }
          this.buffer = this.buffer.subarray(2);
          this.done();
          continue;
        }
      }
      if (r.chunkLeft === -2) {
        if (this.buffer.length < 2) return;
        this.buffer = this.buffer.subarray(2);
        this.done();
        continue;
      }
      const take = Math.min(r.chunkLeft, this.buffer.length);
      r.body.push(this.buffer.subarray(0, take));
      r.chunkLeft -= take;
      this.buffer = this.buffer.subarray(take);
      if (r.chunkLeft > 0) return;
      if (this.buffer.length < 2) {
        r.chunkLeft = -3; // waiting for the chunk's CRLF
        return;
      }
      this.buffer = this.buffer.subarray(2);
      r.chunkLeft = -1;
    }
  }
}

/** What a viewer needs from a media playlist: where it ends, its parts' URIs, the hint. */
export interface Parsed {
  lastMsn: number;
  lastIndex: number;
  parts: string[];
  hint: string | undefined;
}

/** Reads a media playlist (full or delta) line by line. */
export function parsePlaylist(text: string): Parsed {
  let msn = 0;
  let index = -1;
  const parts: string[] = [];
  let last = { msn: -1, index: -1 };
  let hint: string | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-MEDIA-SEQUENCE:')) msn = Number(line.slice(22));
    else if (line.startsWith('#EXT-X-SKIP:SKIPPED-SEGMENTS=')) msn += Number(line.slice(29));
    else if (line.startsWith('#EXT-X-PART:')) {
      index++;
      last = { msn, index };
      const uri = /URI="([^"]+)"/.exec(line)?.[1];
      if (uri) parts.push(uri);
    } else if (line.startsWith('#EXTINF')) {
      msn++;
      index = -1;
    } else if (line.startsWith('#EXT-X-PRELOAD-HINT:')) hint = /URI="([^"]+)"/.exec(line)?.[1];
  }
  return { lastMsn: last.msn, lastIndex: last.index, parts, hint };
}

/** What simulated viewers report, per measuring window (the caller swaps in a new one). */
export interface LoadWindow {
  /** Blocking playlist reloads: request → whole answer, ms. */
  playlistWaits: number[];
  /** Same, from the end of this viewer's hinted part (both released by the same part), ms. */
  afterPart: number[];
  /** Blocking playlist answers as [part number waited for, arrival epoch ms], to set against a reference. */
  answers: [number, number][];
  /** Listed (not hinted) parts: request → whole answer, ms. */
  partFetches: number[];
  parts: number;
  bytes: number;
  errors: Record<string, number>;
}

export const newLoadWindow = (): LoadWindow => ({ playlistWaits: [], afterPart: [], answers: [], partFetches: [], parts: 0, bytes: 0, errors: {} });

/**
 * A viewer asking what hls.js asks in low-latency mode (no rendering): the multivariant playlist once, the media
 * playlist, then in a loop a blocking delta reload for the part after the last it knows (`_HLS_msn/_HLS_part/
 * _HLS_skip=YES`, RFC 8216bis §6.2.5.2) and, beside it, the preload-hinted part (§6.2.6); every listed part it has
 * not got is fetched. Three keep-alive connections: playlists, the hinted part, other parts. Figures go to
 * `stats()`'s current this.stats().
 */
export class SimulatedViewer {
  private readonly playlistConnection: Connection;
  private readonly hintConnection: Connection;
  private readonly partConnection: Connection;
  private stopped = false;
  /** Parts fetched or in flight (URIs relative to the media playlist), the last few. */
  private readonly have = new Set<string>();
  /** When each hinted part's stream ended here, by URI. */
  private readonly hintEnded = new Map<string, number>();
  private readonly dir: string;
  private readonly media: string;

  constructor(
    base: string,
    private readonly stream: string,
    private readonly stats: () => LoadWindow,
  ) {
    const target = new URL(base);
    const port = Number(target.port);
    this.playlistConnection = new Connection(target.hostname, port);
    this.hintConnection = new Connection(target.hostname, port);
    this.partConnection = new Connection(target.hostname, port);
    this.dir = `/hls/${stream}/src/`;
    this.media = `${this.dir}media.m3u8`;
  }

  private fail(kind: string): void {
    const errors = this.stats().errors;
    errors[kind] = (errors[kind] ?? 0) + 1;
  }

  async run(): Promise<void> {
    while (!this.stopped) {
      try {
        await this.play();
      } catch (err) {
        this.fail(`viewer: ${(err as Error).message.slice(0, 60)}`);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
  }

  stop(): void {
    this.stopped = true;
    for (const c of [this.playlistConnection, this.hintConnection, this.partConnection]) c.close();
  }

  private async play(): Promise<void> {
    const mv = await this.playlistConnection.get(`/hls/${this.stream}/index.m3u8`);
    if (mv.status !== 200) throw new Error(`multivariant ${mv.status}`);
    const first = await this.playlistConnection.get(this.media);
    if (first.status !== 200) throw new Error(`media playlist ${first.status}`);
    let playlist = parsePlaylist(first.body.toString());
    // Start near the live edge as hls.js does: the last few parts.
    for (const uri of playlist.parts.slice(0, -3)) this.have.add(uri);
    while (!this.stopped) {
      void this.fetchMissing(playlist);
      const url = `${this.media}?_HLS_msn=${playlist.lastMsn}&_HLS_part=${playlist.lastIndex + 1}&_HLS_skip=YES`;
      const sent = performance.now();
      const res = await this.playlistConnection.get(url);
      const now = performance.now();
      if (res.status !== 200) {
        this.fail(`playlist ${res.status}`);
        await new Promise((r) => setTimeout(r, 200));
        continue;
      }
      this.stats().playlistWaits.push(now - sent);
      this.stats().bytes += res.body.length;
      const next = parsePlaylist(res.body.toString());
      // The part this reload waited for is the one hinted when it was sent; its stream ended when it was complete.
      const waitedFor = playlist.hint;
      const ended = waitedFor ? this.hintEnded.get(waitedFor) : undefined;
      if (ended !== undefined) this.stats().afterPart.push(now - ended);
      const number = waitedFor ? /part(\d+)\.m4s/.exec(waitedFor)?.[1] : undefined;
      if (number !== undefined) this.stats().answers.push([Number(number), Date.now()]);
      playlist = next;
    }
  }

  /** Fetches the hinted part (held until made, streamed) and any listed part not yet fetched, in order. */
  private async fetchMissing(playlist: Parsed): Promise<void> {
    const hint = playlist.hint;
    if (hint && !this.have.has(hint)) {
      this.remember(hint);
      void this.hintConnection.get(this.dir + hint).then(
        (res) => {
          this.hintEnded.set(hint, performance.now());
          if (this.hintEnded.size > 20) this.hintEnded.delete(this.hintEnded.keys().next().value!);
          if (res.status === 200) {
            this.stats().parts++;
            this.stats().bytes += res.body.length;
          } else this.fail(`hinted part ${res.status}`);
        },
        (err: Error) => this.fail(`hinted part: ${err.message.slice(0, 40)}`),
      );
    }
    for (const uri of playlist.parts) {
      if (this.have.has(uri) || this.stopped) continue;
      this.remember(uri);
      const sent = performance.now();
      try {
        const res = await this.partConnection.get(this.dir + uri);
        if (res.status !== 200) this.fail(`part ${res.status}`);
        else {
          this.stats().partFetches.push(performance.now() - sent);
          this.stats().parts++;
          this.stats().bytes += res.body.length;
        }
      } catch (err) {
        this.fail(`part: ${(err as Error).message.slice(0, 40)}`);
      }
    }
  }

  private remember(uri: string): void {
    this.have.add(uri);
    if (this.have.size > 200) this.have.delete(this.have.values().next().value!);
  }
}


/**
 * When each part of `stream` became complete at `base` (an origin, not a cache in front): follows the part being
 * built, then the next, … and notes the epoch ms each one's last byte arrived, by part number. The reference
 * for "how long after its part existed did a viewer get the playlist listing it".
 */
export class PartClock {
  private readonly connection: Connection;
  private stopped = false;
  private readonly times = new Map<number, number>();

  constructor(
    base: string,
    private readonly stream: string,
  ) {
    const target = new URL(base);
    this.connection = new Connection(target.hostname, Number(target.port));
  }

  /** Epoch ms part `n` was complete, if it was seen. */
  completedAt(n: number): number | undefined {
    return this.times.get(n);
  }

  start(): void {
    void this.run();
  }

  stop(): void {
    this.stopped = true;
    this.connection.close();
  }

  private async run(): Promise<void> {
    const dir = `/hls/${this.stream}/src/`;
    while (!this.stopped) {
      try {
        const hint = parsePlaylist((await this.connection.get(`${dir}media.m3u8`)).body.toString()).hint;
        const match = hint && /^(.*part)(\d+)\.m4s$/.exec(hint);
        if (!match) throw new Error('no hint');
        for (let n = Number(match[2]); !this.stopped; n++) {
          const res = await this.connection.get(`${dir}${match[1]}${n}.m4s`);
          if (res.status !== 200) break;
          this.times.set(n, Date.now());
          if (this.times.size > 2000) this.times.delete(this.times.keys().next().value!);
        }
      } catch {
        if (!this.stopped) await new Promise((r) => setTimeout(r, 200));
      }
    }
  }
}
