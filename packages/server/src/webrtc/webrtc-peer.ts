/**
 * A WebRTC peer of one WHEP or WHIP session (or a diagnostics probe): its connection (in this process, or on a
 * peer host for WHEP viewers: peer-connection.ts), the answer as announced (public addresses, ICE-TCP
 * candidates), RTCP feedback read for the owner, counters, and its record in the connection journal.
 */
import { isRtcp, readRtcpFeedback, type RtcpFeedback } from '../media/rtp/rtcp.js';
import { randomBytes } from 'node:crypto';
import { countOfferedCandidates, explainFailure, type ConnectionJournal, type ConnectionRecord } from './connection-journal.js';
import { passiveTcpCandidates, type IceTcpListener } from './ice-tcp.js';
import { libraryPeerConnection, type PeerConnection, type PeerConnectionFactory, type PeerState, type PeerTrack } from './peer-connection.js';

export type { PeerState, PeerTrack } from './peer-connection.js';
export { closePeerConnection, keepUntilClosed, releaseWebRtc, retainWebRtc, webRtcHealthy } from './peer-connection.js';

/** Network settings shared by every peer. */
export interface WebRtcNetworkOptions {
  /** Local address ICE binds (e.g. 127.0.0.1 in tests); undefined = every interface. */
  bindAddress: string | undefined;
  /**
   * UDP ports for media (inclusive): `min` carries every peer of the server's own process (WHIP publishers,
   * diagnostics, and WHEP viewers without peer hosts); each peer host takes a free port after it (ICE UDP mux).
   */
  portRange: { min: number; max: number };
  /** Extra addresses announced as host candidates on the same ports (1:1 NAT / port forwarding). */
  publicAddresses: string[];
  /** STUN/TURN URLs (`stun:host:port`, `turn:user:pass@host:port`) the server itself uses. */
  iceServers: string[];
  /** The passive ICE-TCP listener (RFC 6544) whose candidates answers carry; undefined = UDP only. */
  iceTcp: IceTcpListener | undefined;
  /** Where every peer records how it connected (diagnostics); undefined = not recorded. */
  journal: ConnectionJournal | undefined;
}

/** The candidate pair ICE selected, as a viewer or operator reads it. */
export interface SelectedPath {
  /** `udp`, or `tcp` when the browser came over an ICE-TCP connection. */
  transport: 'udp' | 'tcp';
  /** Our address:port (the TCP listener's for `tcp`). */
  local: string;
  /** The remote peer's address:port as seen on that transport. */
  remote: string;
  /** The remote candidate's type (`host`, `srflx`, `prflx`, `relay`). */
  remoteType: string;
}

/** A WebRTC peer of one WHEP or WHIP session. `close()` is idempotent. */
export class WebRtcPeer {
  private readonly connection: PeerConnection;
  private closed = false;
  private readonly kind: string;
  private readonly stream: string;
  /** Ends this session's ICE-TCP registration (undefined when none). */
  private unregisterTcp: (() => void) | undefined;
  private feedbackHandler: ((mid: string, feedback: RtcpFeedback) => void) | undefined;
  private rtpHandler: ((mid: string, packet: Buffer) => void) | undefined;
  private rtcpHandler: ((mid: string, packet: Buffer) => void) | undefined;
  private stateHandler: ((state: PeerState) => void) | undefined;
  private openHandler: (() => void) | undefined;
  /** Packets and bytes handed to the library. */
  packetsSent = 0;
  bytesSent = 0;
  /** Packets the library refused (track not open or buffer full). */
  packetsDropped = 0;
  /** How this peer connected (or why not), once answered; also in the network's journal. */
  record: ConnectionRecord | undefined;

