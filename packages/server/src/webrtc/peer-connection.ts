/**
 * The one adapter around the WebRTC library (node-datachannel / libdatachannel, DESIGN.md): a peer connection
 * answering an offer with exactly our tracks, sending the RTP/RTCP we built and handing back what it receives.
 * {@link WebRtcPeer} (webrtc-peer.ts) runs it in this process, or a peer host process runs it for WHEP viewers
 * (peer-host.ts: the library is not safe in worker threads, so sending spreads over processes). Nothing outside
 * this folder imports the library.
 */
import { createSocket } from 'node:dgram';
import nodeDataChannel from 'node-datachannel';

/** A track of a peer: one media section of the offer, answered with one codec. */
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

/** The candidate pair ICE selected, as the library reports it. */
export interface CandidatePair {
  local: { address: string; port: number };
  remote: { address: string; port: number; type: string };
}

/** What a peer connection is made with: the library's network settings (plain data: it crosses to peer hosts). */
export interface PeerConnectionSettings {
  /** `<kind>-<stream>`: the library's peer name. */
  name: string;
  iceServers: string[];
  /** Local address ICE binds; undefined = every interface. */
  bindAddress: string | undefined;
  /**
   * The UDP port of this process's peers: every peer connection of a process shares it (ICE UDP mux: one socket,
   * demultiplexed by ICE username and remote address), so viewers are not limited by a port range.
   */
  port: number;
}

/** What a peer connection tells its owner. Called on the owner's thread, in the order the library reported. */
export interface PeerConnectionEvents {
  state(state: PeerState): void;
  /** DTLS-SRTP is up on the track of `mid`. */
  trackOpen(mid: string): void;
  /** An RTP or RTCP packet (decrypted) arrived on the track of `mid`. */
  message(mid: string, packet: Buffer): void;
  /** Sends reported done were refused after all (a peer host sends after answering): `packets` of `bytes`. */
  refused?(packets: number, bytes: number): void;
}

/**
 * One peer connection, wherever the library runs it. `close()` is idempotent; after it nothing is reported.
 */
export interface PeerConnection {
  /**
   * Answers `offer` with exactly `tracks` after ICE gathering (or {@link GATHER_TIMEOUT_MS}).
   * @throws Error when the library refuses the offer (malformed SDP, no usable transport).
   */
  answer(offer: string, tracks: readonly PeerTrack[]): Promise<string>;
  /**
   * Sends one RTP or RTCP packet on the track of `mid`. Returns false when it was not sent (track not open,
   * buffer full); a peer host answers true for what it queued and reports refusals later.
   */
  send(mid: string, packet: Buffer): boolean;
  /** Adds a remote ICE candidate (trickle, RFC 8840). @throws Error for a malformed candidate. */
  addRemoteCandidate(candidate: string, mid: string): void;
  /** The connection state now (a peer host's is the last one it reported). */
  state(): PeerState;
  /** The pair ICE selected, once connected (a peer host's is the one it reported on connecting). */
  selectedPair(): CandidatePair | undefined;
  close(): void;
}

/**
 * The connection could not be made for a reason of the server's (its peer host ended or did not answer), not
 * the offer's: the caller may retry.
 */
export class PeerConnectionUnavailableError extends Error {}

/** Makes a peer connection reporting to `events`. */
export type PeerConnectionFactory = (settings: PeerConnectionSettings, events: PeerConnectionEvents) => PeerConnection;

/** How long to wait for ICE gathering before answering with what we have, ms. */
export const GATHER_TIMEOUT_MS = 2000;

/** A peer connection of the library in this process. */
export class LibraryPeerConnection implements PeerConnection {
  private readonly pc: nodeDataChannel.PeerConnection;
  private readonly tracks = new Map<string, nodeDataChannel.Track>();
  /** Tracks whose DTLS-SRTP is up, by mid (kept from open/close events: no native call per packet). */
  private readonly openTracks = new Map<string, nodeDataChannel.Track>();
  private closed = false;

