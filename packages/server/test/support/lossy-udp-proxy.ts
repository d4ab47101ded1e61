/**
 * A UDP relay on 127.0.0.1 that sits between a WebRTC client and the server and drops chosen packets, to test loss
 * recovery without netem. The client is given the relay's port in the server's answer; ICE then learns the
 * relay's address as a peer-reflexive candidate. Only RTP media from the server is ever dropped (STUN, DTLS and
 * RTCP always pass), and only when `drop` says so.
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';

/** A running relay. */
export class LossyUdpProxy {
  private readonly socket: Socket;
  private client: RemoteInfo | undefined;
  /** Sequence numbers of the RTP packets dropped so far. */
  readonly dropped: { payloadType: number; sequenceNumber: number }[] = [];
  port = 0;

  constructor(
    private readonly serverPort: number,
    /** Decides whether to drop an RTP packet from the server (byte 1 & 0x7f is the payload type). */
    private readonly drop: (payloadType: number, sequenceNumber: number) => boolean,
  ) {
    this.socket = createSocket('udp4');
    this.socket.on('message', (msg, from) => {
      if (from.port === this.serverPort) {
        if (!this.client) return;
        const isRtp = msg.length >= 12 && msg[0]! >> 6 === 2 && (msg[1]! < 192 || msg[1]! > 223);
        if (isRtp) {
          const pt = msg[1]! & 0x7f;
          const seq = msg.readUInt16BE(2);
          if (this.drop(pt, seq)) {
            this.dropped.push({ payloadType: pt, sequenceNumber: seq });
            return;
          }
        }
        this.socket.send(msg, this.client.port, this.client.address);
      } else {
        this.client = from;
        this.socket.send(msg, this.serverPort, '127.0.0.1');
      }
    });
  }

  /** Binds to an ephemeral port on 127.0.0.1. */
  async start(): Promise<number> {
    await new Promise<void>((resolve) => this.socket.bind(0, '127.0.0.1', () => resolve()));
    this.port = this.socket.address().port;
    return this.port;
  }

  /** Rewrites the server's candidates in an SDP answer to point at the relay. */
  rewriteAnswer(sdp: string): string {
    return sdp.replace(new RegExp(`(a=candidate:\\S+ \\d \\S+ \\d+ 127\\.0\\.0\\.1 )${this.serverPort}( typ host)`, 'g'), `$1${this.port}$2`);
  }

  /** Closes the socket. */
  close(): void {
    this.socket.close();
  }
}
