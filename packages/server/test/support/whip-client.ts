/**
 * A non-browser WHIP publisher that behaves like OBS 30+ (libdatachannel, H.264 + Opus, Bearer token): ffmpeg
 * encodes a test pattern (x264 baseline, zerolatency, SPS/PPS before each keyframe) and a sine (libopus), packs
 * them as RTP on loopback UDP, and this client sends those packets over a real DTLS-SRTP connection, rewritten
 * to the negotiated payload types and our SSRCs. It keeps a packet history to answer the server's NACKs, can
 * drop some video packets on their first send, and records the RTCP it gets back (PLI, NACK, REMB).
 */
import { createSocket, type Socket } from 'node:dgram';
import type { AddressInfo } from 'node:net';
import nodeDataChannel from 'node-datachannel';
import { closePeerConnection, keepUntilClosed, releaseWebRtc, retainWebRtc } from '../../src/webrtc/webrtc-peer.js';
import { readRtcpFeedback } from '../../src/media/rtp/rtcp.js';
import { runFfmpeg, type FfmpegProcess } from './ffmpeg.js';

const VIDEO_PT = 96;
const AUDIO_PT = 111;

/** RTCP the server sent, counted. */
export interface ReceivedFeedback {
  plis: number;
  nackedSequences: number;
  /** Last REMB bitrate, bits/s. */
  rembBitrate: number | undefined;
  receiverReports: number;
}

/** An OBS-like WHIP publisher. */
export class WhipTestClient {
  pc!: nodeDataChannel.PeerConnection;
  private video!: nodeDataChannel.Track;
  private audio!: nodeDataChannel.Track;
  readonly videoSsrc = 0x1234_5678;
  readonly audioSsrc = 0x2345_6789;
  location: string | undefined;
  readonly feedback: ReceivedFeedback = { plis: 0, nackedSequences: 0, rembBitrate: undefined, receiverReports: 0 };
  /** Video packets sent by sequence number (to answer NACKs). */
  private readonly history = new Map<number, Buffer>();
  /** Fraction of video packets not sent the first time (0–1), to exercise NACK. */
  dropFraction = 0;
  sent = { video: 0, audio: 0, dropped: 0, retransmitted: 0 };
  private ffmpeg: FfmpegProcess | undefined;
  private sockets: Socket[] = [];
  private open = false;

  constructor() {
    // The process's WebRTC library stays up while this client lives (the server releases it when it stops).
    retainWebRtc();
    this.init();
  }

  private init(): void {
    this.open = false;
    this.pc = new nodeDataChannel.PeerConnection('whip-test-client', { iceServers: [], bindAddress: '127.0.0.1' });
    const video = new nodeDataChannel.Video('0', 'SendOnly');
    video.addH264Codec(VIDEO_PT, 'level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f');
    video.addSSRC(this.videoSsrc, 'obs', 'obs', 'video');
    this.video = this.pc.addTrack(video);
    keepUntilClosed(this.video);
    const audio = new nodeDataChannel.Audio('1', 'SendOnly');
    audio.addOpusCodec(AUDIO_PT);
    audio.addSSRC(this.audioSsrc, 'obs', 'obs', 'audio');
    this.audio = this.pc.addTrack(audio);
    keepUntilClosed(this.audio);
    this.video.onOpen(() => (this.open = true));
    this.video.onMessage((msg) => this.onRtcp(msg));
    this.audio.onMessage((msg) => this.onRtcp(msg));
  }

  private onRtcp(msg: Buffer): void {
    if (msg.length < 8 || msg[1]! < 192 || msg[1]! > 223) return;
    const fb = readRtcpFeedback(msg);
    this.feedback.plis += fb.keyframeRequests.length;
    for (const nack of fb.nacks) {
      this.feedback.nackedSequences += nack.sequenceNumbers.length;
      for (const seq of nack.sequenceNumbers) {
        const packet = this.history.get(seq);
        if (packet && this.video.isOpen()) {
          this.sent.retransmitted++;
          this.video.sendMessageBinary(packet);
        }
      }
    }
    for (let pos = 0; pos + 4 <= msg.length; ) {
      const end = pos + (msg.readUInt16BE(pos + 2) + 1) * 4;
      if (end > msg.length) break;
      if (msg[pos + 1] === 201) this.feedback.receiverReports++;
      if (msg[pos + 1] === 206 && (msg[pos]! & 0x1f) === 15 && msg.toString('latin1', pos + 12, pos + 16) === 'REMB') {
        const exp = msg[pos + 17]! >> 2;
        const mantissa = ((msg[pos + 17]! & 3) << 16) | msg.readUInt16BE(pos + 18);
        this.feedback.rembBitrate = mantissa * 2 ** exp;
      }
      pos = end;
    }
  }