  constructor(
    private readonly settings: PeerConnectionSettings,
    private readonly events: PeerConnectionEvents,
  ) {
    this.pc = new nodeDataChannel.PeerConnection(settings.name, {
      iceServers: settings.iceServers,
      ...(settings.bindAddress ? { bindAddress: settings.bindAddress } : {}),
      portRangeBegin: settings.port,
      portRangeEnd: settings.port,
      enableIceUdpMux: true,
    });
    this.pc.onStateChange((state) => {
      if (!this.closed) this.events.state(state as PeerState);
    });
  }

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
      // NACKs are answered by the owner from one history per stream (viewers share sequence numbers), which is
      // cheaper than a history per viewer; the library's own responder did not answer in our tests.
      track.onMessage((msg) => {
        if (!this.closed) this.events.message(t.mid, msg);
      });
      keepUntilClosed(track, () => this.openTracks.delete(t.mid));
      track.onOpen(() => {
        this.openTracks.set(t.mid, track);
        if (!this.closed) this.events.trackOpen(t.mid);
      });
      this.tracks.set(t.mid, track);
    }
    this.pc.setRemoteDescription(offer, 'offer');
    const deadline = Date.now() + GATHER_TIMEOUT_MS;
    while (this.pc.gatheringState() !== 'complete' && Date.now() < deadline && !this.closed) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const local = this.closed ? null : this.pc.localDescription();
    if (!local) throw new Error('the WebRTC library produced no answer');
    return local.sdp;
  }

  send(mid: string, packet: Buffer): boolean {
    const track = this.openTracks.get(mid);
    if (track === undefined) return false;
    try {
      return track.sendMessageBinary(packet);
    } catch {
      return false; // the track closed under us: counted as dropped by the owner
    }
  }

  addRemoteCandidate(candidate: string, mid: string): void {
    this.pc.addRemoteCandidate(candidate, mid);
  }

  state(): PeerState {
    if (this.closed) return 'closed';
    try {
      return this.pc.state() as PeerState;
    } catch {
      return 'closed';
    }
  }

  selectedPair(): CandidatePair | undefined {
    if (this.closed) return undefined;
    try {
      return this.pc.getSelectedCandidatePair() ?? undefined;
    } catch {
      return undefined;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    closePeerConnection(this.pc, this.tracks.values());
    this.tracks.clear();
    this.openTracks.clear();
  }
}

/** The factory of peer connections in this process. */
export const libraryPeerConnection: PeerConnectionFactory = (settings, events) => new LibraryPeerConnection(settings, events);

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

/**
 * An idle peer connection per UDP mux port of this process ({@link reserveMuxPort}). The library closes a mux
 * socket when its last peer goes, asynchronously: a peer made meanwhile cannot bind the port and its offer fails
 * ("Failed to gather local ICE candidates", seen when a WHIP publisher returned at once). Never given a remote
 * description, the keeper sends nothing.
 */
const muxKeepers = new Map<number, { pc: nodeDataChannel.PeerConnection; track: nodeDataChannel.Track }>();

/** A UDP port the peer connections of this process share (ICE UDP mux). `release()` is idempotent. */
export interface MuxPort {
  port: number;
  /** Lets the port go (its peers should be closed first). */
  release(): void;
}

/** True when UDP `port` can be bound on `address` now (bound and let go at once). */
async function udpPortFree(address: string | undefined, port: number): Promise<boolean> {
  const socket = createSocket(address?.includes(':') ? 'udp6' : 'udp4');
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind({ port, address: address ?? '0.0.0.0', exclusive: true }, resolve);
    });
    return true;
  } catch {
    return false;
  } finally {
    await new Promise<void>((r) => socket.close(() => r()));
  }
}

/** Reservations of this process, one at a time (a port tested free must be bound before the next test). */
let reserving: Promise<unknown> = Promise.resolve();

/** Longest a keeper may take to bind its port, ms. */
const KEEPER_BIND_WAIT_MS = 1000;

/**
 * Takes the first port of `candidates` that is free on `bindAddress` for this process's peer connections, and
 * holds it with an idle keeper peer until released. The port is tested first and the keeper made at once (the
 * library, given a port it cannot bind, aborts the process from one of its threads); resolves once the keeper
 * has bound it.
 * @throws Error when no candidate is free.
 */
export function reserveMuxPort(bindAddress: string | undefined, candidates: readonly number[]): Promise<MuxPort> {
  const next = reserving.then(() => reserve(bindAddress, candidates));
  reserving = next.catch(() => undefined);
  return next;
}

async function reserve(bindAddress: string | undefined, candidates: readonly number[]): Promise<MuxPort> {
  for (const port of candidates) {
    if (muxKeepers.has(port) || !(await udpPortFree(bindAddress, port))) continue;
    const pc = new nodeDataChannel.PeerConnection('mux-keeper', {
      iceServers: [],
      ...(bindAddress ? { bindAddress } : {}),
      portRangeBegin: port,
      portRangeEnd: port,
      enableIceUdpMux: true,
    });
    const media = new nodeDataChannel.Audio('0', 'RecvOnly');
    media.addOpusCodec(111);
    const track = pc.addTrack(media);
    keepUntilClosed(track);
    pc.setLocalDescription();
    muxKeepers.set(port, { pc, track });
    // The library binds from its own thread: wait until it has, so the next test of this port sees it taken.
    for (const deadline = Date.now() + KEEPER_BIND_WAIT_MS; pc.gatheringState() !== 'complete' && Date.now() < deadline; ) await new Promise((r) => setTimeout(r, 5));
    let released = false;
    return {
      port,
      release: () => {
        if (released) return;
        released = true;
        muxKeepers.delete(port);
        closePeerConnection(pc, [track]);
      },
    };
  }
  throw new Error(`no free UDP port for WebRTC among ${candidates.length === 0 ? 'none' : `${candidates[0]}–${candidates[candidates.length - 1]}`}`);
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
 * @param onReleased called once the library has been released (not called when another owner came meanwhile).
 */
export function releaseWebRtc(onReleased?: () => void): void {
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
    onReleased?.();
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
