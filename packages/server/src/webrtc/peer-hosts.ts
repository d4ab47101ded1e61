/**
 * Peer hosts, the main process's side: child processes (peer-host.ts) that run WHEP viewers' peer connections,
 * so the per-viewer work of WebRTC delivery (SRTP and a UDP send per packet) is spread over every core while the
 * main thread packetizes each stream once (DESIGN.md, "packetize once per stream").
 *
 * Sends are batched per task (the synchronous work that queued them, e.g. one access unit to every viewer): each
 * distinct packet crosses to a host once, with the list of peers and tracks it goes to. A host that falls behind by more than {@link MAX_BATCHES_IN_FLIGHT} batches loses the next
 * ones (counted as refused, as a full socket buffer would): the main thread never queues without bound. A host
 * that dies fails its peers (their sessions close; players reconnect) and a new one starts with the next peer.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Logger } from '../core/logger.js';
import { PeerConnectionUnavailableError, type CandidatePair, type PeerConnection, type PeerConnectionEvents, type PeerConnectionFactory, type PeerConnectionSettings, type PeerState, type PeerTrack } from './peer-connection.js';
import type { HostOptions, HostReport, HostRequest } from './peer-host.js';

/** Batches handed to a host and not yet taken by it, before new ones are dropped (≈ 1 s of a 30 fps stream). */
const MAX_BATCHES_IN_FLIGHT = 64;
/** How long a host may take to answer an offer before the offer fails, ms (gathering itself is bounded at 2 s). */
const ANSWER_TIMEOUT_MS = 10_000;
/** How long a host may take to exit once told to, ms. */
const EXIT_WAIT_MS = 3_000;

/** A candidate line as RFC 8839 §5.1 shapes it (what the library accepts): the form is checked before it crosses. */
const CANDIDATE = /^candidate:\S+ \d+ \S+ \d+ \S+ \d+ typ \S+/i;

/** The host's entry: the .ts file under tsx (tests), the .js file once built. */
function hostEntry(): { path: string; execArgv: string[] } {
  const ts = import.meta.url.endsWith('.ts');
  return { path: fileURLToPath(new URL(ts ? './peer-host.ts' : './peer-host.js', import.meta.url)), execArgv: ts ? ['--import', 'tsx'] : [] };
}

/** One peer connection on a host. */
class HostedPeerConnection implements PeerConnection {
  private lastState: PeerState = 'new';
  private pair: CandidatePair | undefined;
  private closed = false;

  constructor(
    private readonly host: PeerHost,
    readonly id: number,
    readonly events: PeerConnectionEvents,
  ) {}

  answer(offer: string, tracks: readonly PeerTrack[]): Promise<string> {
    return this.host.call(this.id, offer, tracks);
  }

  send(mid: string, packet: Buffer): boolean {
    if (this.closed) return false;
    this.host.enqueue(this.id, mid, packet);
    return true;
  }

  addRemoteCandidate(candidate: string, mid: string): void {
    if (!CANDIDATE.test(candidate)) throw new Error('malformed ICE candidate');
    this.host.request({ t: 'candidate', id: this.id, candidate, mid });
  }

  state(): PeerState {
    return this.closed ? 'closed' : this.lastState;
  }

  selectedPair(): CandidatePair | undefined {
    return this.closed ? undefined : this.pair;
  }

  /** A report from the host about this peer. */
  report(r: HostReport): void {
    if (this.closed) return;
    if (r.t === 'state') {
      this.lastState = r.state;
      if (r.pair) this.pair = r.pair;
      this.events.state(r.state);
    } else if (r.t === 'open') {
      this.events.trackOpen(r.mid);
    } else if (r.t === 'message') {
      this.events.message(r.mid, Buffer.from(r.packet.buffer, r.packet.byteOffset, r.packet.byteLength));
    }
  }

  /** The host died: the connection is gone. */
  fail(): void {
    if (this.closed) return;
    this.lastState = 'failed';
    this.events.state('failed');
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.host.remove(this);
  }
}

