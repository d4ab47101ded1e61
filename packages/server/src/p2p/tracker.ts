/**
 * Venue mode's tracker, embedded on the HTTP port: the WebTorrent tracker protocol over WebSocket (BEP 3 announces
 * as JSON, carrying WebRTC offers and answers between peers), which p2p-media-loader's viewers use to find each
 * other. The protocol is bittorrent-tracker's (the library PeerTube embeds the same way); this file decides who may
 * use it: a viewer connects to `/p2p/announce/<stream>` of a live stream that allows P2P, each stream's peers
 * form at most {@link MAX_SWARMS_PER_STREAM} swarms (one per rendition a player loads) that no other stream's
 * peers can join, an address holds at most `maxPeersPerAddress` connections, a connection at most
 * {@link MAX_MESSAGES_PER_WINDOW} messages per {@link MESSAGE_WINDOW_MS} of at most {@link MAX_MESSAGE_BYTES}. When
 * a stream ends or its P2P is switched off, its viewers' connections are closed (they play on over HTTP).
 */
import type { IncomingMessage } from 'node:http';
import type { Duplex } from 'node:stream';
import TrackerServer from 'bittorrent-tracker/server';
import { WebSocketServer, type WebSocket } from 'ws';
import type { ErrorCode } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { problemDetails, PROBLEM_TYPE } from '../http/problem.js';

/** Path prefix of the tracker; the stream's name (URL-encoded) follows. */
export const TRACKER_PATH = '/p2p/announce/';
/** Swarms (info hashes) the peers of one stream may form: one per variant a player loads, with room to spare. */
export const MAX_SWARMS_PER_STREAM = 32;
/** Largest WebSocket message accepted, bytes: an announce with ten SDP offers is ~15 kB. */
export const MAX_MESSAGE_BYTES = 64 * 1024;
/** Messages a connection may send per window before it is closed (a player announces every few seconds at most). */
export const MAX_MESSAGES_PER_WINDOW = 100;
export const MESSAGE_WINDOW_MS = 10_000;
/** Announce interval told to peers, ms (bittorrent-tracker tells WebSocket peers a fifth of it: 24 s). */
const ANNOUNCE_INTERVAL_MS = 120_000;
/** How often streams with peers are checked for having ended or switched P2P off, ms. */
const SWEEP_MS = 5_000;

/** Options of {@link P2pTracker}. */
export interface P2pTrackerOptions {
  /** True when `stream` is live (or its publisher is reconnecting) and allows P2P now. */
  allows(stream: string): boolean | Promise<boolean>;
  /** WebSocket connections one client address may hold (a venue's viewers may share one public address). */
  maxPeersPerAddress: number;
  log: Logger;
}

interface PeerSocket extends WebSocket {
  /** bittorrent-tracker reads the peer's address from it on the first message. */
  upgradeReq?: IncomingMessage | null;
  glasscastStream?: string;
}

