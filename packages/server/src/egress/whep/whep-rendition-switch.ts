/**
 * Moves one WebRTC viewer's video between the renditions of a stream (issue 5, "WebRTC ABR") so the browser
 * sees one smooth track: the switch happens only at a keyframe of the new rendition, sequence numbers continue
 * (rewritten per viewer after the first switch), the SSRC stays the one announced in the answer, and RTP
 * timestamps need no rewriting because every rendition of a group carries the same timestamp for the same
 * picture (whep-source.ts).
 *
 * Renditions lag the source by the transcoder's delay. Going from a source ahead to a rendition behind, the
 * viewer stops taking the old source at its keyframe K (keyframes sit at identical PTS in every rendition) and
 * resumes with the new one's keyframe K, so no picture is shown twice; the other way the new keyframe is
 * already later than anything sent, and the switch is immediate.
 */
import type { RtpViewer, WhepSource } from './whep-source.js';

/** Longest a viewer waits for the new rendition's keyframe before giving up the switch, ms. */
const SWITCH_TIMEOUT_MS = 4_000;
/** Longest the old source is held at its keyframe waiting for the new one to reach it, ms (aligned: the transcoder's delay). */
const HOLD_LIMIT_MS = 500;
/** Most packets kept back during a hold (500 ms of a 20 Mb/s source is ~1 000). */
const MAX_HELD_PACKETS = 2_000;

/** True when RTP timestamp `a` is later than `b` (modulo 2^32, RFC 3550 §5.1). */
function after(a: number, b: number): boolean {
  const d = (a - b) >>> 0;
  return d !== 0 && d < 0x80000000;
}

/** The video half of one viewer: which source it takes packets from, and the rewriting after switches. */
export class RenditionSwitch {
  private current: WhepSource;
  private pending: WhepSource | undefined;
  private pendingSince = 0;
  /** The current source reached a keyframe the pending one has not: hold it until the pending one gets there. */
  private held = false;
  private heldSince = 0;
  /** What the current source sent while held (from its keyframe on): dropped at the cut-over, sent if the hold gives up. */
  private heldPackets: Buffer[] = [];
  /** Added to incoming sequence numbers (mod 2^16). */
  private seqDelta = 0;
  /** Outgoing sequence number of the last cut-over's keyframe: packets before it are not retransmitted. */
  private switchSeq: number | undefined;
  private lastSeq: number | undefined;
  private lastTimestamp: number | undefined;
  /** Completed switches. */
  switches = 0;

  constructor(
    /** The group's source: the one whose SSRC the answer announced (it also sends the viewer's audio). */
    private readonly origin: WhepSource,
    /** Where the viewer's video starts (the origin, or the source's B-frame-free copy). */
    first: WhepSource,
    private readonly viewer: RtpViewer,
    private readonly send: (packet: Buffer) => void,
    private readonly onSwitched: (to: WhepSource) => void,
  ) {
    this.current = first;
  }

  /** The source whose video the viewer receives now. */
  get source(): WhepSource {
    return this.current;
  }

  /** The source a switch is waiting for, if any. */
  get target(): WhepSource | undefined {
    return this.pending;
  }

  /** Asks for `to`: the switch happens at its next keyframe. Asking for the current source cancels a pending switch. */
  request(to: WhepSource): void {
    if (this.pending === to) return;
    this.cancel();
    if (to === this.current) return;
    this.pending = to;
    this.pendingSince = Date.now();
    to.addViewer(this.viewer, ['video'], false);
  }

  /** Gives up a pending switch (what was held back goes out: it starts with a keyframe the viewer needs). */
  cancel(): void {
    if (!this.pending) return;
    this.pending.removeViewer(this.viewer, ['video']);
    this.pending = undefined;
    this.releaseHeld();
  }