/** One host process and the peers it runs. */
class PeerHost {
  private readonly child: ChildProcess;
  readonly peers = new Map<number, HostedPeerConnection>();
  private nextId = 1;
  private nextCall = 1;
  private readonly calls = new Map<number, { resolve: (sdp: string) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }>();
  /** This turn's batch: distinct packets, and the sends of them. */
  private outbox: { packets: Buffer[]; index: Map<Buffer, number>; bytes: number; mids: string[]; midIndex: Map<string, number>; targets: number[] } | undefined;
  private inFlight = 0;
  /** Batches dropped because the host was behind. */
  batchesDropped = 0;
  exited = false;

  /** The UDP port every peer of this host shares, once the host took one. */
  port: number | undefined;

  constructor(
    options: HostOptions,
    private readonly log: Logger,
    private readonly onExit: (host: PeerHost) => void,
  ) {
    const entry = hostEntry();
    this.child = fork(entry.path, [JSON.stringify(options)], { execArgv: entry.execArgv, serialization: 'advanced', stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    this.child.on('message', (r: HostReport) => this.onReport(r));
    this.child.once('exit', (code, signal) => {
      this.exited = true;
      if (this.peers.size > 0 || (code !== 0 && code !== null) || signal) this.log.error({ pid: this.child.pid, code, signal, peers: this.peers.size }, 'WebRTC peer host ended; its viewers reconnect');
      for (const call of this.calls.values()) {
        clearTimeout(call.timer);
        call.reject(new PeerConnectionUnavailableError('the WebRTC peer host ended'));
      }
      this.calls.clear();
      for (const pc of [...this.peers.values()]) pc.fail();
      this.peers.clear();
      this.onExit(this);
    });
    this.child.on('error', (err) => this.log.error({ err }, 'WebRTC peer host error'));
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  create(settings: PeerConnectionSettings, events: PeerConnectionEvents): HostedPeerConnection {
    const pc = new HostedPeerConnection(this, this.nextId++, events);
    this.peers.set(pc.id, pc);
    this.request({ t: 'open', id: pc.id, settings });
    return pc;
  }

  request(m: HostRequest): void {
    if (!this.exited && this.child.connected) this.child.send(m);
  }

  call(id: number, offer: string, tracks: readonly PeerTrack[]): Promise<string> {
    if (this.exited) return Promise.reject(new PeerConnectionUnavailableError('the WebRTC peer host ended'));
    const call = this.nextCall++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.calls.delete(call);
        reject(new PeerConnectionUnavailableError('the WebRTC peer host did not answer in time'));
      }, ANSWER_TIMEOUT_MS);
      this.calls.set(call, { resolve, reject, timer });
      this.request({ t: 'answer', id, call, offer, tracks: [...tracks] });
    });
  }

  remove(pc: HostedPeerConnection): void {
    if (this.peers.delete(pc.id)) this.request({ t: 'close', id: pc.id });
  }

  /** Queues one send for this turn's batch (the packet itself crosses once, however many peers it goes to). */
  enqueue(id: number, mid: string, packet: Buffer): void {
    let o = this.outbox;
    if (!o) {
      o = this.outbox = { packets: [], index: new Map(), bytes: 0, mids: [], midIndex: new Map(), targets: [] };
      // Right after the work that queued it (one access unit to every viewer is one synchronous loop), not at the
      // end of the event-loop turn: a busy main thread would otherwise hold the batch behind other I/O.
      queueMicrotask(() => this.flush());
    }
    let p = o.index.get(packet);
    if (p === undefined) {
      p = o.packets.push(packet) - 1;
      o.index.set(packet, p);
      o.bytes += packet.length;
    }
    let m = o.midIndex.get(mid);
    if (m === undefined) {
      m = o.mids.push(mid) - 1;
      o.midIndex.set(mid, m);
    }
    o.targets.push(id, m, p);
  }

  private flush(): void {
    const o = this.outbox;
    this.outbox = undefined;
    if (!o || this.exited || !this.child.connected) return;
    if (this.inFlight >= MAX_BATCHES_IN_FLIGHT) {
      this.batchesDropped++;
      for (let k = 0; k < o.targets.length; k += 3) this.peers.get(o.targets[k]!)?.events.refused?.(1, o.packets[o.targets[k + 2]!]!.length);
      return;
    }
    const data = Buffer.concat(o.packets, o.bytes);
    const ends = new Int32Array(o.packets.length);
    let end = 0;
    o.packets.forEach((p, i) => (ends[i] = end += p.length));
    this.inFlight++;
    this.child.send({ t: 'send', data, ends, mids: o.mids, targets: Int32Array.from(o.targets) } satisfies HostRequest, () => this.inFlight--);
  }

  private onReport(r: HostReport): void {
    if (r.t === 'ready') {
      this.port = r.port;
    } else if (r.t === 'answered') {
      const call = this.calls.get(r.call);
      if (!call) return;
      this.calls.delete(r.call);
      clearTimeout(call.timer);
      if (r.sdp !== undefined) call.resolve(r.sdp);
      else call.reject(new Error(r.error ?? 'no answer'));
    } else if (r.t === 'refused') {
      for (let k = 0; k + 2 < r.counts.length; k += 3) this.peers.get(r.counts[k]!)?.events.refused?.(r.counts[k + 1]!, r.counts[k + 2]!);
    } else {
      this.peers.get(r.id)?.report(r);
    }
  }

  /** Asks the host to close its peers and exit; resolves once it has (killed after {@link EXIT_WAIT_MS}). */
  async close(): Promise<void> {
    if (this.exited) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    if (this.child.connected) this.child.disconnect();
    const timer = setTimeout(() => this.child.kill('SIGKILL'), EXIT_WAIT_MS);
    await exited;
    clearTimeout(timer);
  }
}

