/**
 * WebRTC over TCP for networks that block UDP: passive ICE-TCP candidates (RFC 6544) on one TCP port, each
 * connection framed as RFC 4571 (a 16-bit length before every STUN, DTLS, RTP or RTCP packet) and bridged to the
 * session's UDP socket in the ICE agent.
 *
 * The WebRTC library's ICE agent (libjuice) speaks UDP only and cannot accept TCP, so the bridge stands in for the
 * browser: the first frame of a connection must be a STUN Binding request whose USERNAME names a session's local
 * ufrag (RFC 8445 §7.2.2); the connection then gets its own UDP socket on the agent's address, and every frame is
 * relayed as one datagram (and every datagram back as one frame). The agent sees a peer-reflexive candidate
 * (RFC 8445 §7.3.1.3) and runs ICE, DTLS and SRTP over it unchanged: authentication stays with the agent that
 * holds the password; a connection naming no live session is closed. The browser is the controlling agent and
 * prefers UDP pairs when they work (lower priority on our TCP candidates).
 *
 * This relay runs in a worker thread of its own (ice-tcp-worker.ts, driven by ice-tcp.ts): its per-packet work
 * never waits behind the main thread's, and takes the second core.
 *
 * Limits: frames are at most 65,535 bytes by their framing; a connection must send its first frame within 5 s;
 * at most 8 connections per session and 1,000 in all; a connection whose socket buffers more than 1 MiB towards
 * a slow reader loses datagrams (as UDP would) instead of growing.
 */
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, isIPv6, type Server, type Socket } from 'node:net';
import { MediaParseError } from '../media/errors.js';
import { readBindingUsername, STUN_HEADER_BYTES } from './stun.js';

/** A UDP address. */
export interface UdpAddress {
  address: string;
  port: number;
}

/** One bridged TCP connection, for diagnostics. */
export interface IceTcpConnection {
  /** The browser's address and port as seen on TCP. */
  remote: UdpAddress;
  /** The bridge's UDP address the ICE agent sees as the remote candidate. */
  bridge: UdpAddress;
}

/** What the relay tells its owner. */
export interface IceTcpRelayEvents {
  /** A connection was bridged for session `ufrag` (its bridge port now known). */
  connection(ufrag: string, connection: IceTcpConnection): void;
  /** The bridge on UDP port `bridgePort` closed. */
  closed(bridgePort: number): void;
  /** A connection was refused (`why`: a sentence). */
  refused(remote: string | undefined, why: string): void;
  /** Something for the log. */
  warn(message: string, err: string): void;
}

interface Session {
  ufrag: string;
  target: UdpAddress;
  connections: Set<Bridge>;
}

interface Bridge {
  info: IceTcpConnection;
  close(): void;
}

/** How long a new connection may take to send its first frame, ms. */
const FIRST_FRAME_TIMEOUT_MS = 5000;
/** Connections per session (a browser opens one per TCP candidate pair it checks). */
const MAX_CONNECTIONS_PER_SESSION = 8;
/** Largest first frame (a Binding request: header, USERNAME ≤ 513, PRIORITY, ICE-CONTROLLING, USE-CANDIDATE, MESSAGE-INTEGRITY, FINGERPRINT), bytes. */
const MAX_FIRST_FRAME = 1024;
/** Connections in all. */
const MAX_CONNECTIONS = 1000;
/** Bytes queued towards a TCP peer beyond which datagrams are dropped. */
const MAX_WRITE_BUFFER = 1024 * 1024;

/** The passive ICE-TCP listener and its bridges, for every WHEP and WHIP session. */
export class IceTcpRelay {
  private readonly server: Server;
  private readonly sessions = new Map<string, Session>();
  private connections = 0;
  private boundPort = 0;

  constructor(
    private readonly options: { host: string; port: number },
    private readonly events: IceTcpRelayEvents,
  ) {
    this.server = createServer((socket) => this.accept(socket));
    this.server.on('error', (err) => events.warn('ICE-TCP listener error', err.message));
  }

