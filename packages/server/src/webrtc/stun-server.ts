/**
 * A plain STUN server (RFC 8489 §6.3: Binding requests answered with XOR-MAPPED-ADDRESS, no authentication) on
 * one UDP port, so browsers in venue mode learn their server-reflexive address from Glasscast itself instead of a
 * public STUN server. Anything that is not a well-formed Binding request is dropped unanswered, each source
 * address gets at most {@link MAX_REQUESTS_PER_SECOND} answers a second and all of them together
 * {@link MAX_ANSWERS_PER_SECOND} (a STUN server must not become a reflector).
 */
import { createSocket, type Socket } from 'node:dgram';
import type { Logger } from '../core/logger.js';
import { readBindingRequest, writeBindingSuccess } from './stun.js';

/** Answers per source address per second; a browser gathering candidates sends a handful. */
export const MAX_REQUESTS_PER_SECOND = 20;
/** Source addresses remembered per second for the limit; beyond it, new addresses are not answered until the next second. */
const MAX_TRACKED_ADDRESSES = 10_000;
/**
 * Answers per second in all: with forged source addresses, the per-address limit alone would let the server send
 * 20 × 10,000 answers a second at others; a venue's browsers need a few each when they join.
 */
export const MAX_ANSWERS_PER_SECOND = 2000;

/** Options of {@link StunServer}. */
export interface StunServerOptions {
  /** Address to bind (`0.0.0.0`, `::`, `127.0.0.1`, …). */
  host: string;
  /** UDP port; 0 picks a free one. */
  port: number;
  log: Logger;
}

/** Counters of a {@link StunServer}. */
export interface StunServerStats {
  answered: number;
  /** Datagrams that were not a well-formed Binding request. */
  malformed: number;
  /** Requests over the per-address limit. */
  limited: number;
}

/** The STUN server. `start()` binds; `close()` is idempotent. */
export class StunServer {
  private socket: Socket | undefined;
  private readonly perAddress = new Map<string, number>();
  private window = 0;
  private answeredInWindow = 0;
  readonly stats: StunServerStats = { answered: 0, malformed: 0, limited: 0 };

  constructor(private readonly options: StunServerOptions) {}

  /** Binds the port. @throws Error when the port cannot be bound (e.g. EADDRINUSE). */
  async start(): Promise<void> {
    const socket = createSocket({ type: this.options.host.includes(':') ? 'udp6' : 'udp4' });
    socket.on('message', (packet, rinfo) => this.onMessage(socket, packet, rinfo.address, rinfo.port));
    socket.on('error', (err) => this.options.log.warn({ err }, 'STUN socket error'));
    await new Promise<void>((resolve, reject) => {
      const fail = (err: Error): void => {
        socket.close();
        reject(err);
      };
      socket.once('error', fail);
      socket.bind(this.options.port, this.options.host, () => {
        socket.off('error', fail);
        resolve();
      });
    });
    this.socket = socket;
  }

  /** The bound UDP port (after `start()`). */
  get port(): number {
    return this.socket?.address().port ?? 0;
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private onMessage(socket: Socket, packet: Buffer, address: string, port: number): void {
    let transactionId: Buffer;
    try {
      transactionId = readBindingRequest(packet);
    } catch {
      this.stats.malformed++;
      return;
    }
    const second = Math.floor(Date.now() / 1000);
    if (second !== this.window) {
      this.window = second;
      this.perAddress.clear();
      this.answeredInWindow = 0;
    }
    const count = this.perAddress.get(address) ?? 0;
    if (count >= MAX_REQUESTS_PER_SECOND || this.answeredInWindow >= MAX_ANSWERS_PER_SECOND || (count === 0 && this.perAddress.size >= MAX_TRACKED_ADDRESSES)) {
      this.stats.limited++;
      return;
    }
    this.perAddress.set(address, count + 1);
    this.answeredInWindow++;
    socket.send(writeBindingSuccess(transactionId, address, port), port, address);
    this.stats.answered++;
  }
}