/** What the pool reports (stats, tests). */
export interface PeerHostStats {
  /** Per host: its process id and the peers it runs. */
  hosts: { pid: number | undefined; port: number | undefined; peers: number; batchesDropped: number }[];
}

/**
 * Up to `count` peer hosts, started as peers need them; each new peer goes to the host with the fewest. Each
 * host takes the first free port of `ports` for all its peers; one that ended leaves its port to the next.
 * `close()` ends them all (idempotent).
 */
export class PeerHosts {
  private readonly hosts: PeerHost[] = [];
  private closed = false;

  constructor(
    private readonly options: {
      /** Most host processes (≥ 1; the server's default is one per core). */
      count: number;
      /** Local address ICE binds; undefined = every interface. */
      bindAddress: string | undefined;
      /** UDP ports the hosts may take, one each. */
      ports: number[];
    },
    private readonly log: Logger,
  ) {}

  /** Makes peer connections on the least loaded host (starting one while fewer than `count` run). */
  readonly factory: PeerConnectionFactory = (settings, events) => {
    if (this.closed) throw new Error('the WebRTC peer hosts are closed');
    let host = this.hosts.reduce<PeerHost | undefined>((best, h) => (!best || h.peers.size < best.peers.size ? h : best), undefined);
    if (!host || (host.peers.size > 0 && this.hosts.length < this.options.count)) host = this.start();
    return host.create(settings, events);
  };

  /**
   * Starts the first host if none runs (called when a stream goes live): its start — a Node process loading the
   * WebRTC library, ~0.3–0.5 s of a core here — then happens before the first viewer's offer, not while that
   * viewer waits for its answer. The host then stays (idle, one process) like the others. Does nothing once closed.
   */
  prewarm(): void {
    if (!this.closed && this.hosts.length === 0) this.start();
  }

  private start(): PeerHost {
    // Each host starts looking at a port of its own, so hosts starting together do not test the same port.
    const ports = this.options.ports;
    const first = this.hosts.length % Math.max(1, ports.length);
    const host = new PeerHost({ bindAddress: this.options.bindAddress, ports: [...ports.slice(first), ...ports.slice(0, first)] }, this.log, (h) => {
      const i = this.hosts.indexOf(h);
      if (i >= 0) this.hosts.splice(i, 1);
    });
    this.hosts.push(host);
    return host;
  }

  stats(): PeerHostStats {
    return { hosts: this.hosts.map((h) => ({ pid: h.pid, port: h.port, peers: h.peers.size, batchesDropped: h.batchesDropped })) };
  }

  /** Ends every host (their peers close with them). Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.hosts.map((h) => h.close()));
  }
}
