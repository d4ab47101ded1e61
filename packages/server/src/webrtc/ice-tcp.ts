/**
 * WebRTC over TCP for networks that block UDP (RFC 6544 passive ICE-TCP candidates, RFC 4571 framing): the
 * owner side. The listener and its per-connection bridges to the ICE agent's UDP sockets run in a worker thread
 * (ice-tcp-relay.ts, ice-tcp-worker.ts), so relaying every packet of every TCP viewer neither waits behind nor
 * slows the main thread. Sessions register their ufrag and UDP socket here; the worker tells back which TCP
 * connection each bridge serves, for diagnostics.
 */
import { Worker } from 'node:worker_threads';
import type { Logger } from '../core/logger.js';
import type { IceTcpConnection, UdpAddress } from './ice-tcp-relay.js';

export type { IceTcpConnection, UdpAddress } from './ice-tcp-relay.js';

/** RFC 6544 §4.2 type preference we give TCP host candidates (UDP host is 126: UDP wins when it works). */
const TCP_TYPE_PREFERENCE = 90;
/** RFC 6544 §4.2 direction preference of a passive host candidate. */
const PASSIVE_DIRECTION_PREFERENCE = 4;

/** Messages to the worker. */
export type IceTcpIn =
  | { type: 'listen' }
  | { type: 'register'; ufrag: string; target: UdpAddress }
  | { type: 'unregister'; ufrag: string };

/** Messages from the worker. */
export type IceTcpOut =
  | { type: 'listening'; port: number }
  | { type: 'listen-failed'; message: string; code: string | undefined }
  | { type: 'connection'; ufrag: string; connection: IceTcpConnection }
  | { type: 'closed'; bridgePort: number }
  | { type: 'refused'; remote: string | undefined; why: string }
  | { type: 'warn'; message: string; err: string };

/** The worker's entry: the .ts file under tsx (tests), the .js file once built. */
function startWorker(data: { host: string; port: number }): Worker {
  const url = new URL(import.meta.url.endsWith('.ts') ? './ice-tcp-worker.ts' : './ice-tcp-worker.js', import.meta.url);
  if (url.pathname.endsWith('.js')) return new Worker(url, { workerData: data });
  // Under tsx the worker must register tsx itself before importing TypeScript.
  return new Worker(`import('tsx/esm/api').then(({ register }) => { register(); return import(${JSON.stringify(url.href)}); })`, { eval: true, workerData: data });
}

/** The passive ICE-TCP listener, shared by every WHEP and WHIP session. */
export class IceTcpListener {
  private readonly worker: Worker;
  private boundPort = 0;
  private readonly onConnection = new Map<string, () => void>();
  /** Bridges by their UDP port (the ICE agent's view of the remote). */
  private readonly bridges = new Map<number, IceTcpConnection>();
  private listening: { resolve(port: number): void; reject(err: Error): void } | undefined;
  /** Connections refused (unknown session, bad first frame, limits) since start. */
  refused = 0;

  constructor(private readonly options: { host: string; port: number; log: Logger }) {
    this.worker = startWorker({ host: options.host, port: options.port });
    this.worker.on('message', (m: IceTcpOut) => this.onMessage(m));
    this.worker.on('error', (err) => {
      options.log.error({ err }, 'ICE-TCP worker failed');
      this.listening?.reject(err);
    });
  }

  private onMessage(m: IceTcpOut): void {
    switch (m.type) {
      case 'listening':
        this.boundPort = m.port;
        this.listening?.resolve(m.port);
        break;
      case 'listen-failed':
        this.listening?.reject(Object.assign(new Error(`WebRTC over TCP cannot listen on port ${this.options.port}: ${m.message}`), { code: m.code }));
        break;
      case 'connection':
        this.bridges.set(m.connection.bridge.port, m.connection);
        this.onConnection.get(m.ufrag)?.();
        break;
      case 'closed':
        this.bridges.delete(m.bridgePort);
        break;
      case 'refused':
        this.refused++;
        this.options.log.debug({ remote: m.remote, why: m.why }, 'ICE-TCP connection refused');
        break;
      case 'warn':
        this.options.log.warn({ err: m.err }, m.message);
        break;
    }
  }

  /** Starts listening. Resolves with the bound port. @throws when the port cannot be bound. */
  async listen(): Promise<number> {
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('WebRTC over TCP: its worker thread did not start within 20 s')), 20_000);
      this.listening = {
        resolve: (port) => {
          clearTimeout(timer);
          resolve(port);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.worker.postMessage({ type: 'listen' } satisfies IceTcpIn);
    });
  }

  /** The bound TCP port (0 before `listen`). */
  get port(): number {
    return this.boundPort;
  }

  /**
   * Routes connections whose first Binding request names `ufrag` to the ICE agent's UDP socket at `target`
   * (`onConnection` is told of each). Returns the function that ends the registration and closes its connections.
   */
  register(ufrag: string, target: UdpAddress, onConnection?: () => void): () => void {
    if (onConnection) this.onConnection.set(ufrag, onConnection);
    this.worker.postMessage({ type: 'register', ufrag, target } satisfies IceTcpIn);
    return () => {
      this.onConnection.delete(ufrag);
      this.worker.postMessage({ type: 'unregister', ufrag } satisfies IceTcpIn);
    };
  }

  /** The TCP connection behind the remote address the ICE agent selected, if it is one of our bridges. */
  connectionFor(remote: UdpAddress): IceTcpConnection | undefined {
    const c = this.bridges.get(remote.port);
    return c && c.bridge.address === remote.address ? c : undefined;
  }

  /** Stops listening and ends the worker (its connections close with it, as when the process ends). */
  async close(): Promise<void> {
    await this.worker.terminate();
  }
}

/**
 * `a=candidate` attribute values (without `a=`) for passive ICE-TCP host candidates on `port`, one per address
 * (RFC 6544 §4.5 syntax; priorities per RFC 8445 §5.1.2.1 with RFC 6544 §4.2's local preference), component 1
 * (RTP and RTCP are muxed and bundled in WHIP/WHEP).
 */
export function passiveTcpCandidates(addresses: readonly string[], port: number): string[] {
  return addresses.map((address, i) => {
    const localPreference = (PASSIVE_DIRECTION_PREFERENCE << 13) | (8191 - Math.min(i, 8191));
    const priority = TCP_TYPE_PREFERENCE * 2 ** 24 + localPreference * 2 ** 8 + 255;
    return `candidate:tcp${i} 1 tcp ${priority} ${address} ${port} typ host tcptype passive`;
  });
}
