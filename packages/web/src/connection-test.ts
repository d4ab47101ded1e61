/**
 * The browser's half of "why can't I connect" (/diagnostics): HTTP round trips to the server, then one WebRTC
 * connection test per transport. Each test offers a receive-only audio section to `POST /api/v1/diagnostics/webrtc`,
 * keeps only the answer's UDP (or only its TCP) candidates, and waits for the connection (ICE, then DTLS) — so a
 * network that blocks UDP shows as "UDP failed, TCP connected". The server's view of each test (which pair won,
 * or why it failed) is read back from the test's `Location`. Both tests run at once; each is bounded at 8 s.
 */
import { selectedTransport } from '@glasscast/player';

/** The server's network setup (`GET /api/v1/diagnostics`). */
export interface NetworkSetup {
  udpPorts: { min: number; max: number };
  tcpPort: number | null;
  publicAddresses: string[];
  iceServers: string[];
  https: boolean;
}

/** The server's view of one connection test. */
export interface ServerView {
  state: string;
  connectMs: number | null;
  path: { transport: string; local: string; remote: string; remoteType: string } | null;
  offered: { udp: number; tcp: number; mdns: number };
  tcpConnections: number;
  failure: string | null;
}

/** One transport's result. */
export interface TransportResult {
  transport: 'udp' | 'tcp';
  /** `connected`, `failed` (no pair worked in time), `unavailable` (the server offers no such candidate), `error`. */
  outcome: 'connected' | 'failed' | 'unavailable' | 'error';
  /** Offer to connected, ms. */
  connectMs: number | undefined;
  /** Round trip on the selected pair, ms. */
  rttMs: number | undefined;
  /** What the browser selected: `192.0.2.1:40000 (udp)`. */
  pair: string | undefined;
  server: ServerView | undefined;
  detail: string | undefined;
}

/** Everything the page shows. */
export interface ConnectionReport {
  setup: NetworkSetup | undefined;
  http: { ok: boolean; rttMs: number | undefined; secure: boolean };
  /** The browser's own candidates in its offer, by kind. */
  candidates: { host: number; srflx: number; relay: number; mdns: number; tcp: number };
  udp: TransportResult;
  tcp: TransportResult;
  verdict: Verdict;
}

/** The sentence at the top of the page. */
export interface Verdict {
  level: 'good' | 'warn' | 'bad';
  /** One sentence: what works, and what the operator should open or forward. */
  text: string;
}

/** How long a transport may take to connect, ms (the player allows 4 s for its first frame). */
const CONNECT_TIMEOUT_MS = 8000;

/**
 * The verdict for `udp` and `tcp` results (pure: unit-tested). `all good` when UDP connects; `UDP blocked, TCP
 * works` when only TCP does; otherwise WebRTC is blocked and viewers fall back to LL-HLS.
 */
export function verdict(setup: NetworkSetup | undefined, httpOk: boolean, udp: TransportResult, tcp: TransportResult): Verdict {
  const udpPorts = setup ? `UDP ${setup.udpPorts.min}–${setup.udpPorts.max}` : 'the UDP media ports';
  const tcpPort = setup?.tcpPort ? `TCP ${setup.tcpPort}` : undefined;
  if (!httpOk) return { level: 'bad', text: 'The server does not answer over HTTP from here: check its address, that it is running, and that its web port is open.' };
  if (udp.outcome === 'connected') {
    return { level: 'good', text: `All good: WebRTC over UDP works from here, so playback and publishing are sub-second${tcp.outcome === 'connected' ? ' (TCP works too, for networks that block UDP)' : ''}.` };
  }
  if (tcp.outcome === 'connected') {
    return { level: 'warn', text: `UDP blocked, TCP works: WebRTC runs over ${tcpPort ?? 'TCP'} and stays sub-second, but UDP copes better with loss — to allow it, open or forward ${udpPorts} to this server.` };
  }
  const tcpAdvice = tcpPort ? ` and ${tcpPort}` : ' (WebRTC over TCP is off on this server: start it with --webrtc-tcp on)';
  return { level: 'bad', text: `WebRTC is blocked: neither UDP nor TCP connects, so players fall back to LL-HLS (a few seconds behind). Open or forward ${udpPorts}${tcpAdvice} to this server.` };
}

/** Keeps only `transport`'s candidate lines of an SDP (answer). */
export function keepCandidates(sdp: string, transport: 'udp' | 'tcp'): string {
  return sdp
    .split('\r\n')
    .filter((line) => !line.startsWith('a=candidate:') || line.split(' ')[2]?.toLowerCase() === transport)
    .join('\r\n');
}

async function json<T>(url: string): Promise<T | undefined> {
  const r = await fetch(url, { cache: 'no-store' }).catch(() => undefined);
  return r?.ok ? ((await r.json()) as T) : undefined;
}

