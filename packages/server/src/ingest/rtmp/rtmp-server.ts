/** The RTMP listener: accepts connections and owns their sessions (default port 1935). */
import { createServer, type Server } from 'node:net';
import type { Logger } from '../../core/logger.js';
import type { RtmpPublishHandler, RtmpSessionOptions } from './rtmp-session.js';
import { RtmpSession } from './rtmp-session.js';

/** Options of the RTMP server. */
export interface RtmpServerOptions extends Partial<RtmpSessionOptions> {
  host: string;
  port: number;
  /** Most simultaneous connections; more are refused. Default 1000. */
  maxConnections?: number;
}

/** Listens for RTMP publishers. `close()` ends every session. */
export class RtmpServer {
  private readonly server: Server;
  private readonly sessions = new Set<RtmpSession>();
  private readonly sessionOptions: RtmpSessionOptions;
  /** Connections closed by an internal error (a bug), since start: /healthz and tests watch it stay 0. */
  internalErrors = 0;

  constructor(
    private readonly options: RtmpServerOptions,
    private readonly handler: RtmpPublishHandler,
    private readonly log: Logger,
  ) {
    this.sessionOptions = {
      handshakeTimeoutMs: options.handshakeTimeoutMs ?? 10_000,
      idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
      maxMessageSize: options.maxMessageSize ?? 8 * 1024 * 1024,
      onInternalError: () => void this.internalErrors++,
    };
    this.server = createServer((socket) => {
      if (this.sessions.size >= (options.maxConnections ?? 1000)) {
        socket.destroy();
        return;
      }
      this.sessions.add(new RtmpSession(socket, handler, log, this.sessionOptions, (s) => this.sessions.delete(s)));
    });
  }

  /** Starts listening; resolves with the bound port. */
  async listen(): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.options.port, this.options.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const address = this.server.address();
    const port = typeof address === 'object' && address ? address.port : this.options.port;
    this.log.info({ port }, 'RTMP listening');
    return port;
  }

  /** Connections open now. */
  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Stops listening and closes every session. Idempotent. */
  async close(): Promise<void> {
    for (const s of [...this.sessions]) s.close('server shutting down');
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