/** The embedded tracker. */
export class P2pTracker {
  private readonly tracker: TrackerServer;
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: MAX_MESSAGE_BYTES, perMessageDeflate: false, clientTracking: false });
  private readonly socketsOf = new Map<string, Set<PeerSocket>>();
  private readonly perAddress = new Map<string, number>();
  /** Info hash (hex) → the stream whose peers formed that swarm. */
  private readonly swarmStream = new Map<string, string>();
  private readonly swarmsOf = new Map<string, Set<string>>();
  private closed = false;
  /** Ends the swarms of streams that ended or switched P2P off while nobody announced. */
  private readonly sweepTimer = setInterval(() => void this.sweep().catch((err: unknown) => this.options.log.warn({ err }, 'P2P tracker sweep failed')), SWEEP_MS).unref();

  constructor(private readonly options: P2pTrackerOptions) {
    this.tracker = new TrackerServer({ http: false, udp: false, ws: false, stats: false, interval: ANNOUNCE_INTERVAL_MS, filter: (infoHash, params, cb) => cb(this.admit(infoHash, params.socket as PeerSocket | undefined)) });
    // A peer's bad request is answered to that peer (the library does); here it is only counted in debug logs.
    this.tracker.on('warning', (err: Error) => this.options.log.debug({ err: err.message }, 'P2P tracker warning'));
    this.tracker.on('error', (err: Error) => this.options.log.warn({ err }, 'P2P tracker error'));
  }

  /**
   * Takes an HTTP upgrade request if it is for the tracker (`GET /p2p/announce/<stream>`), answering refusals as
   * problem details: 404 `STREAM_NOT_FOUND` (not live, or P2P off for it), 429 `RATE_LIMITED` (too many connections
   * from the address), 503 `NOT_READY` (closing). Returns false for other paths (the caller answers them).
   */
  handleUpgrade(request: IncomingMessage, socket: Duplex, head: Buffer): boolean {
    const path = (request.url ?? '').split('?')[0]!;
    if (!path.startsWith(TRACKER_PATH)) return false;
    socket.on('error', () => socket.destroy());
    void this.upgrade(request, socket, head, path).catch((err: unknown) => {
      this.options.log.error({ err }, 'P2P tracker upgrade failed');
      refuseUpgrade(socket, 'INTERNAL', 'internal error', path);
    });
    return true;
  }

  private async upgrade(request: IncomingMessage, socket: Duplex, head: Buffer, path: string): Promise<void> {
    let stream: string;
    try {
      stream = decodeURIComponent(path.slice(TRACKER_PATH.length));
    } catch {
      stream = '';
    }
    const address = request.socket.remoteAddress ?? '';
    const allowed = !!stream && !stream.includes('/') && (await this.options.allows(stream));
    if (this.closed) refuseUpgrade(socket, 'NOT_READY', 'the server is closing', path);
    else if (!allowed) refuseUpgrade(socket, 'STREAM_NOT_FOUND', 'no live stream of that name shares segments between viewers', path);
    else if ((this.perAddress.get(address) ?? 0) >= this.options.maxPeersPerAddress) refuseUpgrade(socket, 'RATE_LIMITED', 'too many P2P connections from this address', path);
    else this.wss.handleUpgrade(request, socket, head, (ws) => this.accept(ws as PeerSocket, request, stream, address));
  }

  private async sweep(): Promise<void> {
    for (const stream of [...this.socketsOf.keys()]) {
      if (!(await this.options.allows(stream))) this.endStream(stream);
    }
  }

  /** Peers connected for `stream`. */
  peers(stream: string): number {
    return this.socketsOf.get(stream)?.size ?? 0;
  }

  /** Closes the connections of `stream`'s peers (it ended, or its P2P was switched off) and forgets its swarms. */
  endStream(stream: string): void {
    for (const ws of this.socketsOf.get(stream) ?? []) ws.close(1001, 'stream ended or P2P off');
    for (const hash of this.swarmsOf.get(stream) ?? []) {
      this.swarmStream.delete(hash);
      // The library keeps every swarm it ever made; a stream's next broadcast announces new ones.
      delete this.tracker.torrents[hash];
    }
    this.swarmsOf.delete(stream);
  }

  /** Closes every connection. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.sweepTimer);
    for (const stream of [...this.socketsOf.keys()]) {
      for (const ws of this.socketsOf.get(stream) ?? []) ws.terminate();
    }
    this.tracker.close();
    this.wss.close();
  }

  private accept(ws: PeerSocket, request: IncomingMessage, stream: string, address: string): void {
    ws.upgradeReq = request;
    ws.glasscastStream = stream;
    let sockets = this.socketsOf.get(stream);
    if (!sockets) this.socketsOf.set(stream, (sockets = new Set()));
    sockets.add(ws);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    let windowStart = Date.now();
    let messages = 0;
    // Before the library's own listener: a flood closes the connection (the library still sees this message).
    ws.on('message', () => {
      const now = Date.now();
      if (now - windowStart > MESSAGE_WINDOW_MS) {
        windowStart = now;
        messages = 0;
      }
      if (++messages > MAX_MESSAGES_PER_WINDOW) ws.close(1008, 'too many messages');
    });
    ws.once('close', () => {
      sockets.delete(ws);
      if (sockets.size === 0 && this.socketsOf.get(stream) === sockets) this.socketsOf.delete(stream);
      const left = (this.perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.perAddress.set(address, left);
      else this.perAddress.delete(address);
    });
    this.tracker.onWebSocketConnection(ws);
  }

  /** The tracker's filter: an announce joins a swarm of its own stream's peers, within the stream's swarm limit. */
  private admit(infoHash: string, socket: PeerSocket | undefined): Error | null {
    const stream = socket?.glasscastStream;
    if (!stream || !this.socketsOf.get(stream)?.has(socket)) return new Error('not connected through a stream');
    const owner = this.swarmStream.get(infoHash);
    if (owner !== undefined) return owner === stream ? null : new Error('swarm of another stream');
    let swarms = this.swarmsOf.get(stream);
    if (!swarms) this.swarmsOf.set(stream, (swarms = new Set()));
    if (swarms.size >= MAX_SWARMS_PER_STREAM) return new Error('too many swarms for this stream');
    swarms.add(infoHash);
    this.swarmStream.set(infoHash, stream);
    return null;
  }
}

/** Answers a refused HTTP upgrade with problem details (RFC 9457) and closes the connection. */
export function refuseUpgrade(socket: Duplex, code: ErrorCode, detail: string, path: string): void {
  const problem = problemDetails(code, detail, path);
  const body = JSON.stringify(problem);
  socket.end(`HTTP/1.1 ${problem.status} ${problem.title}\r\nContent-Type: ${PROBLEM_TYPE}\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`);
}