  /** Makes the offer after ICE gathering. */
  private async offer(): Promise<string> {
    this.pc.setLocalDescription();
    const deadline = Date.now() + 3000;
    while (this.pc.gatheringState() !== 'complete' && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    return this.pc.localDescription()!.sdp;
  }

  /** POSTs the offer with `Authorization: Bearer <key>` (no header when key is undefined); applies a 201's answer. */
  async publish(url: string, key: string | undefined): Promise<Response> {
    const headers: Record<string, string> = { 'content-type': 'application/sdp' };
    if (key !== undefined) headers['authorization'] = `Bearer ${key}`;
    for (let attempt = 1; ; attempt++) {
      const res = await fetch(url, { method: 'POST', headers, body: await this.offer() });
      if (res.status !== 201) return res;
      this.location = new URL(res.headers.get('location')!, url).toString();
      try {
        this.pc.setRemoteDescription(await res.text(), 'answer');
        return res;
      } catch (err) {
        // This client library now and then loses its ICE transport before the answer ("remote candidate without
        // ICE transport"); a fresh peer connection gets through. The server is not involved. Three immediate
        // retries once failed in a row within 54 ms (CI, 2026-12-02): the retries now wait a little, and twice as
        // long each time.
        if (attempt >= 5) throw err;
        await this.delete();
        this.closePeer();
        await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
        this.init();
      }
    }
  }

  /** Waits for DTLS, then starts ffmpeg and forwards its RTP (`size` like 1280x720). */
  async startMedia(options: { size?: string; bitrate?: string } = {}): Promise<void> {
    const deadline = Date.now() + 10_000;
    while (!this.open && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    if (!this.open) throw new Error('WHIP connection did not open');
    const videoPort = await this.listen((packet) => this.forward('video', packet));
    const audioPort = await this.listen((packet) => this.forward('audio', packet));
    this.ffmpeg = runFfmpeg([
      '-re', '-f', 'lavfi', '-i', `testsrc2=size=${options.size ?? '640x360'}:rate=30`,
      '-re', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-map', '0:v', '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline', '-pix_fmt', 'yuv420p',
      '-b:v', options.bitrate ?? '1500k', '-g', '30', '-bsf:v', 'dump_extra=freq=keyframe',
      '-f', 'rtp', '-payload_type', String(VIDEO_PT), `rtp://127.0.0.1:${videoPort}?pkt_size=1200`,
      '-map', '1:a', '-c:a', 'libopus', '-b:a', '64k', '-ac', '2', '-frame_duration', '20', '-application', 'lowdelay',
      '-f', 'rtp', '-payload_type', String(AUDIO_PT), `rtp://127.0.0.1:${audioPort}`,
    ]);
  }

  private async listen(onPacket: (packet: Buffer) => void): Promise<number> {
    const socket = createSocket('udp4');
    this.sockets.push(socket);
    socket.on('message', onPacket);
    await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
    return (socket.address() as AddressInfo).port;
  }

  private forward(kind: 'video' | 'audio', packet: Buffer): void {
    if (packet.length < 12) return; // (ffmpeg sends its RTCP to port + 1, not here)
    packet.writeUInt32BE(kind === 'video' ? this.videoSsrc : this.audioSsrc, 8);
    const track = kind === 'video' ? this.video : this.audio;
    if (!track.isOpen()) return;
    if (kind === 'video') {
      const seq = packet.readUInt16BE(2);
      this.history.set(seq, packet);
      this.history.delete((seq - 1024) & 0xffff);
      if (this.dropFraction > 0 && Math.random() < this.dropFraction) {
        this.sent.dropped++;
        return;
      }
    }
    this.sent[kind]++;
    track.sendMessageBinary(packet);
  }

  /** Stops sending media (the connection stays up). */
  async stopMedia(): Promise<void> {
    await this.ffmpeg?.stop();
    this.ffmpeg = undefined;
    for (const s of this.sockets) s.close();
    this.sockets = [];
  }

  /** Sends DELETE to the session URL; returns the status. */
  async delete(): Promise<number> {
    if (!this.location) return 0;
    return (await fetch(this.location, { method: 'DELETE' })).status;
  }

  /** Stops media and closes the connection without DELETE (a publisher that vanishes). */
  async close(): Promise<void> {
    await this.stopMedia();
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