  /**
   * @param name `<kind>-<stream>` (`whep-main`, `whip-cam`, `diagnostics-`): the library's peer name and the
   * journal's kind and stream.
   * @param clientAddress the HTTP client that sent the offer (journal only).
   */
  constructor(
    name: string,
    private readonly network: WebRtcNetworkOptions,
    private readonly clientAddress?: string,
    /** Where the connection runs: this process (default) or a peer host (WHEP viewers, peer-hosts.ts). */
    connections: PeerConnectionFactory = libraryPeerConnection,
  ) {
    const dash = name.indexOf('-');
    this.kind = dash < 0 ? name : name.slice(0, dash);
    this.stream = dash < 0 ? '' : name.slice(dash + 1);
    // A peer host puts its own port in place of this one (peer-hosts.ts).
    const settings = { name, iceServers: network.iceServers, bindAddress: network.bindAddress, port: network.portRange.min };
    this.connection = connections(settings, {
      state: (state) => {
        this.noteState(state);
        this.stateHandler?.(state);
      },
      trackOpen: () => {
        const h = this.openHandler;
        this.openHandler = undefined;
        h?.();
      },
      message: (mid, msg) => {
        if (!isRtcp(msg)) {
          this.rtpHandler?.(mid, msg);
          return;
        }
        this.rtcpHandler?.(mid, msg);
        const feedback = readRtcpFeedback(msg);
        if (feedback.keyframeRequests.length > 0 || feedback.nacks.length > 0 || feedback.reports.length > 0 || feedback.remb !== undefined) {
          this.feedbackHandler?.(mid, feedback);
        }
      },
      refused: (packets, bytes) => this.refused(packets, bytes),
    });
  }

  /** Called with RTCP feedback (PLI/FIR/NACK, reception reports, REMB) per track mid. */
  onFeedback(handler: (mid: string, feedback: RtcpFeedback) => void): void {
    this.feedbackHandler = handler;
  }

  /** Called with every RTP packet received (decrypted), per track mid. */
  onRtp(handler: (mid: string, packet: Buffer) => void): void {
    this.rtpHandler = handler;
  }

  /** Called with every RTCP packet received (e.g. a publisher's sender reports), per track mid. */
  onRtcp(handler: (mid: string, packet: Buffer) => void): void {
    this.rtcpHandler = handler;
  }

  /** Called on every connection state change. */
  onStateChange(handler: (state: PeerState) => void): void {
    this.stateHandler = handler;
  }

  /** Called once the first track is open (DTLS-SRTP is up). */
  onOpen(handler: () => void): void {
    this.openHandler = handler;
  }

  /**
   * Answers `offer` with exactly `tracks` (one codec each, our SSRCs), after ICE gathering.
   * @throws Error when the library refuses the offer (malformed SDP, no usable transport).
   */
  async answer(offer: string, tracks: readonly PeerTrack[]): Promise<string> {
    const sdp = await this.connection.answer(offer, tracks);
    this.record = {
      id: randomBytes(12).toString('base64url'),
      kind: this.kind,
      stream: this.stream,
      clientAddress: this.clientAddress,
      startedAt: Date.now(),
      state: this.closed ? 'closed' : 'connecting',
      connectMs: undefined,
      path: undefined,
      offered: countOfferedCandidates(offer),
      tcpConnections: 0,
      failure: undefined,
    };
    this.network.journal?.add(this.record);
    return this.announceTcp(this.announcePublicAddresses(sdp));
  }

  /** Keeps the journal record up to date with a state change (and says why a failed peer failed). */
  private noteState(state: PeerState): void {
    const record = this.record;
    if (!record || record.state === 'closed') return;
    record.state = state;
    if (state === 'connected' && record.connectMs === undefined) {
      record.connectMs = Date.now() - record.startedAt;
      record.path = this.selectedPath();
    } else if (state === 'failed' || state === 'disconnected') {
      record.failure ??= record.connectMs === undefined ? this.failureSentence() : `the connection was lost after ${Math.round((Date.now() - record.startedAt) / 1000)} s (the peer stopped answering consent checks)`;
    }
  }

  /**
   * Brings the journal record up to date from the library's own state: its state callbacks reach this thread
   * asynchronously (behind other work, and the ICE-TCP relay's news comes from another thread), so a reader —
   * the diagnostics API, or close() — asks the connection directly.
   */
  refreshRecord(): void {
    const record = this.record;
    if (!record || this.closed || record.state === 'closed') return;
    const state = this.connection.state();
    if (state !== 'connected') return;
    record.state = state;
    record.connectMs ??= Date.now() - record.startedAt;
    record.path = this.selectedPath() ?? record.path;
  }

  private failureSentence(): string {
    const range = `${this.network.portRange.min}–${this.network.portRange.max}`;
    return explainFailure(this.record!, range, this.network.iceTcp?.port);
  }