async function gathered(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  if (pc.iceGatheringState === 'complete') return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

function countCandidates(sdp: string): ConnectionReport['candidates'] {
  const c = { host: 0, srflx: 0, relay: 0, mdns: 0, tcp: 0 };
  for (const m of sdp.matchAll(/^a=candidate:\S+ \d+ (\S+) \d+ (\S+) \d+ typ (\S+)/gm)) {
    if (m[1]!.toLowerCase() === 'tcp') c.tcp++;
    if (m[2]!.endsWith('.local')) c.mdns++;
    const type = m[3] as 'host' | 'srflx' | 'relay';
    if (type in c) c[type]++;
  }
  return c;
}

/** One transport's test against the server at `base`. Never throws. */
export async function testTransport(base: string, transport: 'udp' | 'tcp', onOffer?: (sdp: string) => void): Promise<TransportResult> {
  const result: TransportResult = { transport, outcome: 'error', connectMs: undefined, rttMs: undefined, pair: undefined, server: undefined, detail: undefined };
  const pc = new RTCPeerConnection();
  let location: string | undefined;
  try {
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await gathered(pc, 1500);
    const offer = pc.localDescription!.sdp;
    onOffer?.(offer);
    const started = performance.now();
    const r = await fetch(`${base}/api/v1/diagnostics/webrtc`, { method: 'POST', headers: { 'content-type': 'application/sdp' }, body: offer });
    if (r.status !== 201) {
      const problem = (await r.json().catch(() => undefined)) as { detail?: string } | undefined;
      result.detail = `the server answered ${r.status}${problem?.detail ? `: ${problem.detail}` : ''}`;
      return result;
    }
    location = r.headers.get('location') ?? undefined;
    const answer = keepCandidates(await r.text(), transport);
    if (!/^a=candidate:/m.test(answer)) {
      result.outcome = 'unavailable';
      result.detail = transport === 'tcp' ? 'the server offers no TCP candidate (WebRTC over TCP is off)' : 'the server offers no UDP candidate';
      return result;
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    const connected = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), CONNECT_TIMEOUT_MS);
      const check = (): void => {
        if (pc.connectionState === 'connected') {
          clearTimeout(timer);
          resolve(true);
        } else if (pc.connectionState === 'failed' || pc.connectionState === 'closed') {
          clearTimeout(timer);
          resolve(false);
        }
      };
      pc.addEventListener('connectionstatechange', check);
      check();
    });
    result.connectMs = Math.round(performance.now() - started);
    result.outcome = connected ? 'connected' : 'failed';
    if (connected) {
      const report = await pc.getStats();
      report.forEach((s: { type?: string; selectedCandidatePairId?: string }) => {
        if (s.type !== 'transport' || !s.selectedCandidatePairId) return;
        const pair = report.get(s.selectedCandidatePairId) as { currentRoundTripTime?: number; remoteCandidateId?: string } | undefined;
        const remote = pair?.remoteCandidateId ? (report.get(pair.remoteCandidateId) as { address?: string; port?: number } | undefined) : undefined;
        if (pair?.currentRoundTripTime !== undefined) result.rttMs = Math.round(pair.currentRoundTripTime * 1000);
        if (remote) result.pair = `${remote.address}:${remote.port}`;
      });
      const t = await selectedTransport(pc);
      if (result.pair && t) result.pair += ` (${t})`;
    } else {
      result.detail = `no connection within ${CONNECT_TIMEOUT_MS / 1000} s`;
    }
    if (location) result.server = await json<ServerView>(`${base}${location}`);
    return result;
  } catch (err) {
    result.detail = err instanceof Error ? err.message : String(err);
    return result;
  } finally {
    pc.close();
    if (location) void fetch(`${base}${location}`, { method: 'DELETE' }).catch(() => undefined);
  }
}

/** Runs every test against the server at `base` (default: this page's origin). Never throws. */
export async function runConnectionTest(base = window.location.origin): Promise<ConnectionReport> {
  const setup = await json<NetworkSetup>(`${base}/api/v1/diagnostics`);
  const rtts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    const ok = await fetch(`${base}/healthz`, { cache: 'no-store' }).then((r) => r.status < 500 || r.status === 503, () => false);
    if (ok) rtts.push(performance.now() - t);
  }
  rtts.sort((a, b) => a - b);
  const http = { ok: rtts.length > 0, rttMs: rtts.length > 0 ? Math.round(rtts[Math.floor(rtts.length / 2)]!) : undefined, secure: window.isSecureContext && base.startsWith('https:') };
  let offer = '';
  const [udp, tcp] = await Promise.all([testTransport(base, 'udp', (sdp) => (offer = sdp)), testTransport(base, 'tcp')]);
  return { setup, http, candidates: countCandidates(offer), udp, tcp, verdict: verdict(setup, http.ok, udp, tcp) };
}
