/**
 * Puts a UDP-only WebRTC client (node-datachannel) on the server's ICE-TCP candidate, as a browser on a network
 * without UDP would come: the client is given one UDP candidate, a local socket, and every datagram it sends there
 * goes over one TCP connection to the server's passive TCP candidate, framed as RFC 4571 (and frames back as
 * datagrams). The client's own candidates must be hidden from the server (`hideCandidates`), so ICE can only
 * succeed through the shim. For tests and benchmarks of WebRTC over TCP with many clients.
 */
import { createSocket } from 'node:dgram';
import { connect, type Socket } from 'node:net';

/** A shim for one client; `rewrite` is the answer rewriter to pass to the client's `connect`. */
export interface IceTcpShim {
  /** Replaces the answer's candidates with the shim's UDP socket, remembering the server's TCP candidate. */
  rewrite(answer: string): Promise<string>;
  close(): void;
}

/** Makes a shim (bound on 127.0.0.1). */
export function iceTcpShim(): IceTcpShim {
  const udp = createSocket('udp4');
  let tcp: Socket | undefined;
  let client: { address: string; port: number } | undefined;
  let pending = Buffer.alloc(0);
  udp.on('message', (msg, rinfo) => {
    client = { address: rinfo.address, port: rinfo.port };
    if (!tcp || tcp.destroyed) return;
    const header = Buffer.alloc(2);
    header.writeUInt16BE(msg.length, 0);
    tcp.write(Buffer.concat([header, msg]));
  });
  udp.on('error', () => undefined);
  return {
    async rewrite(answer) {
      const m = /^a=candidate:\S+ \d+ tcp \d+ (\S+) (\d+) typ host tcptype passive$/m.exec(answer);
      if (!m) throw new Error('the answer has no passive TCP candidate');
      await new Promise<void>((resolve) => udp.bind(0, '127.0.0.1', resolve));
      tcp = connect({ host: m[1]!, port: Number(m[2]) });
      tcp.setNoDelay(true);
      tcp.on('error', () => undefined);
      tcp.on('data', (chunk: Buffer) => {
        pending = Buffer.concat([pending, chunk]);
        while (pending.length >= 2 && pending.length >= 2 + pending.readUInt16BE(0)) {
          const frame = pending.subarray(2, 2 + pending.readUInt16BE(0));
          pending = pending.subarray(2 + frame.length);
          if (client) udp.send(frame, client.port, client.address);
        }
      });
      const port = udp.address().port;
      return answer
        .split('\r\n')
        .filter((l) => !l.startsWith('a=candidate:'))
        .flatMap((l) => (l.startsWith('a=ice-pwd:') ? [l, `a=candidate:1 1 UDP 2122317823 127.0.0.1 ${port} typ host`] : [l]))
        .join('\r\n');
    },
    close() {
      tcp?.destroy();
      try {
        udp.close();
      } catch {
        // not bound
      }
    },
  };
}
