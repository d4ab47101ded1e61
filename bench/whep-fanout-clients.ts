/**
 * The viewer side of the fan-out benchmark, in its own process: reads "N" lines on stdin (target viewer count),
 * keeps that many non-browser WHEP clients connected to URL (argv[2]), and answers "stats" with one JSON line:
 * viewers connected, and for the probe viewers (the first PROBES, argv[3]) the video packets received and expected
 * from sequence-number gaps since the last "stats", and this process's CPU time.
 *
 * Every viewer does the full receive work in the WebRTC library (ICE, DTLS, SRTP decryption); only the probe
 * viewers also hand each packet to JavaScript, which would otherwise cost more than the server's sending. Loss
 * for all viewers is read from the kernel's UDP drop counters by the parent.
 */
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import nodeDataChannel from 'node-datachannel';
import { iceTcpShim, type IceTcpShim } from '../packages/server/test/support/ice-tcp-shim.js';
import { WhepTestClient } from '../packages/server/test/support/webrtc-client.js';

const url = process.argv[2]!;
const PROBES = Number(process.argv[3] ?? 10);
/** `tcp` (argv[4]): every viewer comes over the server's ICE-TCP candidate through a shim. */
const TCP = process.argv[4] === 'tcp';
interface Viewer {
  client: WhepTestClient;
  shim?: IceTcpShim | undefined;
  last: number | undefined;
  received: number;
  expected: number;
}
const viewers: Viewer[] = [];
/** Viewers replaced after their connection failed. */
let replaced = 0;

function probe(v: Viewer): void {
  v.client.keepPackets = false;
  v.client.onSequence = (kind, seq) => {
    if (kind !== 'video') return;
    if (v.last !== undefined) {
      const step = (seq - v.last + 0x10000) & 0xffff;
      if (step > 0 && step < 1000) {
        v.expected += step;
        v.last = seq;
      }
    } else {
      v.last = seq;
      v.expected += 1;
    }
    v.received++;
  };
}

async function setCount(n: number): Promise<void> {
  while (viewers.length < n) {
    const isProbe = viewers.length < PROBES;
    const client = new WhepTestClient({ listen: isProbe });
    const v: Viewer = { client, last: undefined, received: 0, expected: 0 };
    if (isProbe) probe(v);
    v.shim = TCP ? iceTcpShim() : undefined;
    const res = await connect(v).catch((err: unknown) => ({ status: 0, error: String(err) }));
    if (res.status !== 201) {
      process.stdout.write(JSON.stringify({ error: `POST answered ${res.status}${'error' in res ? ` (${res.error})` : ''}` }) + '\n');
      await client.close();
      v.shim?.close();
      return;
    }
    viewers.push(v);
  }
  while (viewers.length > n) {
    const v = viewers.pop()!;
    await v.client.close();
    v.shim?.close();
  }
  // A viewer whose connection failed (the test library now and then loses one during setup) is replaced, as a
  // real player reconnects; `replaced` counts them.
  await new Promise((r) => setTimeout(r, 2000));
  for (let i = 0; i < viewers.length; i++) {
    const state = viewers[i]!.client.state;
    if (state !== 'failed' && state !== 'closed' && state !== 'disconnected' && state !== 'new') continue;
    await viewers[i]!.client.close();
    viewers[i]!.shim?.close();
    const isProbe = i < PROBES;
    const client = new WhepTestClient({ listen: isProbe });
    const v: Viewer = { client, last: undefined, received: 0, expected: 0, shim: TCP ? iceTcpShim() : undefined };
    if (isProbe) probe(v);
    if ((await connect(v).catch(() => ({ status: 0 }))).status === 201) {
      viewers[i] = v;
      replaced++;
    }
  }
}

/** Connects `v` (over its shim when there is one: its own candidates hidden, so only TCP can work). */
async function connect(v: Viewer): Promise<{ status: number }> {
  return v.shim ? v.client.connect(url, (sdp) => v.shim!.rewrite(sdp), { hideCandidates: true }) : v.client.connect(url);
}

/** This process's CPU time (user + system), 1/100 s ticks. */
function cpuTicks(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  void (async () => {
    if (line === 'stats') {
      let received = 0;
      let expected = 0;
      for (const v of viewers) {
        received += v.received;
        expected += v.expected;
        v.received = 0;
        v.expected = 0;
      }
      const connected = viewers.filter((v) => v.client.state === 'connected').length;
      process.stdout.write(JSON.stringify({ viewers: viewers.length, probes: Math.min(PROBES, viewers.length), connected, received, expected, replaced, cpuTicks: cpuTicks() }) + '\n');
    } else if (line === 'quit') {
      await setCount(0);
      nodeDataChannel.cleanup();
      process.exit(0);
    } else {
      await setCount(Number(line));
      process.stdout.write(JSON.stringify({ ready: viewers.length }) + '\n');
    }
  })();
});
