/**
 * The SRT handshake codec against a real libsrt caller (Debian's ffmpeg): a UDP socket on loopback answers its
 * induction with an induction response (version 5, the SRT magic, a cookie), and the caller's conclusion is read
 * with our parser — HSREQ with its latency and flags, and its stream id in each dialect, byte order included.
 */
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { after, before, describe, it } from 'node:test';
import { CONTROL, EXTENSION, HANDSHAKE_TYPE, parseHandshake, parseHsExtension, parseSrtPacket, parseStreamIdExtension, SRT_FLAGS, SRT_MAGIC, writeHandshake, writeSrtControl, type SrtHandshake } from '../../src/ingest/srt/srt-packet.js';
import { runFfmpeg } from '../support/ffmpeg.js';
import { waitUntil } from '../support/wait.js';

describe('SRT handshake with a real libsrt caller (ffmpeg)', { timeout: 60_000 }, () => {
  let socket: Socket;
  let port = 0;
  const conclusions: SrtHandshake[] = [];
  const inductions: SrtHandshake[] = [];

  before(async () => {
    socket = createSocket('udp4');
    socket.on('message', (msg, rinfo) => {
      const p = parseSrtPacket(msg);
      if (p.kind !== 'control' || p.type !== CONTROL.handshake) return;
      const h = parseHandshake(p.cif);
      if (h.handshakeType === HANDSHAKE_TYPE.induction) {
        inductions.push(h);
        const cif = writeHandshake({ ...h, version: 5, encryption: 0, extensionField: SRT_MAGIC, socketId: 0x1234, cookie: 0x5eed, extensions: [] });
        socket.send(writeSrtControl({ type: CONTROL.handshake, subtype: 0, info: 0, timestamp: 0, destinationSocket: h.socketId, cif }), rinfo.port, rinfo.address);
      } else if (h.handshakeType === HANDSHAKE_TYPE.conclusion) {
        conclusions.push(h);
      }
    });
    await new Promise<void>((r) => socket.bind(0, '127.0.0.1', r));
    port = socket.address().port;
  });
  after(() => socket.close());

  // ffmpeg 5.1 passes `streamid=` as typed (no percent-decoding): these are what arrive.
  const dialects = ['#!::r=live/Jx0bq2-Fk_9aPq7Lm3Ns5Tv8Wx1Yz4Ab,m=publish', 'publish:live/abc:user:pass', 'abc', '%23!%3A%3Ar%3Dlive%2Fabc%2Cm%3Dpublish'];
  for (const streamId of dialects) {
    it(`reads the conclusion's HSREQ and stream id "${streamId}"`, async () => {
      const before = conclusions.length;
      const caller = runFfmpeg(['-re', '-f', 'lavfi', '-i', 'testsrc2=size=160x90:rate=10', '-t', '10', '-c:v', 'libx264', '-preset', 'ultrafast', '-f', 'mpegts', `srt://127.0.0.1:${port}?mode=caller&latency=250000&streamid=${streamId}`]);
      try {
        await waitUntil('the conclusion handshake', () => conclusions.length > before, 15_000, 50);
      } finally {
        await caller.stop('SIGKILL');
      }
      const induction = inductions.at(-1)!;
      assert.equal(induction.version, 4, 'a caller starts with a version 4 induction (§4.3.1.1)');
      const h = conclusions[before]!;
      assert.equal(h.version, 5);
      assert.equal(h.cookie, 0x5eed, 'the caller echoes our cookie');
      const hsreq = h.extensions.find((e) => e.type === EXTENSION.hsreq);
      assert.ok(hsreq);
      const hs = parseHsExtension(hsreq.data);
      assert.equal(hs.receiverDelayMs, 250);
      assert.equal(hs.senderDelayMs, 250);
      assert.ok(hs.flags & SRT_FLAGS.tsbpdSender, 'TSBPD sender');
      assert.ok(hs.srtVersion >= 0x010300, `libsrt ${hs.srtVersion.toString(16)}`);
      const sid = h.extensions.find((e) => e.type === EXTENSION.sid);
      assert.ok(sid);
      assert.equal(parseStreamIdExtension(sid.data), streamId);
    });
  }
});
