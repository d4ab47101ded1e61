/**
 * One RTMP connection (Adobe RTMP specification 1.0 §7): handshake, chunk stream, NetConnection and NetStream
 * commands for publishing, and the media messages handed to {@link RtmpToStream}. Any protocol violation closes
 * this connection only.
 */
import type { Socket } from 'node:net';
import { GlasscastError, toGlasscastError } from '../../core/errors.js';
import type { Logger } from '../../core/logger.js';
import type { PublisherHooks, PublisherInfo, PublisherSession } from '../../core/stream.js';
import type { Amf0Object, Amf0Value } from '../../media/formats/amf0.js';
import { decodeAmf0, encodeAmf0 } from '../../media/formats/amf0.js';
import { splitAggregate } from '../../media/formats/flv.js';
import { MediaParseError } from '../../media/errors.js';
import type { RtmpMessage } from './rtmp-chunk-stream.js';
import { encodeRtmpMessage, RTMP_TYPE, RtmpChunkDecoder } from './rtmp-chunk-stream.js';
import { buildServerHandshake, HANDSHAKE_SIZE, RTMP_VERSION } from './rtmp-handshake.js';
import { RtmpToStream } from './rtmp-to-stream.js';

/** What the RTMP server needs from the rest of Glasscast (wired in app.ts). */
export interface RtmpPublishHandler {
  /**
   * Maps an app and publishing name (the stream key) to the stream to publish.
   * @throws GlasscastError `PUBLISH_KEY_INVALID` for a wrong key.
   */
  authorizePublish(request: { app: string; key: string; remoteAddress: string }): Promise<{ streamName: string }>;
  /**
   * Claims a stream for a publisher; only the returned handle feeds and releases it.
   * @throws GlasscastError `STREAM_ALREADY_PUBLISHING` when another publisher (any protocol) holds it.
   */
  claimForPublish(streamName: string, info: PublisherInfo, hooks: PublisherHooks): PublisherSession;
}

/** Session timing and sizes. */
export interface RtmpSessionOptions {
  /** Handshake must finish within this, ms. Default 10 000. */
  handshakeTimeoutMs: number;
  /**
   * A connection with no bytes for this long is closed, ms. Default 10 000: a publisher always sends, and a
   * connection that died without a FIN (an OBS network blip) must be noticed before OBS reconnects.
   */
  idleTimeoutMs: number;
  /** Largest message accepted, bytes. Default 8 MiB (a 4K keyframe at high bitrate fits with room). */
  maxMessageSize: number;
  /** Told of every internal error (a bug, not the peer's fault) that closed a connection; for counters. */
  onInternalError?: (err: unknown) => void;
}

const OUT_CHUNK_SIZE = 4096;
const WINDOW_ACK_SIZE = 5_000_000;
const CSID_CONTROL = 2;
const CSID_COMMAND = 3;
/** Consecutive malformed media messages after which the publisher is cut off. */
const MAX_BAD_MEDIA_IN_A_ROW = 500;
/** Message stream id handed out by createStream. */
const PUBLISH_STREAM_ID = 1;

type Phase = 'c0c1' | 'c2' | 'chunks' | 'closed';

/** An RTMP connection. `close()` is idempotent and ends the publish, if any. */
export class RtmpSession {
  private phase: Phase = 'c0c1';
  private handshakeBuf = Buffer.alloc(0);
  private readonly decoder: RtmpChunkDecoder;
  private peerWindow = 0;
  private lastAck = 0;
  private app = '';
  private publishing: { handle: PublisherSession; mapper: RtmpToStream; bytes: number } | undefined;
  private publishPending = false;
  private handshakeTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;

  constructor(
    private readonly socket: Socket,
    private readonly handler: RtmpPublishHandler,
    log: Logger,
    private readonly options: RtmpSessionOptions,
    private readonly onClosed: (s: RtmpSession) => void,
  ) {
    this.log = log.child({ remote: `${socket.remoteAddress}:${socket.remotePort}` });
    this.decoder = new RtmpChunkDecoder({ maxMessageSize: options.maxMessageSize });
    socket.setNoDelay(true);
    socket.setTimeout(options.idleTimeoutMs);
    socket.on('timeout', () => this.close('idle timeout'));
    socket.on('data', (data) => this.onData(data));
    socket.on('error', (err) => this.close(`socket error: ${err.message}`));
    socket.on('close', () => this.close('connection closed by peer'));
    this.handshakeTimer = setTimeout(() => this.close('handshake timeout'), options.handshakeTimeoutMs);
  }