  /** Starts listening. Resolves with the bound port. @throws when the port cannot be bound. */
  async listen(): Promise<number> {
    const bind = (host: string): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        this.server.once('error', reject);
        this.server.listen({ host, port: this.options.port }, () => {
          this.server.off('error', reject);
          resolve();
        });
      });
    if (this.options.host === '0.0.0.0') {
      // Every interface: IPv6 too (dual-stack), as the ICE agent announces IPv6 host candidates; IPv4 only where
      // the machine has no IPv6.
      await bind('::').catch((err: NodeJS.ErrnoException) => {
        if (err.code !== 'EAFNOSUPPORT' && err.code !== 'EADDRNOTAVAIL') throw err;
        return bind('0.0.0.0');
      });
    } else {
      await bind(this.options.host);
    }
    const address = this.server.address();
    this.boundPort = typeof address === 'object' && address ? address.port : 0;
    return this.boundPort;
  }

  /** The bound TCP port (0 before `listen`). */
  get port(): number {
    return this.boundPort;
  }

  /** Routes connections whose first Binding request names `ufrag` to the ICE agent's UDP socket at `target`. */
  register(ufrag: string, target: UdpAddress): void {
    this.unregister(ufrag);
    this.sessions.set(ufrag, { ufrag, target, connections: new Set() });
  }

  /** Ends `ufrag`'s registration and closes its connections. */
  unregister(ufrag: string): void {
    const session = this.sessions.get(ufrag);
    if (!session) return;
    this.sessions.delete(ufrag);
    for (const c of session.connections) c.close();
  }

  private accept(socket: Socket): void {
    if (this.connections >= MAX_CONNECTIONS) {
      this.events.refused(socket.remoteAddress, 'too many ICE-TCP connections');
      socket.destroy();
      return;
    }
    this.connections++;
    socket.setNoDelay(true);
    let pending: Buffer = Buffer.alloc(0);
    let bridge: (Bridge & { send(frame: Buffer): void }) | undefined;
    let closed = false;
    const timer = setTimeout(() => refuse('no STUN Binding request within 5 s'), FIRST_FRAME_TIMEOUT_MS);
    const close = (): void => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      this.connections--;
      bridge?.close();
      socket.destroy();
    };
    const refuse = (why: string): void => {
      this.events.refused(socket.remoteAddress, why);
      close();
    };
    const onFrame = (frame: Buffer): void => {
      if (bridge) {
        bridge.send(frame);
        return;
      }
      let ufrag: string;
      try {
        ufrag = readBindingUsername(frame).local;
      } catch (err) {
        if (err instanceof MediaParseError) return refuse(err.message);
        throw err;
      }
      const session = this.sessions.get(ufrag);
      if (!session) return refuse('no session with this ufrag');
      if (session.connections.size >= MAX_CONNECTIONS_PER_SESSION) return refuse('too many connections for the session');
      clearTimeout(timer);
      bridge = this.bridge(socket, session, close);
      bridge.send(frame);
    };
    const onData = (chunk: Buffer): void => {
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      let at = 0;
      while (!closed && pending.length - at >= 2) {
        const length = pending.readUInt16BE(at);
        // Before the bridge exists only a Binding request may come: a length it cannot have (e.g. "GE" of an
        // HTTP request, 18,245) is refused at once instead of waiting for bytes that are not a frame.
        if (!bridge && (length < STUN_HEADER_BYTES || length > MAX_FIRST_FRAME)) return refuse('the first frame is not a STUN Binding request');
        if (pending.length - at - 2 < length) break;
        const frame = pending.subarray(at + 2, at + 2 + length);
        at += 2 + length;
        if (length > 0) onFrame(frame);
      }
      pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
    };
    socket.on('data', onData);
    socket.on('error', () => close());
    socket.on('close', () => close());
  }

  private bridge(socket: Socket, session: Session, closeSocket: () => void): Bridge & { send(frame: Buffer): void } {
    const target = session.target;
    const udp: UdpSocket = createSocket(isIPv6(target.address) ? 'udp6' : 'udp4');
    const info: IceTcpConnection = {
      remote: { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 },
      bridge: { address: target.address, port: 0 },
    };
    const queued: Buffer[] = [];
    let bound = false;
    let ended = false;
    const bridge = {
      info,
      send: (frame: Buffer): void => {
        // The frame's bytes live in a buffer the next read may reuse: copy before it waits for the bind.
        if (!bound) queued.push(Buffer.from(frame));
        else udp.send(frame, target.port, target.address);
      },
      close: (): void => {
        if (ended) return;
        ended = true;
        session.connections.delete(bridge);
        if (info.bridge.port !== 0) this.events.closed(info.bridge.port);
        try {
          udp.close();
        } catch {
          // not bound yet, or already closed
        }
        closeSocket();
      },
    };
    session.connections.add(bridge);
    udp.on('error', () => bridge.close());
    // Datagrams come in bursts (a video frame is ~10 packets): the frames of one burst leave in one TCP write,
    // after the burst (setImmediate: once the event loop has read what is there), which saves a send per packet.
    let batch: Buffer[] = [];
    let batchBytes = 0;
    const flush = (): void => {
      const out = batch.length === 1 ? batch[0]! : Buffer.concat(batch, batchBytes);
      batch = [];
      batchBytes = 0;
      if (!ended) socket.write(out);
    };
    udp.on('message', (msg, rinfo) => {
      if (rinfo.port !== target.port) return; // only the agent's socket speaks here
      if (socket.writableLength > MAX_WRITE_BUFFER) return; // a reader this slow loses datagrams, as on UDP
      const header = Buffer.allocUnsafe(2);
      header.writeUInt16BE(msg.length, 0);
      if (batch.length === 0) setImmediate(flush);
      batch.push(header, msg);
      batchBytes += 2 + msg.length;
    });
    udp.bind({ address: target.address, port: 0 }, () => {
      if (ended) return;
      bound = true;
      info.bridge.port = udp.address().port;
      this.events.connection(session.ufrag, info);
      for (const frame of queued.splice(0)) udp.send(frame, target.port, target.address);
    });
    return bridge;
  }
}
