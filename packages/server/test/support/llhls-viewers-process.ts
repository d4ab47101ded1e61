/**
 * Simulated LL-HLS viewers in a process of their own (bench/llhls-load.ts, test/integration/llhls-nginx.test.ts), so
 * that their work does not share the server's event loop: simulated hls.js viewers in
 * low-latency mode (test/support/llhls-viewers.ts: blocking delta reloads, the hinted part beside each, every
 * listed part; bare HTTP/1.1 on three keep-alive connections each, so they cost this box little).
 *
 * Reads lines on stdin: "N" (keep N viewers, starting the missing ones spread over 2 s), "stats" (answers one JSON
 * line with the window's figures and this process's CPU ticks, and starts a new window), "quit".
 *
 * Usage: node --import tsx packages/server/test/support/llhls-viewers-process.ts <base URL> <stream>
 */
import { newLoadWindow, SimulatedViewer } from './llhls-viewers.js';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const base = process.argv[2]!;
const stream = process.argv[3]!;

let window = newLoadWindow();

const viewers: SimulatedViewer[] = [];
export {};

function cpuTicks(): number {
  const fields = readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const cmd = line.trim();
  if (cmd === 'quit') {
    for (const v of viewers) v.stop();
    process.exit(0);
  } else if (cmd === 'stats') {
    const w = window;
    window = newLoadWindow();
    process.stdout.write(JSON.stringify({ viewers: viewers.length, cpuTicks: cpuTicks(), ...w }) + '\n');
  } else if (/^\d+$/.test(cmd)) {
    const want = Number(cmd);
    const add = want - viewers.length;
    for (let i = 0; i < add; i++) {
      const v = new SimulatedViewer(base, stream, () => window);
      viewers.push(v);
      setTimeout(() => void v.run(), (i / Math.max(1, add)) * 2000);
    }
    while (viewers.length > want) viewers.pop()!.stop();
    process.stdout.write(JSON.stringify({ viewers: viewers.length }) + '\n');
  }
});