  /**
   * Registers this session with the ICE-TCP listener (its ufrag → the agent's UDP socket) and adds a passive TCP
   * candidate for every address the answer announces (host, server-reflexive, public), after each section's last
   * candidate. Returns `sdp` unchanged without a listener or UDP candidate.
   */
  private announceTcp(sdp: string): string {
    const listener = this.network.iceTcp;
    if (!listener || this.closed) return sdp;
    const ufrag = /^a=ice-ufrag:(\S+)$/m.exec(sdp)?.[1];
    const candidates = [...sdp.matchAll(/^a=candidate:\S+ \d (?:UDP|udp) \d+ (\S+) (\d+) typ (host|srflx)/gm)];
    const port = Number(candidates.find((c) => c[3] === 'host')?.[2] ?? 0);
    if (ufrag === undefined || port === 0) return sdp;
    const addresses = [...new Set(candidates.map((c) => c[1]!))];
    const bind = this.network.bindAddress;
    const target = bind && bind !== '0.0.0.0' && bind !== '::' ? bind : '127.0.0.1';
    this.unregisterTcp = listener.register(ufrag, { address: target, port }, () => {
      if (!this.record) return;
      this.record.tcpConnections++;
      // The relay's news travels from its worker thread and may come after ICE already connected over it.
      if (this.record.connectMs !== undefined) this.record.path = this.selectedPath();
    });
    const tcpLines = passiveTcpCandidates(addresses, listener.port).map((c) => `a=${c}`);
    const lines = sdp.split('\r\n');
    const out: string[] = [];
    let lastCandidate = -1;
    const flush = (): void => {
      if (lastCandidate >= 0) out.splice(lastCandidate + 1, 0, ...tcpLines);
      lastCandidate = -1;
    };
    for (const line of lines) {
      if (line.startsWith('m=')) flush();
      out.push(line);
      if (line.startsWith('a=candidate:')) lastCandidate = out.length - 1;
    }
    flush();
    return out.join('\r\n');
  }

  /** The candidate pair ICE selected (undefined before one is, or after close). */
  selectedPath(): SelectedPath | undefined {
    if (this.closed) return undefined;
    const pair = this.connection.selectedPair();
    if (!pair) return undefined;
    const tcp = this.network.iceTcp?.connectionFor({ address: pair.remote.address, port: pair.remote.port });
    if (tcp) {
      return { transport: 'tcp', local: `${pair.local.address}:${this.network.iceTcp!.port}`, remote: `${tcp.remote.address}:${tcp.remote.port}`, remoteType: 'host' };
    }
    return { transport: 'udp', local: `${pair.local.address}:${pair.local.port}`, remote: `${pair.remote.address}:${pair.remote.port}`, remoteType: pair.remote.type };
  }

  /** Adds a host candidate for each configured public address on the same port as each local one. */
  private announcePublicAddresses(sdp: string): string {
    if (this.network.publicAddresses.length === 0) return sdp;
    const out: string[] = [];
    for (const line of sdp.split('\r\n')) {
      out.push(line);
      const m = /^a=candidate:(\S+) (\d) (\S+) (\d+) (\S+) (\d+) typ host(.*)$/.exec(line);
      if (!m) continue;
      this.network.publicAddresses.forEach((addr, i) => {
        out.push(`a=candidate:${m[1]}p${i} ${m[2]} ${m[3]} ${Number(m[4]) - 1 - i} ${addr} ${m[6]} typ host${m[7]}`);
      });
    }
    return out.join('\r\n');
  }

  /** Sends one RTP or RTCP packet on the track of `mid` (RTCP also on receive tracks). Returns false if it could not be sent. */
  send(mid: string, packet: Buffer): boolean {
    if (this.connection.send(mid, packet)) {
      this.packetsSent++;
      this.bytesSent += packet.length;
      return true;
    }
    this.packetsDropped++;
    return false;
  }

  /** `packets` of `bytes` counted as sent were refused after all (a peer host sends later): moved to dropped. */
  private refused(packets: number, bytes: number): void {
    this.packetsSent -= packets;
    this.bytesSent -= bytes;
    this.packetsDropped += packets;
  }

  /** Adds a remote ICE candidate (trickle, RFC 8840). */
  addRemoteCandidate(candidate: string, mid: string): void {
    this.connection.addRemoteCandidate(candidate, mid);
  }

  /** Current connection state. */
  get state(): PeerState {
    return this.closed ? 'closed' : this.connection.state();
  }

  /** Closes the connection and its tracks. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.refreshRecord();
    if (this.record && this.record.connectMs === undefined) this.record.failure ??= `closed before connecting: ${this.failureSentence()}`;
    if (this.record) this.record.state = 'closed';
    this.closed = true;
    this.unregisterTcp?.();
    this.connection.close();
  }
}