  /** The stream this connection publishes, if any. */
  get streamName(): string | undefined {
    return this.publishing?.handle.stream.name;
  }

  private onData(data: Buffer): void {
    if (this.phase === 'closed') return;
    try {
      if (this.phase !== 'chunks') {
        this.handshake(data);
        return;
      }
      this.onChunks(data);
    } catch (err) {
      if (err instanceof MediaParseError || err instanceof GlasscastError) {
        this.log.warn({ code: err.code }, `closing RTMP connection: ${err.message}`);
        this.close(err.message);
      } else {
        this.log.error({ err }, 'closing RTMP connection after an internal error');
        this.options.onInternalError?.(err);
        this.close('internal error');
      }
    }
  }

  private handshake(data: Buffer): void {
    this.handshakeBuf = Buffer.concat([this.handshakeBuf, data]);
    if (this.phase === 'c0c1') {
      if (this.handshakeBuf.length < 1 + HANDSHAKE_SIZE) return;
      const version = this.handshakeBuf[0]!;
      if (version !== RTMP_VERSION) {
        throw new MediaParseError('RTMP_BAD_VERSION', `unsupported RTMP version ${version} (only plain RTMP 3)`);
      }
      const c1 = this.handshakeBuf.subarray(1, 1 + HANDSHAKE_SIZE);
      const { response, digest } = buildServerHandshake(Buffer.from(c1));
      this.log.debug({ digest }, 'RTMP handshake');
      this.socket.write(response);
      this.handshakeBuf = this.handshakeBuf.subarray(1 + HANDSHAKE_SIZE);
      this.phase = 'c2';
    }
    if (this.phase === 'c2') {
      if (this.handshakeBuf.length < HANDSHAKE_SIZE) return;
      const rest = this.handshakeBuf.subarray(HANDSHAKE_SIZE);
      this.handshakeBuf = Buffer.alloc(0);
      this.phase = 'chunks';
      clearTimeout(this.handshakeTimer);
      this.handshakeTimer = undefined;
      if (rest.length > 0) this.onChunks(Buffer.from(rest));
    }
  }

  private onChunks(data: Buffer): void {
    const messages = this.decoder.push(data);
    // Acknowledge per the peer's window (§5.4.3) so clients that wait for acks keep sending.
    if (this.peerWindow > 0 && this.decoder.bytesIn - this.lastAck >= this.peerWindow) {
      this.lastAck = this.decoder.bytesIn;
      const body = Buffer.alloc(4);
      body.writeUInt32BE(this.decoder.bytesIn >>> 0);
      this.send(CSID_CONTROL, RTMP_TYPE.acknowledgement, 0, body);
    }
    for (const msg of messages) {
      if (this.phase === 'closed') return;
      this.onMessage(msg);
    }
  }

  private onMessage(msg: RtmpMessage): void {
    switch (msg.typeId) {
      case RTMP_TYPE.windowAckSize:
        if (msg.payload.length >= 4) this.peerWindow = msg.payload.readUInt32BE(0);
        return;
      case RTMP_TYPE.commandAmf0:
        return this.onCommand(decodeAmf0(msg.payload), msg);
      case RTMP_TYPE.commandAmf3:
        // AMF3 command messages start with a 0 byte and then carry AMF0 values (§7.1.1).
        return this.onCommand(decodeAmf0(msg.payload.subarray(1)), msg);
      case RTMP_TYPE.dataAmf0:
        return this.onData_(decodeAmf0(msg.payload));
      case RTMP_TYPE.dataAmf3:
        return this.onData_(decodeAmf0(msg.payload.subarray(1)));
      case RTMP_TYPE.video:
      case RTMP_TYPE.audio:
      case RTMP_TYPE.aggregate:
        return this.onMedia(msg);
      default:
        return; // set chunk size/abort are applied by the decoder; acks, user control and bandwidth need no reply
    }
  }

