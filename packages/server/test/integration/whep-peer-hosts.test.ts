/**
 * WHEP viewers' connections in peer host processes (webrtc/peer-hosts.ts): viewers are spread over the hosts,
 * every one receives media that decodes, the hosts (not the server's thread) do the sending, a host that dies
 * ends only its own viewers' sessions and the next viewer gets a new host, and `webrtcProcesses: 0` keeps every
 * connection in the server's process. Non-browser clients (node-datachannel) over real DTLS-SRTP on loopback.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { publishTestPattern, type FfmpegProcess } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { childProcesses, cpuTicks } from '../support/proc.js';
import { waitUntil } from '../support/wait.js';
import { WhepTestClient } from '../support/webrtc-client.js';

const isolated = process.env['GLASSCAST_TEST_NETNS'] === '1';

/** Child processes of this process whose command line names the peer host. */
function peerHostProcesses(): number[] {
  return childProcesses(process.pid).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('peer-host');
    } catch {
      return false; // ended while we looked
    }
  });
}

async function viewersOf(server: TestServer): Promise<number> {
  const res = await fetch(`${server.httpUrl}/api/v1/streams/main`);
  return ((await res.json()) as { webrtcStats: { viewers: number } }).webrtcStats.viewers;
}

describe('WHEP viewers in peer host processes', { timeout: 180_000, skip: isolated ? false : 'needs the loopback-only network namespace (run as root via npm test)' }, () => {
  let server: TestServer;
  let publisher: FfmpegProcess;

  before(async () => {
    server = await startTestServer({ webrtcBindAddress: '127.0.0.1', webrtcProcesses: 2 });
    publisher = publishTestPattern(`${server.rtmpUrl}/${server.key}`, { gopSeconds: 1, zerolatency: true, size: '640x360' });
    await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${server.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
  });
  after(async () => {
    await publisher?.stop();
    await server?.stop();
  });

  it('spreads viewers over the hosts, which send every viewer its media', async () => {
    const clients = Array.from({ length: 4 }, () => new WhepTestClient());
    try {
      for (const c of clients) assert.equal((await c.connect(`${server.httpUrl}/whep/main`)).status, 201);
      await waitUntil('2 s of video for every viewer', () => clients.every((c) => c.packets.filter((p) => p.kind === 'video' && p.marker).length >= 60), 20_000);
      assert.ok(clients.every((c) => c.packets.some((p) => p.kind === 'audio')), 'every viewer gets audio');
      const stats = server.app.peerHosts!.stats();
      assert.deepEqual(stats.hosts.map((h) => h.peers), [2, 2]);
      const pids = peerHostProcesses();
      assert.deepEqual([...pids].sort(), stats.hosts.map((h) => h.pid).sort(), 'the hosts are child processes of the server');
      // The hosts do the sending: each one's CPU time grows while its viewers play.
      const before = pids.map(cpuTicks);
      await new Promise((r) => setTimeout(r, 2000));
      pids.forEach((pid, i) => assert.ok(cpuTicks(pid) > before[i]!, `host ${pid} worked`));
      // The first video packet each viewer got starts a keyframe with SPS (the GOP cache crossed to the host).
      for (const c of clients) assert.equal(c.packets.find((p) => p.kind === 'video')!.payload[0]! & 0x1f, 24 /* STAP-A with SPS/PPS */);
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
    await waitUntil('the sessions to close', async () => (await viewersOf(server)) === 0, 10_000);
    assert.deepEqual(server.app.peerHosts!.stats().hosts.map((h) => h.peers), [0, 0]);
  });

  it('ends only the viewers of a host that dies, and the next viewer gets a new host', async () => {
    const clients = Array.from({ length: 4 }, () => new WhepTestClient());
    try {
      for (const c of clients) assert.equal((await c.connect(`${server.httpUrl}/whep/main`)).status, 201);
      await waitUntil('video for every viewer', () => clients.every((c) => c.packets.some((p) => p.kind === 'video')), 20_000);
      const [victim, survivor] = server.app.peerHosts!.stats().hosts;
      process.kill(victim!.pid!, 'SIGKILL');
      await waitUntil('the dead host’s sessions to close', async () => (await viewersOf(server)) === 2, 10_000);
      // The survivor's viewers keep receiving.
      const counts = clients.map((c) => c.packets.length);
      await new Promise((r) => setTimeout(r, 1000));
      assert.equal(clients.filter((c, i) => c.packets.length > counts[i]!).length, 2, 'the other host’s two viewers still receive');
      assert.equal(server.app.peerHosts!.stats().hosts.length, 1);
      const next = new WhepTestClient();
      try {
        assert.equal((await next.connect(`${server.httpUrl}/whep/main`)).status, 201);
        await waitUntil('video for the next viewer', () => next.packets.filter((p) => p.kind === 'video' && p.marker).length >= 30, 20_000);
        const hosts = server.app.peerHosts!.stats().hosts;
        assert.equal(hosts.length, 2, 'a new host started');
        assert.ok(hosts.every((h) => h.pid !== victim!.pid) && hosts.some((h) => h.pid === survivor!.pid));
      } finally {
        await next.close();
      }
    } finally {
      await Promise.all(clients.map((c) => c.close()));
    }
  });

  it('carries every peer of a process on one UDP port: more viewers than ports in the range', async () => {
    // 3 ports: the server's own process, and two hosts. Without ICE UDP mux each peer took a port of its own, and
    // the 4th viewer's offer failed ("Failed to gather local ICE candidates").
    const other = await startTestServer({ webrtcBindAddress: '127.0.0.1', webrtcProcesses: 2, webrtcPortMin: 41500, webrtcPortMax: 41502 });
    const pub = publishTestPattern(`${other.rtmpUrl}/${other.key}`, { gopSeconds: 1, zerolatency: true, size: '320x180' });
    const clients = Array.from({ length: 8 }, () => new WhepTestClient());
    try {
      await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${other.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
      for (const c of clients) assert.equal((await c.connect(`${other.httpUrl}/whep/main`)).status, 201);
      await waitUntil('1 s of video for every viewer', () => clients.every((c) => c.packets.filter((p) => p.kind === 'video' && p.marker).length >= 30), 20_000);
      const hosts = other.app.peerHosts!.stats().hosts;
      assert.deepEqual(hosts.map((h) => h.port).sort(), [41501, 41502]);
      // Every answer's host candidate is its host's port.
      for (const c of clients) {
        const ports = new Set([...c.answerSdp.matchAll(/^a=candidate:\S+ \d (?:UDP|udp) \d+ \S+ (\d+) typ host/gm)].map((m) => Number(m[1])));
        assert.equal(ports.size, 1, c.answerSdp);
        assert.ok([41501, 41502].includes([...ports][0]!), c.answerSdp);
      }
      assert.deepEqual(other.app.ports.webrtcUdp, { min: 41500, max: 41502 });
    } finally {
      await Promise.all(clients.map((c) => c.close()));
      await pub.stop();
      await other.stop();
    }
  });

  it('answers 503 NOT_READY (problem+json, Retry-After) when its host does not answer the offer, not a bad-offer 400', async () => {
    const other = await startTestServer({ webrtcBindAddress: '127.0.0.1', webrtcProcesses: 1 });
    const pub = publishTestPattern(`${other.rtmpUrl}/${other.key}`, { gopSeconds: 1, zerolatency: true, size: '320x180' });
    const first = new WhepTestClient();
    const second = new WhepTestClient();
    let pid: number | undefined;
    try {
      await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${other.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
      assert.equal((await first.connect(`${other.httpUrl}/whep/main`)).status, 201);
      pid = other.app.peerHosts!.stats().hosts[0]!.pid!;
      process.kill(pid, 'SIGSTOP'); // a hung host: alive, answering nothing
      const res = await second.connect(`${other.httpUrl}/whep/main`);
      assert.equal(res.status, 503);
      assert.match(res.headers.get('content-type') ?? '', /^application\/problem\+json/);
      assert.equal(res.headers.get('retry-after'), '1');
      assert.equal(((await res.json()) as { code: string }).code, 'NOT_READY');
    } finally {
      if (pid !== undefined) process.kill(pid, 'SIGCONT');
      await first.close();
      await second.close();
      await pub.stop();
      await other.stop();
    }
  });

  it('starts a host when a stream goes live (before any viewer), and ends the hosts with the server', async () => {
    const other = await startTestServer({ webrtcBindAddress: '127.0.0.1', webrtcProcesses: 1 });
    assert.equal(other.app.peerHosts!.stats().hosts.length, 0, 'no host before a stream');
    const pub = publishTestPattern(`${other.rtmpUrl}/${other.key}`, { gopSeconds: 1, zerolatency: true, size: '320x180' });
    const client = new WhepTestClient();
    let pid: number | undefined;
    try {
      await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${other.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
      // Started with the stream, and ready (its port taken) before the first offer.
      await waitUntil('the host to take its port', () => other.app.peerHosts!.stats().hosts[0]?.port !== undefined, 10_000, 50);
      const prewarmed = other.app.peerHosts!.stats().hosts;
      assert.deepEqual(prewarmed.map((h) => h.peers), [0]);
      assert.equal((await client.connect(`${other.httpUrl}/whep/main`)).status, 201);
      await waitUntil('video', () => client.packets.some((p) => p.kind === 'video'), 20_000);
      pid = other.app.peerHosts!.stats().hosts[0]!.pid;
      assert.equal(pid, prewarmed[0]!.pid, 'the first viewer is on the host started with the stream');
    } finally {
      await client.close();
      await pub.stop();
      await other.stop();
    }
    assert.ok(pid !== undefined);
    assert.throws(() => process.kill(pid, 0), /ESRCH/, 'the host process is gone once the server stopped');
  });

  it('keeps connections in the server’s process with webrtcProcesses 0', async () => {
    const other = await startTestServer({ webrtcBindAddress: '127.0.0.1', webrtcProcesses: 0 });
    const pub = publishTestPattern(`${other.rtmpUrl}/${other.key}`, { gopSeconds: 1, zerolatency: true, size: '320x180' });
    const client = new WhepTestClient();
    const hostsBefore = peerHostProcesses().length;
    try {
      await waitUntil('WebRTC to be offered', async () => ((await (await fetch(`${other.httpUrl}/api/v1/streams/main`)).json()) as { webrtc: boolean }).webrtc, 20_000, 200);
      assert.equal((await client.connect(`${other.httpUrl}/whep/main`)).status, 201);
      await waitUntil('1 s of video', () => client.packets.filter((p) => p.kind === 'video' && p.marker).length >= 30, 20_000);
      assert.equal(other.app.peerHosts, undefined);
      assert.equal(peerHostProcesses().length, hostsBefore, 'no host process started');
    } finally {
      await client.close();
      await pub.stop();
      await other.stop();
    }
  });
});
