/**
 * A UDP relay on 127.0.0.1 that impairs a path both ways, for transport tests without netem: each datagram is
 * dropped, duplicated or held back (reordered) with seeded probabilities, and delivered after a fixed delay. One
 * client (the first address that sends) talks through it to `target`.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import { seededRandom } from './random.js';

/** Impairments, per direction. */
export interface Impairment {
  /** Probability of dropping a datagram, 0–1. */
  loss: number;
  /** Probability of sending a datagram twice. */
  duplicate: number;
  /** Probability of holding a datagram back by `reorderMs` more (it arrives after later ones). */
  reorder: number;
  /** Delay added to every datagram, ms. */
  delayMs: number;
  reorderMs: number;
}

/** A running relay: `port` is where the client sends. `close()` stops it. */
export class UdpImpairmentRelay {
  private readonly front: Socket = createSocket('udp4');
  private readonly back: Socket = createSocket('udp4');
  private client: RemoteInfo | undefined;
  private readonly rand: () => number;
  private readonly timers = new Set<NodeJS.Timeout>();
  port = 0;
  readonly counts = { forwarded: 0, dropped: 0, duplicated: 0, reordered: 0 };

  constructor(
    private readonly targetPort: number,
    private readonly impairment: Impairment,
    seed: number,
  ) {
    this.rand = seededRandom(seed);
    this.front.on('message', (msg, from) => {
      this.client ??= from;
      if (from.port === this.client.port) this.pass(msg, (b) => this.back.send(b, this.targetPort, '127.0.0.1'));
    });
    this.back.on('message', (msg) => {
      const client = this.client;
      if (client) this.pass(msg, (b) => this.front.send(b, client.port, client.address));
    });
  }

  async start(): Promise<number> {
    await new Promise<void>((r) => this.front.bind(0, '127.0.0.1', r));
    await new Promise<void>((r) => this.back.bind(0, '127.0.0.1', r));
    this.port = this.front.address().port;
    return this.port;
  }

  private pass(msg: Buffer, send: (b: Buffer) => void): void {
    const i = this.impairment;
    if (this.rand() < i.loss) {
      this.counts.dropped++;
      return;
    }
    let delay = i.delayMs;
    if (this.rand() < i.reorder) {
      delay += i.reorderMs;
      this.counts.reordered++;
    }
    const copies = this.rand() < i.duplicate ? 2 : 1;
    if (copies === 2) this.counts.duplicated++;
    const copy = Buffer.from(msg);
    for (let c = 0; c < copies; c++) {
      const timer = setTimeout(() => {
        this.timers.delete(timer);
        this.counts.forwarded++;
        send(copy);
      }, delay);
      this.timers.add(timer);
    }
  }

  close(): void {
    for (const t of this.timers) clearTimeout(t);
    this.front.close();
    this.back.close();
  }
}