  /** Takes one video packet (RTP or RTCP) from `from`. */
  onPacket(packet: Buffer, from: WhepSource, keyframeStart: boolean): void {
    const rtcp = packet[1]! >= 192 && packet[1]! <= 223;
    if (rtcp) {
      // Sender reports of the current source only (they carry its SSRC; receivers match them to the track).
      if (from === this.current) this.send(this.rewrite(packet, true));
      return;
    }
    const timestamp = packet.readUInt32BE(4);
    if (from === this.pending) {
      if (!keyframeStart || (this.lastTimestamp !== undefined && !after(timestamp, this.lastTimestamp))) return;
      this.cutOver(packet.readUInt16BE(2));
    } else if (from !== this.current) {
      return;
    } else if (this.pending) {
      if (Date.now() - this.pendingSince > SWITCH_TIMEOUT_MS) {
        this.cancel(); // the new rendition never sent a usable keyframe: stay
      } else if (keyframeStart && !this.held && !after(this.pending.lastVideoTimestamp, timestamp) && this.pending.lastVideoTimestamp !== timestamp) {
        this.held = true; // the pending rendition is behind: stop here, it resumes with this very keyframe
        this.heldSince = Date.now();
      } else if (this.held && Date.now() - this.heldSince > HOLD_LIMIT_MS) {
        this.releaseHeld(); // its keyframes are not where ours are: keep playing and try at the next keyframe
      }
      if (this.held) {
        if (this.heldPackets.length < MAX_HELD_PACKETS) this.heldPackets.push(packet);
        else this.releaseHeld();
        if (this.held) return;
      }
    }
    this.lastTimestamp = timestamp;
    this.send(this.rewrite(packet, false));
  }

  /**
   * The packet a NACK for outgoing `sequenceNumber` asks for, rewritten, or undefined when it is gone. Packets
   * from before the last switch are not sent again: the new rendition's keyframe replaced every picture they
   * belong to, and on a congested link (the usual reason to switch down) they would only delay that keyframe.
   */
  retransmission(sequenceNumber: number): Buffer | undefined {
    if (this.switchSeq !== undefined && ((sequenceNumber - this.switchSeq) & 0xffff) >= 0x8000) return undefined;
    const packet = this.current.retransmission('video', (sequenceNumber - this.seqDelta) & 0xffff);
    return packet && this.rewriteWith(packet, this.seqDelta);
  }

  /** Leaves every source it takes video from (the viewer's owner leaves the origin's audio). */
  close(): void {
    this.cancel();
    this.current.removeViewer(this.viewer, ['video']);
  }

  private cutOver(incomingSeq: number): void {
    const to = this.pending!;
    const nextSeq = this.lastSeq === undefined ? incomingSeq : (this.lastSeq + 1) & 0xffff;
    this.switchSeq = nextSeq;
    // The origin also feeds the viewer's audio: leave only its video.
    this.current.removeViewer(this.viewer, ['video']);
    this.current = to;
    this.pending = undefined;
    this.held = false;
    this.heldPackets = [];
    this.seqDelta = (nextSeq - incomingSeq) & 0xffff;
    this.switches++;
    this.onSwitched(to);
  }

  /** Ends a hold: the packets kept back since the held keyframe go out in order (late, but decodable). */
  private releaseHeld(): void {
    this.held = false;
    const packets = this.heldPackets;
    this.heldPackets = [];
    for (const p of packets) {
      this.lastTimestamp = p.readUInt32BE(4);
      this.send(this.rewrite(p, false));
    }
  }

  private rewrite(packet: Buffer, rtcp: boolean): Buffer {
    if (rtcp) {
      if (this.current === this.origin) return packet;
      const out = Buffer.from(packet);
      out.writeUInt32BE(this.origin.videoSsrc, 4); // SR sender SSRC
      return out;
    }
    const out = this.rewriteWith(packet, this.seqDelta);
    this.lastSeq = out.readUInt16BE(2);
    return out;
  }

  private rewriteWith(packet: Buffer, delta: number): Buffer {
    const ssrc = this.origin.videoSsrc;
    if (delta === 0 && packet.readUInt32BE(8) === ssrc) return packet;
    const out = Buffer.from(packet);
    out.writeUInt16BE((packet.readUInt16BE(2) + delta) & 0xffff, 2);
    out.writeUInt32BE(ssrc, 8);
    return out;
  }
}