  /**
   * A malformed media message loses that frame only: it is counted and logged (first, then every 100th), and
   * the publisher goes on. A publisher that sends nothing but garbage is closed.
   */
  private onMedia(msg: RtmpMessage): void {
    const p = this.publishing;
    if (!p) return;
    p.bytes += msg.payload.length;
    try {
      if (msg.typeId === RTMP_TYPE.video) p.mapper.onVideo(msg.timestamp, msg.payload);
      else if (msg.typeId === RTMP_TYPE.audio) p.mapper.onAudio(msg.timestamp, msg.payload);
      else this.onAggregate(msg);
      this.badMediaInARow = 0;
    } catch (err) {
      if (!(err instanceof MediaParseError)) throw err;
      this.badMedia++;
      this.badMediaInARow++;
      if (this.badMedia === 1 || this.badMedia % 100 === 0) {
        this.log.warn({ code: err.code, total: this.badMedia }, `malformed media message dropped: ${err.message}`);
      }
      if (this.badMediaInARow >= MAX_BAD_MEDIA_IN_A_ROW) throw new MediaParseError('RTMP_MEDIA_GARBAGE', `${MAX_BAD_MEDIA_IN_A_ROW} malformed media messages in a row`);
    }
  }

  private badMedia = 0;
  private badMediaInARow = 0;

  private onAggregate(msg: RtmpMessage): void {
    if (!this.publishing) return;
    const tags = splitAggregate(msg.payload);
    const first = tags[0]?.timestamp ?? 0;
    for (const tag of tags) {
      // Sub-tag timestamps are relative to the first one, offset by the aggregate's own timestamp.
      const ts = (msg.timestamp + (tag.timestamp - first)) >>> 0;
      if (tag.tagType === RTMP_TYPE.video) this.publishing.mapper.onVideo(ts, tag.body);
      else if (tag.tagType === RTMP_TYPE.audio) this.publishing.mapper.onAudio(ts, tag.body);
    }
  }

  private onData_(values: Amf0Value[]): void {
    let [name, ...args] = values;
    if (name === '@setDataFrame') [name, ...args] = args;
    if (name === 'onMetaData' && this.publishing) {
      const meta = args.find((a): a is Amf0Object => typeof a === 'object' && a !== null && !Array.isArray(a) && !(a instanceof Date));
      if (meta) this.publishing.mapper.setMetadata(meta);
    }
  }

  private onCommand(values: Amf0Value[], msg: RtmpMessage): void {
    const [name, txn, cmdObj, ...args] = values;
    const transactionId = typeof txn === 'number' ? txn : 0;
    switch (name) {
      case 'connect': {
        const obj = (typeof cmdObj === 'object' && cmdObj !== null ? cmdObj : {}) as Amf0Object;
        this.app = typeof obj['app'] === 'string' ? obj['app'].replace(/\/+$/, '') : '';
        const ackSize = Buffer.alloc(4);
        ackSize.writeUInt32BE(WINDOW_ACK_SIZE);
        this.send(CSID_CONTROL, RTMP_TYPE.windowAckSize, 0, ackSize);
        const bw = Buffer.alloc(5);
        bw.writeUInt32BE(WINDOW_ACK_SIZE);
        bw[4] = 2; // dynamic
        this.send(CSID_CONTROL, RTMP_TYPE.setPeerBandwidth, 0, bw);
        const cs = Buffer.alloc(4);
        cs.writeUInt32BE(OUT_CHUNK_SIZE);
        this.send(CSID_CONTROL, RTMP_TYPE.setChunkSize, 0, cs);
        this.outChunkSize = OUT_CHUNK_SIZE;
        const properties: Amf0Object = { fmsVer: 'FMS/3,0,1,123', capabilities: 31 };
        // Enhanced RTMP: tell clients which FourCCs we take (veovera enhanced-rtmp, "connect" extension).
        if (Array.isArray(obj['fourCcList'])) properties['fourCcList'] = ['avc1', 'hvc1'];
        this.sendCommand(0, '_result', transactionId, properties, {
          level: 'status',
          code: 'NetConnection.Connect.Success',
          description: 'Connection succeeded.',
          objectEncoding: typeof obj['objectEncoding'] === 'number' ? obj['objectEncoding'] : 0,
        });
        return;
      }
      case 'releaseStream':
      case 'FCPublish':
      case 'FCUnpublish':
      case 'getStreamLength':
        if (transactionId !== 0) this.sendCommand(0, '_result', transactionId, null, undefined);
        return;
      case 'createStream':
        this.sendCommand(0, '_result', transactionId, null, PUBLISH_STREAM_ID);
        return;
      case 'publish':
        void this.onPublish(typeof args[0] === 'string' ? args[0] : '', msg.messageStreamId || PUBLISH_STREAM_ID);
        return;
      case 'deleteStream':
      case 'closeStream':
        this.unpublish('publisher sent ' + name);
        return;
      case 'play':
        this.sendStatus(msg.messageStreamId, 'error', 'NetStream.Play.Failed', 'Glasscast does not play over RTMP; watch over WebRTC or HLS.');
        return;
      default:
        if (transactionId !== 0) {
          this.sendCommand(0, '_error', transactionId, null, {
            level: 'error',
            code: 'NetConnection.Call.Failed',
            description: `unknown command ${String(name).slice(0, 64)}`,
          });
        }
    }
  }

