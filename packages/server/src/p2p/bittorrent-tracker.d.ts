/** The part of bittorrent-tracker's server (v11) that the embedded tracker uses; the package ships no types. */
declare module 'bittorrent-tracker/server' {
  import type { EventEmitter } from 'node:events';

  export interface TrackerServerOptions {
    http?: false;
    udp?: false;
    ws?: false;
    stats?: false;
    /** Announce interval told to clients, ms (WebSocket clients get a fifth of it). */
    interval?: number;
    /** Called for every announce: calling back with an error refuses it. */
    filter?: (infoHash: string, params: { socket?: unknown }, callback: (err?: Error | null) => void) => void;
  }

  export default class TrackerServer extends EventEmitter {
    constructor(options: TrackerServerOptions);
    /** Serves the tracker protocol on an accepted WebSocket (the `ws` package's socket). */
    onWebSocketConnection(socket: unknown, options?: { trustProxy?: boolean }): void;
    /** Swarms by info hash (hex). */
    torrents: Record<string, { peers: { length: number } } | undefined>;
    close(callback?: () => void): void;
  }
}
