/**
 * A peer host: a child process that runs WebRTC peer connections for the main process (peer-hosts.ts), so
 * sending to WHEP viewers — SRTP and a UDP send per packet per viewer, the bulk of a viewer's cost — runs on
 * every core. The library cannot run in worker threads (node-datachannel keeps per-process JavaScript
 * references: a second thread aborts), hence processes.
 *
 * The main process packetizes each stream once and sends each batch of packets once per host, with the list of
 * (peer, track, packet) sends to make; the host makes them and reports states, track openings, what it received
 * (RTCP feedback) and sends the library refused. It exits when the main process disconnects or dies.
 *
 * Entry point: `node peer-host.js` with an IPC channel using advanced serialization.
 */
import { LibraryPeerConnection, releaseWebRtc, reserveMuxPort, retainWebRtc, type CandidatePair, type MuxPort, type PeerConnectionSettings, type PeerState, type PeerTrack } from './peer-connection.js';

/** What a host is started with (its one argument, as JSON). */
export interface HostOptions {
  /** Local address ICE binds; undefined = every interface. */
  bindAddress: string | undefined;
  /** UDP ports the host may take for its peers, in order of preference (the first free one). */
  ports: number[];
}

/** A message from the main process. */
export type HostRequest =
  | { t: 'open'; id: number; settings: PeerConnectionSettings }
  | { t: 'answer'; id: number; call: number; offer: string; tracks: PeerTrack[] }
  | { t: 'candidate'; id: number; candidate: string; mid: string }
  | { t: 'close'; id: number }
  /**
   * Packets to send: `data` holds them back to back, `ends[i]` is where packet i ends; each send is the triple
   * (`targets[3k]` peer id, `targets[3k+1]` index into `mids`, `targets[3k+2]` packet index).
   */
  | { t: 'send'; data: Uint8Array; ends: Int32Array; mids: string[]; targets: Int32Array };

/** A message to the main process. */
export type HostReport =
  /** The host holds `port` and takes requests (sent before it are queued). */
  | { t: 'ready'; port: number }
  | { t: 'state'; id: number; state: PeerState; pair: CandidatePair | undefined }
  | { t: 'open'; id: number; mid: string }
  | { t: 'message'; id: number; mid: string; packet: Uint8Array }
  | { t: 'answered'; call: number; sdp?: string; error?: string }
  /** Sends the library refused since the last report: (`counts[3k]` peer id, packets, bytes). */
  | { t: 'refused'; counts: number[] };

/** How often refusals are reported, ms. */
const REFUSED_REPORT_MS = 1000;

async function runHost(options: HostOptions): Promise<void> {
  const send = (report: HostReport): void => {
    if (process.connected) process.send!(report);
  };
  const peers = new Map<number, LibraryPeerConnection>();
  const refused = new Map<number, { packets: number; bytes: number }>();
  retainWebRtc();
  // Requests that come while the port is being taken wait for it.
  const inbox: { early: HostRequest[]; handle?: (m: HostRequest) => void } = { early: [] };
  process.on('message', (m: HostRequest) => (inbox.handle ? inbox.handle(m) : inbox.early.push(m)));
  // The main process ended its use of this host (or died): close every peer, release the library, exit. Listened
  // for from the start: a server killed while this host was still taking its port (the first host starts with
  // the first stream) left the host running forever, its inherited stderr holding the server's parent's pipe.
  let mux: MuxPort | undefined;
  let disconnected = false;
  const end = (): void => {
    for (const pc of peers.values()) pc.close();
    peers.clear();
    mux?.release();
    releaseWebRtc(() => process.exit(0));
  };
  process.once('disconnect', () => {
    disconnected = true;
    setTimeout(() => process.exit(0), 5000).unref();
    if (mux) end();
  });
  try {
    mux = await reserveMuxPort(options.bindAddress, options.ports);
  } catch (err) {
    process.stderr.write(`glasscast WebRTC peer host: ${(err as Error).message}\n`);
    process.exit(1);
  }
  if (disconnected || !process.connected) {
    end();
    return;
  }
  const port = mux;

  const handlers: { [K in HostRequest['t']]: (m: Extract<HostRequest, { t: K }>) => void } = {
    open: (m) => {
      const id = m.id;
      const pc = new LibraryPeerConnection({ ...m.settings, port: port.port }, {
        state: (state) => send({ t: 'state', id, state, pair: state === 'connected' ? pc.selectedPair() : undefined }),
        trackOpen: (mid) => send({ t: 'open', id, mid }),
        message: (mid, packet) => send({ t: 'message', id, mid, packet }),
      });
      peers.set(id, pc);
    },
    answer: (m) => {
      const pc = peers.get(m.id);
      if (!pc) return send({ t: 'answered', call: m.call, error: 'the peer is closed' });
      pc.answer(m.offer, m.tracks).then(
        (sdp) => send({ t: 'answered', call: m.call, sdp }),
        (err: unknown) => send({ t: 'answered', call: m.call, error: (err as Error).message }),
      );
    },
    candidate: (m) => {
      try {
        peers.get(m.id)?.addRemoteCandidate(m.candidate, m.mid);
      } catch {
        // checked for form by the main process; one the library still refuses is ignored, as ICE would
      }
    },
    close: (m) => {
      peers.get(m.id)?.close();
      peers.delete(m.id);
      refused.delete(m.id);
    },
    send: (m) => {
      const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength);
      const packets: Buffer[] = [];
      let start = 0;
      for (const end of m.ends) {
        packets.push(data.subarray(start, end));
        start = end;
      }
      const t = m.targets;
      for (let k = 0; k + 2 < t.length; k += 3) {
        const pc = peers.get(t[k]!);
        const packet = packets[t[k + 2]!]!;
        if (pc?.send(m.mids[t[k + 1]!]!, packet)) continue;
        if (!pc) continue;
        const r = refused.get(t[k]!) ?? { packets: 0, bytes: 0 };
        r.packets++;
        r.bytes += packet.length;
        refused.set(t[k]!, r);
      }
    },
  };
  inbox.handle = (m) => (handlers[m.t] as (m: HostRequest) => void)(m);
  for (const m of inbox.early.splice(0)) inbox.handle(m);
  send({ t: 'ready', port: port.port });

  const timer = setInterval(() => {
    if (refused.size === 0) return;
    const counts: number[] = [];
    for (const [id, r] of refused) counts.push(id, r.packets, r.bytes);
    refused.clear();
    send({ t: 'refused', counts });
  }, REFUSED_REPORT_MS);
  timer.unref();

}

if (process.send) void runHost(JSON.parse(process.argv[2] ?? '{}') as HostOptions);
