/**
 * Session-level fuzz: a real publish byte stream (handshake, commands, x264/AAC media from ffmpeg) is truncated
 * and bit-flipped, and fed to an RtmpSession over a fake socket. Malformed input is the peer's fault: no session
 * may report an internal error (a bug: it is counted and logged at error level), the registry must stay
 * consistent, and every session must end closed.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { silentLogger } from '../../src/core/logger.js';
import { StreamRegistry } from '../../src/core/stream-registry.js';
import { LlHlsServer } from '../../src/egress/llhls/llhls-server.js';
import { encodeRtmpMessage, RTMP_TYPE } from '../../src/ingest/rtmp/rtmp-chunk-stream.js';
import { buildDigestC1 } from '../../src/ingest/rtmp/rtmp-handshake.js';
import { RtmpSession } from '../../src/ingest/rtmp/rtmp-session.js';
import { encodeAmf0 } from '../../src/media/formats/amf0.js';
import { countingLogger } from '../support/counting-logger.js';
import { FFMPEG } from '../support/ffmpeg.js';
import { waitUntil } from '../support/wait.js';
import { readFlvFile } from '../support/flv-file.js';
import { seededRandom } from '../support/random.js';

/** Just enough of net.Socket for a session: it records writes and whether it was destroyed. */
class FakeSocket extends EventEmitter {
  remoteAddress = '127.0.0.1';
  remotePort = 40000;
  destroyed = false;
  written = 0;
  setNoDelay(): this {
    return this;
  }
  setTimeout(): this {
    return this;
  }
  write(data: Uint8Array): boolean {
    this.written += data.length;
    return true;
  }
  end(): this {
    return this;
  }
  destroy(): this {
    if (!this.destroyed) {
      this.destroyed = true;
      this.emit('close');
    }
    return this;
  }
}

describe('RTMP session under mutated input (fuzz)', { timeout: 120_000 }, () => {
  let dir: string;
  let wire: Buffer;

  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glasscast-fuzz-'));
    const flv = join(dir, 'a.flv');
    const r = spawnSync(FFMPEG, [
      '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=15', '-f', 'lavfi', '-i', 'sine', '-t', '2',
      '-c:v', 'libx264', '-bf', '2', '-g', '15', '-pix_fmt', 'yuv420p', '-c:a', 'aac', '-f', 'flv', flv,
    ]);
    assert.equal(r.status, 0, r.stderr.toString());
    const msg = (csid: number, typeId: number, sid: number, ts: number, payload: Uint8Array): Buffer =>
      encodeRtmpMessage({ chunkStreamId: csid, typeId, messageStreamId: sid, timestamp: ts, payload }, 128);
    const parts: Buffer[] = [Buffer.from([3]), buildDigestC1(), Buffer.alloc(1536)];
    parts.push(msg(3, RTMP_TYPE.commandAmf0, 0, 0, encodeAmf0('connect', 1, { app: 'live' })));
    parts.push(msg(3, RTMP_TYPE.commandAmf0, 0, 0, encodeAmf0('createStream', 2, null)));
    parts.push(msg(3, RTMP_TYPE.commandAmf0, 1, 0, encodeAmf0('publish', 0, null, 'fuzz', 'live')));
    for (const tag of readFlvFile(flv)) parts.push(msg(tag.tagType === 9 ? 6 : 4, tag.tagType, 1, tag.timestamp, tag.body));
    wire = Buffer.concat(parts);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('publishes the unmutated stream (the fuzz baseline is valid)', async () => {
    const llhls = new LlHlsServer({ partTargetMs: 200, segmentTargetMs: 1000, windowSegments: 5, retainEndedMs: 10 }, silentLogger);
    const registry = new StreamRegistry({ reconnectGraceMs: 0, log: silentLogger, observers: [llhls] });
    const socket = new FakeSocket();
    new RtmpSession(socket as unknown as Socket, { authorizePublish: async ({ key }) => ({ streamName: key }), claimForPublish: (n, info, hooks) => registry.claimForPublish(n, info, hooks) }, silentLogger, { handshakeTimeoutMs: 10_000, idleTimeoutMs: 10_000, maxMessageSize: 1 << 20 }, () => undefined);
    // Commands first, then media once publish was authorized (it is asynchronous).
    const mediaStart = wire.indexOf(Buffer.from('publish')) + 64;
    socket.emit('data', wire.subarray(0, mediaStart));
    // Publishing is authorized asynchronously: wait (bounded) for the claim before sending media.
    await waitUntil('the publish to be authorized', () => registry.get('fuzz') !== undefined, 5000, 5);
    socket.emit('data', wire.subarray(mediaStart));
    await waitUntil('the muxer to make parts', () => (llhls.muxer('fuzz')?.nextPart ?? 0) > 3, 5000, 5);
    assert.equal(registry.get('fuzz')?.state, 'live');
    socket.destroy();
    registry.close();
    llhls.close();
  });

  it('survives 300 truncated and bit-flipped copies with no internal error in any session or reader', async () => {
    const rand = seededRandom(2024);
    const { log, errors } = countingLogger();
    const llhls = new LlHlsServer({ partTargetMs: 200, segmentTargetMs: 1000, windowSegments: 5, retainEndedMs: 10 }, log);
    const registry = new StreamRegistry({ reconnectGraceMs: 0, log, observers: [llhls] });
    const handler: ConstructorParameters<typeof RtmpSession>[1] = {
      authorizePublish: async ({ key }) => ({ streamName: key.replace(/[^A-Za-z0-9_-]/g, 'x') || 'x' }),
      claimForPublish: (n, info, hooks) => registry.claimForPublish(n, info, hooks),
    };
    const internal: unknown[] = [];
    for (let i = 0; i < 300; i++) {
      const input = Buffer.from(wire.subarray(0, Math.floor(wire.length * (0.2 + 0.8 * rand()))));
      const flips = 1 + Math.floor(rand() * 20);
      for (let f = 0; f < flips; f++) {
        // Leave the handshake alone half the time, so the mutations reach the chunk and media parsers.
        const from = rand() < 0.5 ? 3073 : 0;
        const at = from + Math.floor(rand() * (input.length - from));
        input[at] = input[at]! ^ (1 << Math.floor(rand() * 8));
      }
      const socket = new FakeSocket();
      let closed = false;
      new RtmpSession(socket as unknown as Socket, handler, log, { handshakeTimeoutMs: 10_000, idleTimeoutMs: 10_000, maxMessageSize: 1 << 20, onInternalError: (err) => internal.push(err) }, () => (closed = true));
      for (let pos = 0; pos < input.length; ) {
        const n = 1 + Math.floor(rand() * 4000);
        socket.emit('data', input.subarray(pos, pos + n));
        pos += n;
        if (rand() < 0.05) await new Promise((r) => setImmediate(r));
      }
      socket.destroy();
      await new Promise((r) => setImmediate(r));
      assert.equal(closed, true, `session ${i} closed with its socket`);
    }
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(internal.map((e) => String(e)), [], 'no session closed on an internal error');
    assert.deepEqual(errors.map((e) => e.msg), [], 'nothing logged at error level (a stream reader or observer threw)');
    assert.ok(registry.list().every((s) => s.state !== 'live'), 'no stream is left live without a publisher');
    registry.close();
    llhls.close();
  });
});
