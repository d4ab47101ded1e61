/**
 * The one adapter around the WebRTC library (node-datachannel / libdatachannel, DESIGN.md), shared by WHEP and
 * WHIP: a peer that answers an offer with exactly our tracks (one codec each; send-only for WHEP viewers,
 * receive-only for WHIP publishers), sends RTP/RTCP we built, and hands back the RTP and RTCP it receives.
 * Nothing outside this folder imports the library.
 */
import nodeDataChannel from 'node-datachannel';
import type { Logger } from '../core/logger.js';
import { isRtcp, readRtcpFeedback, type RtcpFeedback } from '../media/rtp/rtcp.js';

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

  constructor(
    name: string,
    private readonly network: WebRtcNetworkOptions,
    private readonly log: Logger,
  ) {
    this.pc = new nodeDataChannel.PeerConnection(name, {
      iceServers: network.iceServers,
      ...(network.bindAddress ? { bindAddress: network.bindAddress } : {}),
      portRangeBegin: network.portRange.min,
      portRangeEnd: network.portRange.max,
    });
    this.pc.onStateChange((state) => {
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
    return this.announcePublicAddresses(local.sdp);
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
    this.closed = true;
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
