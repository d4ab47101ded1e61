/**
 * The server's view of recent WebRTC connections, for "why can't I connect" (the /diagnostics page and the admin
 * API): per peer (WHEP viewer, WHIP publisher, diagnostics probe) which candidate pair won and how long ICE took,
 * or in a sentence why it failed. Bounded: the last 200 peers, oldest forgotten first.
 */
import type { SelectedPath } from './webrtc-peer.js';

/** One peer's connection, as the server saw it. */
export interface ConnectionRecord {
  /** Opaque id (the diagnostics API's handle). */
  id: string;
  /** What the peer is for: `whep`, `whip` or `diagnostics`. */
  kind: string;
  /** The stream it plays or publishes (empty for diagnostics). */
  stream: string;
  /** The HTTP client's address that sent the offer. */
  clientAddress: string | undefined;
  /** Unix time the offer was answered, ms. */
  startedAt: number;
  /** Latest connection state (`new`, `connecting`, `connected`, `disconnected`, `failed`, `closed`). */
  state: string;
  /** From the answer to DTLS-SRTP up, ms; undefined until connected. */
  connectMs: number | undefined;
  /** The candidate pair ICE selected; undefined until connected. */
  path: SelectedPath | undefined;
  /** Candidates the offer carried, by transport (mDNS `.local` ones counted apart). */
  offered: { udp: number; tcp: number; mdns: number };
  /** TCP connections that reached the ICE-TCP listener for this peer. */
  tcpConnections: number;
  /** Why it never connected or dropped, in a sentence; undefined while fine. */
  failure: string | undefined;
}

/** Peers remembered. */
const LIMIT = 200;

/** Recent WebRTC connections, newest last. */
export class ConnectionJournal {
  private readonly records = new Map<string, ConnectionRecord>();

  /** Starts a record (evicting the oldest beyond 200). */
  add(record: ConnectionRecord): ConnectionRecord {
    this.records.set(record.id, record);
    if (this.records.size > LIMIT) this.records.delete(this.records.keys().next().value!);
    return record;
  }

  /** The record `id`, if still remembered. */
  get(id: string): ConnectionRecord | undefined {
    return this.records.get(id);
  }

  /** Up to `limit` records, newest first. */
  recent(limit = 50): ConnectionRecord[] {
    return [...this.records.values()].reverse().slice(0, limit);
  }
}

/** Counts the offer's candidates by transport (RFC 8839 §5.1 `candidate` lines; `.local` = mDNS-hidden host). */
export function countOfferedCandidates(sdp: string): ConnectionRecord['offered'] {
  const offered = { udp: 0, tcp: 0, mdns: 0 };
  for (const m of sdp.matchAll(/^a=candidate:\S+ \d+ (\S+) \d+ (\S+) \d+ typ/gm)) {
    if (m[2]!.endsWith('.local')) offered.mdns++;
    if (m[1]!.toLowerCase() === 'tcp') offered.tcp++;
    else offered.udp++;
  }
  return offered;
}

/**
 * Why a peer did not connect, in a sentence for an operator: what the offer carried and what reached the server.
 * `tcpPort` is the ICE-TCP listener's port (undefined when WebRTC over TCP is off).
 */
export function explainFailure(record: ConnectionRecord, udpPorts: string, tcpPort: number | undefined): string {
  const { udp, tcp, mdns } = record.offered;
  if (udp + tcp === 0) return 'the offer carried no ICE candidates: the browser could not gather any (no network, or a policy hides them)';
  const parts: string[] = [];
  if (mdns > 0 && mdns === udp + tcp) parts.push('every candidate of the offer was an mDNS name (.local) the server cannot resolve');
  if (tcpPort !== undefined) {
    parts.push(record.tcpConnections > 0 ? `a TCP connection reached port ${tcpPort} but ICE did not complete over it` : `no TCP connection reached port ${tcpPort}`);
  }
  return `no candidate pair worked (UDP ports ${udpPorts}${tcpPort !== undefined ? `, TCP ${tcpPort}` : ''}): ${parts.join('; ') || 'UDP checks went unanswered'}`;
}
