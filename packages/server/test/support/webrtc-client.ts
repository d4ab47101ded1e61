/**
 * A non-browser WHEP client for tests and benchmarks (node-datachannel, the same library the server uses, on the
 * other end of a real DTLS-SRTP connection): offers receive-only H.264 + Opus, collects the RTP it gets, and can
 * send RTCP (e.g. a NACK) back.
 */
import nodeDataChannel from 'node-datachannel';
import { closePeerConnection, keepUntilClosed, releaseWebRtc, retainWebRtc } from '../../src/webrtc/webrtc-peer.js';
import { writeNack } from '../../src/media/rtp/rtcp.js';
import { readRtpPacket } from '../../src/media/rtp/rtp-packet.js';

/** One received RTP packet. */
export interface ReceivedPacket {
  kind: 'video' | 'audio';
  sequenceNumber: number;
  timestamp: number;
  ssrc: number;
  marker: boolean;
  payloadType: number;
  payload: Buffer;
  at: number;
}

/** A connected WHEP test client. */
export class WhepTestClient {
  readonly packets: ReceivedPacket[] = [];
  location: string | undefined;
  answerSdp = '';
  private pc!: nodeDataChannel.PeerConnection;
  private video!: nodeDataChannel.Track;
  private audio!: nodeDataChannel.Track;
  /** Keep received packets (tests) or only count them (load benchmarks). */
  keepPackets = true;
  counts = { video: 0, audio: 0, bytes: 0 };
  /** With `keepPackets` off: called with each RTP packet's kind and sequence number (no copy, no parse). */
  onSequence: ((kind: 'video' | 'audio', sequenceNumber: number) => void) | undefined;

  /**
   * `listen: false` registers no message callback at all: the library still receives and decrypts every packet
   * but none crosses into JavaScript (load benchmarks, where thousands of callbacks a second would dominate).
   */
  constructor(private readonly options: { videoCodecs?: 'h264' | 'vp8'; listen?: boolean } = {}) {
    // The process's WebRTC library stays up while this client lives (the server releases it when it stops).
    retainWebRtc();
    this.init();
  }

  private init(): void {
    const options = this.options;
    this.pc = new nodeDataChannel.PeerConnection('whep-test-client', { iceServers: [], bindAddress: '127.0.0.1' });
    const video = new nodeDataChannel.Video('0', 'RecvOnly');
    if (options.videoCodecs === 'vp8') video.addVP8Codec(96);
    else video.addH264Codec(102, 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f');
    this.video = this.pc.addTrack(video);
    keepUntilClosed(this.video);
    const audio = new nodeDataChannel.Audio('1', 'RecvOnly');
    audio.addOpusCodec(111);
    this.audio = this.pc.addTrack(audio);
    keepUntilClosed(this.audio);
    for (const [kind, track] of [['video', this.video], ['audio', this.audio]] as const) {
      if (options.listen === false) continue;
      track.onMessage((msg) => {
        if (msg.length < 12 || (msg[1]! >= 192 && msg[1]! <= 223)) return; // RTCP (sender reports)
        this.counts[kind]++;
        this.counts.bytes += msg.length;
        if (!this.keepPackets) {
          this.onSequence?.(kind, msg.readUInt16BE(2));
          return;
        }
        const p = readRtpPacket(msg);
        this.packets.push({ kind, sequenceNumber: p.sequenceNumber, timestamp: p.timestamp, ssrc: p.ssrc, marker: p.marker, payloadType: p.payloadType, payload: Buffer.from(p.payload), at: Date.now() });
      });
    }
  }

  /** Makes the offer (after ICE gathering). */
  async offer(): Promise<string> {
    this.pc.setLocalDescription();
    const deadline = Date.now() + 3000;
    while (this.pc.gatheringState() !== 'complete' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.pc.localDescription()!.sdp;
  }

  /**
   * POSTs the offer to `url`; returns the HTTP response (answer applied when 201). `rewriteAnswer` may change the
   * answer first (e.g. to route media through a lossy relay).
   */
  async connect(url: string, rewriteAnswer: (sdp: string) => string | Promise<string> = (s) => s, options: { hideCandidates?: boolean; token?: string } = {}): Promise<Response> {
    for (let attempt = 1; ; attempt++) {
      let offer = await this.offer();
      // Without our candidates the server cannot check a direct path, so media must take the one we point it to.
      if (options.hideCandidates) offer = offer.replace(/a=candidate:[^\r\n]*\r?\n/g, '');
      const headers: Record<string, string> = { 'content-type': 'application/sdp' };
      if (options.token) headers['authorization'] = `Bearer ${options.token}`;
      const res = await fetch(url, { method: 'POST', headers, body: offer });
      if (res.status !== 201) return res;
      this.location = new URL(res.headers.get('location')!, url).toString();
      this.answerSdp = await res.text();
      try {
        this.pc.setRemoteDescription(await rewriteAnswer(this.answerSdp), 'answer');
        return res;
      } catch (err) {
        // This client library now and then loses its ICE transport before the answer ("remote candidate without
        // ICE transport"); a fresh peer connection gets through. The server is not involved.
        if (attempt >= 3) throw err;
        await fetch(this.location, { method: 'DELETE' }).catch(() => undefined);
        this.closePeer();
        this.init();
      }
    }
  }

  /** The server's first host candidate port in the answer. */
  serverPort(): number {
    return Number(/a=candidate:\S+ \d \S+ \d+ 127\.0\.0\.1 (\d+) typ host/.exec(this.answerSdp)?.[1]);
  }

  /** Video sequence numbers this client has NACKed, with when and how often. */
  readonly nacked = new Map<number, { at: number; times: number }>();

  /**
   * Sends a generic NACK for every video sequence number missing between the oldest and newest received, and
   * again (up to 5 times, 200 ms apart) while it stays missing — what a browser's receiver does.
   */
  nackGaps(): number[] {
    const seqs = this.packets.filter((p) => p.kind === 'video').map((p) => p.sequenceNumber);
    if (seqs.length < 2) return [];
    const have = new Set(seqs);
    const ssrc = this.packets.find((p) => p.kind === 'video')!.ssrc;
    const missing: number[] = [];
    const newest = seqs[seqs.length - 1]!;
    const now = Date.now();
    for (let back = 1; back < 500 && back < seqs.length; back++) {
      const seq = (newest - back + 0x10000) & 0xffff;
      if (have.has(seq)) continue;
      const prior = this.nacked.get(seq);
      if (prior && (prior.times >= 5 || now - prior.at < 200)) continue;
      missing.push(seq);
      this.nacked.set(seq, { at: now, times: (prior?.times ?? 0) + 1 });
    }
    if (missing.length > 0) this.video.sendMessageBinary(writeNack(1, ssrc, missing));
    return missing;
  }

  /** Connection state. */
  get state(): string {
    return this.pc.state();
  }

  /** Sends an RTCP packet on the video track (e.g. a NACK). */
  sendVideoRtcp(packet: Buffer): boolean {
    return this.video.sendMessageBinary(packet);
  }

  /** DELETEs the session (if any) and closes the connection. */
  async close(): Promise<void> {
    if (this.location) await fetch(this.location, { method: 'DELETE' }).catch(() => undefined);
    this.location = undefined;
    if (this.closed) return;
    this.closed = true;
    this.closePeer();
    releaseWebRtc();
  }

  private closed = false;

  private closePeer(): void {
    closePeerConnection(this.pc, [this.video, this.audio]);
  }
}
