/**
 * The viewer side of the fan-out benchmark, in its own process: reads "N" lines on stdin (target viewer count),
 * keeps that many non-browser WHEP clients connected to URL (argv[2]), and answers "stats" with one JSON line:
 * viewers connected, packets received and lost (from sequence-number gaps) since the last "stats".
 */
import { createInterface } from 'node:readline';
import nodeDataChannel from 'node-datachannel';
import { WhepTestClient } from '../packages/server/test/support/webrtc-client.js';

const url = process.argv[2]!;
interface Viewer {
  client: WhepTestClient;
  last: number | undefined;
  received: number;
  expected: number;
}
const viewers: Viewer[] = [];

function track(v: Viewer): void {
  // Count RTP video packets and gaps without keeping them (the client keeps counts only).
  const inner = v.client as unknown as { packets: { sequenceNumber: number; kind: string }[] };
  inner.packets = new Proxy([], {
    get(target, prop) {
      if (prop === 'push') {
        return (p: { sequenceNumber: number; kind: string }) => {
          if (p.kind !== 'video') return 0;
          if (v.last !== undefined) {
            const step = (p.sequenceNumber - v.last + 0x10000) & 0xffff;
            if (step > 0 && step < 1000) {
              v.expected += step;
              v.last = p.sequenceNumber;
            }
          } else {
            v.last = p.sequenceNumber;
            v.expected += 1;
          }
          v.received++;
          return 0;
        };
      }
      return Reflect.get(target, prop);
    },
  }) as never;
}

async function setCount(n: number): Promise<void> {
  while (viewers.length < n) {
    const client = new WhepTestClient();
    const v: Viewer = { client, last: undefined, received: 0, expected: 0 };
    track(v);
    const res = await client.connect(url).catch((err: unknown) => ({ status: 0, error: String(err) }));
    if (res.status !== 201) {
      process.stdout.write(JSON.stringify({ error: `POST answered ${res.status}` }) + '\n');
      await client.close();
      return;
    }
    viewers.push(v);
  }
  while (viewers.length > n) await viewers.pop()!.client.close();
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
      process.stdout.write(JSON.stringify({ viewers: viewers.length, connected, received, expected }) + '\n');
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
