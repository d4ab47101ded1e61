/**
 * SRT over a bad path: ffmpeg (libsrt) publishes through a relay that drops 5 % of datagrams each way, duplicates
 * and reorders some (seeded) and adds 50 ms each way, with 200 ms SRT latency. For 60 s every complete LL-HLS
 * segment is collected; ffmpeg must decode them all without one error, and the session's figures must show the
 * losses and their retransmissions. `SRT_LOSS_LATENCY_US` runs it at another latency (500000: the "tuned" figure
 * of the issue note).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, describe, it } from 'node:test';
import { FFMPEG, runFfmpeg } from '../support/ffmpeg.js';
import { startTestServer, type TestServer } from '../support/glasscast.js';
import { UdpImpairmentRelay } from '../support/udp-impairment-relay.js';
import { waitUntil } from '../support/wait.js';

const RUN_MS = 60_000;

describe('SRT ingest through 5 % loss and 100 ms RTT', { timeout: 150_000 }, () => {
  let server: TestServer;
  let relay: UdpImpairmentRelay;
  before(async () => {
    server = await startTestServer();
    relay = new UdpImpairmentRelay(server.app.ports.srt, { loss: 0.05, duplicate: 0.01, reorder: 0.01, delayMs: 50, reorderMs: 15 }, 20261201);
    await relay.start();
  });
  after(async () => {
    relay?.close();
    await server?.stop();
  });

  it('keeps the LL-HLS output decodable for 60 s, recovering losses by retransmission', async () => {
    const publisher = runFfmpeg([
      '-re', '-f', 'lavfi', '-i', 'testsrc2=size=640x360:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
      '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-g', '60', '-b:v', '2000k', '-c:a', 'aac', '-b:a', '128k',
      '-f', 'mpegts', `srt://127.0.0.1:${relay.port}?mode=caller&latency=${process.env["SRT_LOSS_LATENCY_US"] ?? "200000"}&streamid=${encodeURIComponent(`#!::r=live/${server.key},m=publish`)}`,
    ]);
    const base = `${server.httpUrl}/hls/main/src`;
    const segments = new Map<string, { bytes: Buffer; duration: number; epoch: string; msn: number }>();
    let init: Buffer | undefined;
    try {
      await waitUntil('the stream through the relay', () => server.app.llhls.muxer('main')?.ready === true, 20_000, 100).catch((err: unknown) => {
        throw new Error(`${String(err)}\nffmpeg: ${publisher.stderr()}`);
      });
      const until = Date.now() + RUN_MS;
      while (Date.now() < until) {
        const playlist = await (await fetch(`${base}/media.m3u8`)).text();
        if (!init) init = Buffer.from(await (await fetch(`${base}/${/#EXT-X-MAP:URI="([^"]+)"/.exec(playlist)![1]!}`)).arrayBuffer());
        for (const [, duration, uri, epoch, msn] of playlist.matchAll(/#EXTINF:([\d.]+),\n(([^/\s]+)\/seg(\d+)\.m4s)/g)) {
          if (!segments.has(uri!)) segments.set(uri!, { bytes: Buffer.from(await (await fetch(`${base}/${uri}`)).arrayBuffer()), duration: Number(duration), epoch: epoch!, msn: Number(msn) });
        }
        await new Promise((r) => setTimeout(r, 1000));
      }
    } finally {
      await publisher.stop();
    }
    const session = server.app.srt.sessionStats()[0] ?? { stats: {} as Record<string, number> };
    const stats = session.stats;
    const collected = [...segments.values()];
    assert.equal(new Set(collected.map((s) => s.epoch)).size, 1, `one muxer session: ${[...segments.keys()].join(' ')}`);
    const msns = collected.map((s) => s.msn).sort((a, b) => a - b);
    const byMsn = new Map(collected.map((s) => [s.msn, s]));
    const seconds = collected.reduce((n, s) => n + s.duration, 0);
    console.log(`# SRT through 5 % loss, 50 ms each way: ${msns.length} segments (${seconds.toFixed(1)} s), relay ${JSON.stringify(relay.counts)}, session ${JSON.stringify(stats)}`);
    // At 2 × RTT of latency a lost retransmission cannot be asked for again in time (libsrt does not resend a
    // packet twice within an RTT): such a packet is dropped and video waits for the next keyframe, so some
    // seconds of pictures are missing — never a broken one. The figure is printed above.
    assert.ok(seconds >= 25, `${seconds} s of segments collected`);
    for (let i = 1; i < msns.length; i++) assert.equal(msns[i], msns[i - 1]! + 1, 'no segment missed');
    const decode = spawnSync(FFMPEG, ['-v', 'error', '-i', 'pipe:0', '-f', 'null', '-'], { input: Buffer.concat([init!, ...msns.map((m) => byMsn.get(m)!.bytes)]), timeout: 60_000, maxBuffer: 64 * 1024 * 1024 });
    assert.equal(decode.status, 0);
    assert.equal(decode.stderr.toString(), '', 'ffmpeg reports no decode error');
    assert.ok((stats['packetsLost'] ?? 0) > 100, 'losses seen');
    assert.ok((stats['packetsRetransmitted'] ?? 0) > 0.8 * (stats['packetsLost'] ?? 0), 'most losses recovered by retransmission');
    await waitUntil('the session to end', () => server.app.srt.sessionCount === 0, 10_000);
  });
});
