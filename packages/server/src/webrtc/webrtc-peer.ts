/**
 * The one adapter around the WebRTC library (node-datachannel / libdatachannel, DESIGN.md), shared by WHEP and
 * WHIP: a peer that answers an offer with exactly our tracks (one codec each; send-only for WHEP viewers,
 * receive-only for WHIP publishers), sends RTP/RTCP we built, and hands back the RTP and RTCP it receives.
 * Nothing outside this folder imports the library.
 */
import nodeDataChannel from 'node-datachannel';
import type { Logger } from '../core/logger.js';
import { isRtcp, readRtcpFeedback, type RtcpFeedback } from '../media/rtp/rtcp.js';
import { randomBytes } from 'node:crypto';
import { countOfferedCandidates, explainFailure, type ConnectionJournal, type ConnectionRecord } from './connection-journal.js';
import { passiveTcpCandidates, type IceTcpListener } from './ice-tcp.js';

/** Network settings shared by every peer. */
export interface WebRtcNetworkOptions {
  /** Local address ICE binds (e.g. 127.0.0.1 in tests); undefined = every interface. */
  bindAddress: string | undefined;
  /** UDP port range for media (inclusive). */
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

/** A track of this peer: one media section of the offer, answered with one codec. */
export interface PeerTrack {
  kind: 'video' | 'audio';
  /** `send`: we send media on it (WHEP); `receive`: the remote peer does (WHIP). */
  direction: 'send' | 'receive';
  /** The offer's mid for this media section. */
  mid: string;
  payloadType: number;
  /** `H264`, `VP8` or `opus`. */
  codec: 'H264' | 'VP8' | 'opus';
  /** fmtp line value for H.264 (`packetization-mode=1;profile-level-id=…`). */
  fmtp: string | undefined;
  /** Our SSRC: of the media we send, or the one our RTCP comes from on a receive track. */
  ssrc: number;
}

/** Peer connection states as the library reports them. */
export type PeerState = 'new' | 'connecting' | 'connected' | 'disconnected' | 'failed' | 'closed';

/** How long to wait for ICE gathering before answering with what we have, ms. */
const GATHER_TIMEOUT_MS = 2000;

/** A WebRTC peer of one WHEP or WHIP session. `close()` is idempotent. */
export class WebRtcPeer {
  private readonly pc: nodeDataChannel.PeerConnection;
  private readonly tracks = new Map<string, nodeDataChannel.Track>();
  /** Tracks whose DTLS-SRTP is up, by mid (kept from open/close events: no native call per packet). */
  private readonly openTracks = new Map<string, nodeDataChannel.Track>();
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
    private readonly log: Logger,
    private readonly clientAddress?: string,
  ) {
    this.pc = new nodeDataChannel.PeerConnection(name, {
      iceServers: network.iceServers,
      ...(network.bindAddress ? { bindAddress: network.bindAddress } : {}),
      portRangeBegin: network.portRange.min,
      portRangeEnd: network.portRange.max,
    });
    const dash = name.indexOf('-');
    this.kind = dash < 0 ? name : name.slice(0, dash);
    this.stream = dash < 0 ? '' : name.slice(dash + 1);
    this.pc.onStateChange((state) => {
      this.noteState(state as PeerState);
      this.stateHandler?.(state as PeerState);
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
    for (const t of tracks) {
      const direction = t.direction === 'send' ? 'SendOnly' : 'RecvOnly';
      const media = t.kind === 'video' ? new nodeDataChannel.Video(t.mid, direction) : new nodeDataChannel.Audio(t.mid, direction);
      if (media instanceof nodeDataChannel.Video) {
        if (t.codec === 'VP8') media.addVP8Codec(t.payloadType);
        else media.addH264Codec(t.payloadType, t.fmtp);
      } else {
        media.addOpusCodec(t.payloadType);
      }
      if (t.direction === 'send') media.addSSRC(t.ssrc, 'glasscast', 'glasscast', t.kind);
      const track = this.pc.addTrack(media);
      // NACKs are answered by the caller from one history per stream (viewers share sequence numbers), which is
      // cheaper than a history per viewer; the library's own responder did not answer in our tests.
      track.onMessage((msg) => {
        if (!isRtcp(msg)) {
          this.rtpHandler?.(t.mid, msg);
          return;
        }
        this.rtcpHandler?.(t.mid, msg);
        const feedback = readRtcpFeedback(msg);
        if (feedback.keyframeRequests.length > 0 || feedback.nacks.length > 0 || feedback.reports.length > 0 || feedback.remb !== undefined) {
          this.feedbackHandler?.(t.mid, feedback);
        }
      });
      keepUntilClosed(track, () => this.openTracks.delete(t.mid));
      track.onOpen(() => {
        this.openTracks.set(t.mid, track);
        const h = this.openHandler;
        this.openHandler = undefined;
        h?.();
      });
      this.tracks.set(t.mid, track);
    }
    this.pc.setRemoteDescription(offer, 'offer');
    const deadline = Date.now() + GATHER_TIMEOUT_MS;
    while (this.pc.gatheringState() !== 'complete' && Date.now() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const local = this.pc.localDescription();
    if (!local) throw new Error('the WebRTC library produced no answer');
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
    return this.announceTcp(this.announcePublicAddresses(local.sdp));
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
    let state: PeerState;
    try {
      state = this.pc.state() as PeerState;
    } catch {
      return;
    }
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
    let pair: ReturnType<nodeDataChannel.PeerConnection['getSelectedCandidatePair']>;
    try {
      pair = this.pc.getSelectedCandidatePair();
    } catch {
      return undefined;
    }
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
    const track = this.openTracks.get(mid);
    if (track === undefined) {
      this.packetsDropped++;
      return false;
    }
    try {
      const ok = track.sendMessageBinary(packet);
      if (ok) {
        this.packetsSent++;
        this.bytesSent += packet.length;
      } else {
        this.packetsDropped++;
      }
      return ok;
    } catch (err) {
      this.packetsDropped++;
      this.log.debug({ err }, 'WebRTC send failed');
      return false;
    }
  }

  /** Adds a remote ICE candidate (trickle, RFC 8840). */
  addRemoteCandidate(candidate: string, mid: string): void {
    this.pc.addRemoteCandidate(candidate, mid);
  }

  /** Current connection state. */
  get state(): PeerState {
    return this.closed ? 'closed' : (this.pc.state() as PeerState);
  }

  /** Round-trip time from the library's ICE/RTCP view, ms (undefined if not known). */
  rtt(): number | undefined {
    const r = this.pc.rtt();
    return r >= 0 ? r : undefined;
  }

  /** Closes the connection and its tracks. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.refreshRecord();
    if (this.record && this.record.connectMs === undefined) this.record.failure ??= `closed before connecting: ${this.failureSentence()}`;
    if (this.record) this.record.state = 'closed';
    this.closed = true;
    this.unregisterTcp?.();
    closePeerConnection(this.pc, this.tracks.values());
    this.tracks.clear();
    this.openTracks.clear();
  }
}

/**
 * Closes `tracks`, then `pc` (tracks first: the library's global release closes every track it still lists, and
 * one whose peer connection is gone crashes it). For every peer connection of the process, test clients included.
 */
export function closePeerConnection(pc: nodeDataChannel.PeerConnection, tracks: Iterable<nodeDataChannel.Track>): void {
  for (const track of tracks) {
    try {
      track.close();
    } catch {
      // already closed by the library
    }
  }
  pc.close();
}

/** Owners of the library now (servers that may create peers; test clients). */
let retained = 0;
/** Set when the library failed a health probe. */
let lastProbe: { at: number; ok: boolean } | undefined;
/** Health probes are at most this often, ms (each creates and closes a peer connection). */
const PROBE_INTERVAL_MS = 10_000;

/** How long after the last owner let go the library is released at the earliest, ms (closing peers drain first). */
const RELEASE_DELAY_MS = 200;
/** Longest the release waits for closed tracks to report it, ms. */
const RELEASE_WAIT_MS = 3_000;

/**
 * Track objects kept alive until the library reports them closed. node-datachannel's Track destructor does not
 * take the track off the library's list; only its 'closed' event does. A track collected before that event leaves a
 * dangling entry, and the library's global release closes every listed track: a crash (seen as SIGSEGV in
 * `TrackWrapper::CloseAll` at the end of test files). Holding each track until 'closed' makes that impossible.
 */
const unclosedTracks = new Set<nodeDataChannel.Track>();

/**
 * Keeps `track` referenced until the library reports it closed, then calls `onClosed`. Every track of the
 * process (servers and test clients) is made through this. Replaces any other `onClosed` handler.
 */
export function keepUntilClosed(track: nodeDataChannel.Track, onClosed?: () => void): void {
  unclosedTracks.add(track);
  track.onClosed(() => {
    unclosedTracks.delete(track);
    onClosed?.();
  });
}

/**
 * Marks one more owner of the library: a server, or anything else in the process that makes peer connections
 * (test clients); pair with {@link releaseWebRtc}.
 */
export function retainWebRtc(): void {
  retained++;
}

/**
 * Drops one owner; shortly after the last one, the library's global resources are released (its threads and
 * the handles that keep Node's event loop alive), so a process whose servers and clients closed ends by itself.
 * Releasing while any peer connection of the process is still in use would crash the library: every owner
 * retains it first. The library starts again on the next peer.
 */
export function releaseWebRtc(): void {
  if (retained === 0) return;
  retained--;
  if (retained > 0) return;
  const giveUpAt = Date.now() + RELEASE_WAIT_MS;
  const release = (): void => {
    if (retained > 0) return;
    // Closed tracks report it asynchronously; release once they all have (or, bounded, with the rest still held).
    if (unclosedTracks.size > 0 && Date.now() < giveUpAt) {
      setTimeout(release, 50);
      return;
    }
    nodeDataChannel.cleanup();
    unclosedTracks.clear();
  };
  setTimeout(release, RELEASE_DELAY_MS);
}

/**
 * True when the library answers: a peer connection can be created and closed (probed at most every 10 s).
 * For /healthz.
 */
export function webRtcHealthy(): boolean {
  const now = Date.now();
  if (lastProbe && now - lastProbe.at < PROBE_INTERVAL_MS) return lastProbe.ok;
  let ok: boolean;
  try {
    const pc = new nodeDataChannel.PeerConnection('health', { iceServers: [], portRangeBegin: 1, portRangeEnd: 1 });
    ok = typeof pc.state() === 'string';
    pc.close();
  } catch {
    ok = false;
  }
  lastProbe = { at: now, ok };
  return ok;
}
