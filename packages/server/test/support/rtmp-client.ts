/**
 * A minimal RTMP publishing client for tests: digest handshake (verifying the server's digest as librtmp does),
 * connect, createStream, publish, and raw chunk writing. Built on the project's own chunk codec and AMF0.
 */
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { decodeAmf0, encodeAmf0, type Amf0Value } from '../../src/media/formats/amf0.js';
import { encodeRtmpMessage, RTMP_TYPE, RtmpChunkDecoder, type RtmpMessage } from '../../src/ingest/rtmp/rtmp-chunk-stream.js';
import { buildDigestC1, HANDSHAKE_SIZE, verifyServerDigest } from '../../src/ingest/rtmp/rtmp-handshake.js';

/** A connected RTMP client. */
export class RtmpTestClient {
  private readonly decoder = new RtmpChunkDecoder();
  private readonly messages: RtmpMessage[] = [];
  private buffered = Buffer.alloc(0);
  private handshaken = false;
  private waiters: (() => void)[] = [];
  closed = false;
  chunkSize = 128;
  serverDigestValid = false;

  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  /** Opens a TCP connection to 127.0.0.1:`port`. */
  static async connect(port: number): Promise<RtmpTestClient> {
    const socket = connect({ host: '127.0.0.1', port });
    await once(socket, 'connect');
    return new RtmpTestClient(socket);
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private onData(d: Buffer): void {
    if (!this.handshaken) {
      this.buffered = Buffer.concat([this.buffered, d]);
      this.wake();
      return;
    }
    this.messages.push(...this.decoder.push(d));
    this.wake();
  }

  private async waitFor<T>(check: () => T | undefined, timeoutMs: number, what: string): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = check();
      if (v !== undefined) return v;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** Digest handshake (C0+C1 with a scheme-0 digest); records whether S1 carried a valid server digest. */
  async handshake(): Promise<void> {
    const c1 = buildDigestC1();
    this.socket.write(Buffer.concat([Buffer.from([3]), c1]));
    const s = await this.waitFor(() => (this.buffered.length >= 1 + 2 * HANDSHAKE_SIZE ? this.buffered : undefined), 5000, 'S0S1S2');
    const s1 = s.subarray(1, 1 + HANDSHAKE_SIZE);
    this.serverDigestValid = verifyServerDigest(Buffer.from(s1));
    this.socket.write(s1); // C2 echoes S1
    const rest = s.subarray(1 + 2 * HANDSHAKE_SIZE);
    this.handshaken = true;
    if (rest.length) this.messages.push(...this.decoder.push(Buffer.from(rest)));
  }

  /** Sends one message. */
  send(csid: number, typeId: number, streamId: number, timestamp: number, payload: Uint8Array): void {
    this.socket.write(encodeRtmpMessage({ chunkStreamId: csid, typeId, messageStreamId: streamId, timestamp, payload }, this.chunkSize));
  }

  /** Sends an AMF0 command. */
  command(streamId: number, ...values: Amf0Value[]): void {
    this.send(3, RTMP_TYPE.commandAmf0, streamId, 0, encodeAmf0(...values));
  }

  /** Waits for a command message whose first value is one of `names`; returns its decoded values. */
  async expectCommand(names: string[], timeoutMs = 5000): Promise<Amf0Value[]> {
    return this.waitFor(
      () => {
        const i = this.messages.findIndex((m) => m.typeId === RTMP_TYPE.commandAmf0 && names.includes(String(decodeAmf0(m.payload)[0])));
        if (i < 0) return undefined;
        const [m] = this.messages.splice(i, 1);
        return decodeAmf0(m!.payload);
      },
      timeoutMs,
      names.join('/'),
    );
  }

  /** connect + createStream + publish(key); returns the onStatus info object. */
  async publish(app: string, key: string): Promise<Record<string, Amf0Value>> {
    this.command(0, 'connect', 1, { app, type: 'nonprivate', tcUrl: `rtmp://127.0.0.1/${app}`, fourCcList: ['hvc1'] });
    await this.expectCommand(['_result']);
    this.command(0, 'createStream', 2, null);
    const created = await this.expectCommand(['_result']);
    const streamId = Number(created[3]);
    this.command(streamId, 'publish', 0, null, key, 'live');
    const status = await this.expectCommand(['onStatus']);
    return status[3] as Record<string, Amf0Value>;
  }

  /** Waits until the server closes the connection. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await this.waitFor(() => (this.closed ? true : undefined), timeoutMs, 'the server to close the connection').catch((err: Error) => {
      if (!this.closed) throw err;
    });
  }

  /** Closes the connection. */
  close(): void {
    this.socket.destroy();
  }
}
