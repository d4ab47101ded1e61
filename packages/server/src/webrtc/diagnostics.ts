/**
 * "Why can't I connect": what the /diagnostics page asks the server. The server's network setup (which UDP and
 * TCP ports WebRTC needs, which addresses it announces), and probe peers: a browser offers one receive-only audio
 * section, the server answers with an Opus send track (no media is sent) carrying every candidate, and the page
 * keeps only the UDP or only the TCP ones to test each transport apart (RFC 8445 connectivity checks, then
 * DTLS). The server's own view of each probe (which pair won, or why it failed) is its journal record.
 */
import { GlasscastError } from '../core/errors.js';
import { chooseOpusFormat, parseSdp } from '../media/sdp/sdp.js';
import type { ConnectionJournal, ConnectionRecord } from './connection-journal.js';
import { WebRtcPeer, type WebRtcNetworkOptions } from './webrtc-peer.js';

/** How long a probe peer lives, ms. */
const PROBE_LIFETIME_MS = 15_000;
/** Probes at once (each holds a UDP port of the media range). */
const MAX_PROBES = 16;

/** The network setup as the diagnostics page shows it. */
export interface NetworkSetup {
  /** UDP ports WebRTC media uses (forward them), inclusive. */
  udpPorts: { min: number; max: number };
  /** TCP port of WebRTC over TCP; null when off. */
  tcpPort: number | null;
  /** Addresses announced as candidates beside the interfaces' own (configured public addresses). */
  publicAddresses: string[];
  /** STUN/TURN servers configured (URLs without credentials). */
  iceServers: string[];
  /** True when the web server speaks HTTPS. */
  https: boolean;
}

/** Probe peers and the journal behind the diagnostics API. */
export class WebRtcDiagnostics {
  private readonly probes = new Map<string, { peer: WebRtcPeer; timer: NodeJS.Timeout }>();

  constructor(
    private readonly network: WebRtcNetworkOptions,
    private readonly journal: ConnectionJournal,
    private readonly https: () => boolean,
  ) {}

  /** The server's WebRTC network setup. */
  setup(): NetworkSetup {
    return {
      udpPorts: this.network.portRange,
      tcpPort: this.network.iceTcp?.port ?? null,
      publicAddresses: this.network.publicAddresses,
      iceServers: this.network.iceServers.map((url) => url.replace(/^(turns?:)[^@]*@/, '$1')),
      https: this.https(),
    };
  }

  /**
   * Answers a probe offer (one receivable audio section offering Opus). Returns the probe's id and the answer.
   * @throws GlasscastError BAD_SDP (malformed offer), NO_COMMON_CODEC (no Opus audio section), LIMIT_EXCEEDED
   * (16 probes running).
   */
  async probe(offer: string, clientAddress: string): Promise<{ id: string; answer: string }> {
    let sections;
    try {
      sections = parseSdp(offer).media;
    } catch (err) {
      throw new GlasscastError('BAD_SDP', (err as Error).message);
    }
    const audio = sections.find((s) => s.kind === 'audio' && s.mid !== undefined);
    const opus = audio && chooseOpusFormat(audio);
    if (!audio || !opus) throw new GlasscastError('NO_COMMON_CODEC', 'a probe offers one audio section with Opus');
    if (this.probes.size >= MAX_PROBES) throw new GlasscastError('LIMIT_EXCEEDED', 'too many connection tests running; try again in a few seconds');
    const peer = new WebRtcPeer('diagnostics-', this.network);
    let answer: string;
    try {
      answer = await peer.answer(offer, [{ kind: 'audio', direction: 'send', mid: audio.mid!, payloadType: opus.payloadType, codec: 'opus', fmtp: undefined, ssrc: 0x6e6f6e65 }]);
    } catch (err) {
      peer.close();
      throw new GlasscastError('BAD_SDP', `offer refused: ${(err as Error).message}`);
    }
    const record = peer.record!;
    record.clientAddress = clientAddress;
    this.probes.set(record.id, { peer, timer: setTimeout(() => this.end(record.id), PROBE_LIFETIME_MS) });
    return { id: record.id, answer };
  }

  /** The server's view of probe `id` (undefined when unknown or not a probe). */
  record(id: string): ConnectionRecord | undefined {
    this.probes.get(id)?.peer.refreshRecord();
    const r = this.journal.get(id);
    return r?.kind === 'diagnostics' ? r : undefined;
  }

  /** Ends probe `id` early. */
  end(id: string): void {
    const probe = this.probes.get(id);
    if (!probe) return;
    clearTimeout(probe.timer);
    probe.peer.close();
    this.probes.delete(id);
  }

  /** Recent connections of every kind, newest first. */
  recent(limit?: number): ConnectionRecord[] {
    return this.journal.recent(limit);
  }

  /** Ends every probe. */
  close(): void {
    for (const id of [...this.probes.keys()]) this.end(id);
  }
}