  private async onPublish(rawKey: string, streamId: number): Promise<void> {
    if (this.publishing || this.publishPending) {
      this.sendStatus(streamId, 'error', 'NetStream.Publish.BadName', 'This connection is already publishing.');
      return;
    }
    this.publishPending = true;
    // Clients may append a query string to the key (e.g. "?token=..."); the key is what precedes it.
    const key = rawKey.split('?')[0] ?? '';
    try {
      const { streamName } = await this.handler.authorizePublish({ app: this.app, key, remoteAddress: this.socket.remoteAddress ?? '' });
      if (this.phase === 'closed') return;
      const remoteAddress = this.socket.remoteAddress ?? '';
      const handle = this.handler.claimForPublish(streamName, { protocol: 'rtmp', remoteAddress }, {
        // The stream was ended by the server (shutdown, an operator): hang up.
        streamClosed: (reason) => this.close(`stream closed: ${reason}`),
        stats: () => ({ counters: { bytes: this.publishing?.bytes ?? 0, skippedFrames: this.publishing?.mapper.skipped ?? 0 }, info: { app: this.app } }),
      });
      this.publishing = { handle, mapper: new RtmpToStream(handle, this.log.child({ stream: streamName })), bytes: 0 };
      const begin = Buffer.alloc(6);
      begin.writeUInt16BE(0); // StreamBegin (§7.1.7)
      begin.writeUInt32BE(streamId, 2);
      this.send(CSID_CONTROL, RTMP_TYPE.userControl, 0, begin);
      this.sendStatus(streamId, 'status', 'NetStream.Publish.Start', `Publishing ${streamName}.`);
      this.log.info({ stream: streamName, app: this.app }, 'RTMP publish started');
    } catch (err) {
      // The catalogue gives the status code; a bug is reported as a server failure, never as a bad key.
      const error = toGlasscastError(err);
      if (error.code === 'INTERNAL') {
        this.log.error({ err, app: this.app }, 'RTMP publish failed on an internal error');
        this.options.onInternalError?.(err);
      } else {
        this.log.warn({ code: error.code, app: this.app }, `RTMP publish refused: ${error.message}`);
      }
      this.sendStatus(streamId, 'error', error.spec.rtmp, error.message);
      // Let the status reach the client, then hang up.
      this.socket.end();
      setTimeout(() => this.close('publish refused'), 1000).unref();
    } finally {
      this.publishPending = false;
    }
  }

  private unpublish(reason: string): void {
    const p = this.publishing;
    if (!p) return;
    this.publishing = undefined;
    p.mapper.end(reason);
    this.log.info({ stream: p.handle.stream.name, reason }, 'RTMP publish ended');
  }

  private outChunkSize = 128;

  private send(csid: number, typeId: number, messageStreamId: number, payload: Uint8Array): void {
    if (this.phase === 'closed' || this.socket.destroyed) return;
    this.socket.write(encodeRtmpMessage({ chunkStreamId: csid, typeId, messageStreamId, timestamp: 0, payload }, this.outChunkSize));
  }

  private sendCommand(streamId: number, ...values: Amf0Value[]): void {
    this.send(CSID_COMMAND, RTMP_TYPE.commandAmf0, streamId, encodeAmf0(...values));
  }

  private sendStatus(streamId: number, level: 'status' | 'error', code: string, description: string): void {
    this.sendCommand(streamId, 'onStatus', 0, null, { level, code, description });
  }

  /** Ends the connection and its publish. Idempotent. */
  close(reason: string): void {
    if (this.phase === 'closed') return;
    this.phase = 'closed';
    clearTimeout(this.handshakeTimer);
    this.unpublish(reason);
    this.socket.destroy();
    this.log.debug({ reason }, 'RTMP connection closed');
    this.onClosed(this);
  }
}
