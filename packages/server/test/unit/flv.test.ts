import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MediaParseError } from '../../src/media/errors.js';
import { parseFlvAudio, parseFlvVideo, splitAggregate } from '../../src/media/formats/flv.js';
import { randomBytes, seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const h = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('FLV video tags', () => {
  it('reads an AVC sequence header', () => {
    const p = parseFlvVideo(hex('17 00 000000 01640028ffe1'));
    assert.equal(p.type, 'config');
    assert.ok(p.type === 'config' && p.codec === 'h264' && h(p.record) === '01640028ffe1');
  });

  it('reads an AVC keyframe and an inter frame with a negative composition time (SI24)', () => {
    const key = parseFlvVideo(hex('17 01 000050 00000002 6588'));
    assert.deepEqual(key.type === 'frame' && [key.keyframe, key.compositionTime, h(key.data)], [true, 80, '000000026588']);
    const inter = parseFlvVideo(hex('27 01 ffffd6 00000002 4101'));
    assert.deepEqual(inter.type === 'frame' && [inter.keyframe, inter.compositionTime], [false, -42]);
  });

  it('reads Enhanced RTMP hvc1 SequenceStart, CodedFrames (with CTS) and CodedFramesX', () => {
    const start = parseFlvVideo(hex('90 68766331 01020304'));
    assert.ok(start.type === 'config' && start.codec === 'h265' && h(start.record) === '01020304');
    const coded = parseFlvVideo(hex('91 68766331 000021 00000001 26'));
    assert.deepEqual(coded.type === 'frame' && [coded.codec, coded.keyframe, coded.compositionTime, h(coded.data)], ['h265', true, 33, '0000000126']);
    const codedX = parseFlvVideo(hex('a3 68766331 00000001 02'));
    assert.deepEqual(codedX.type === 'frame' && [codedX.keyframe, codedX.compositionTime, h(codedX.data)], [false, 0, '0000000102']);
    assert.equal(parseFlvVideo(hex('92 68766331')).type, 'end-of-sequence');
  });

  it('skips codecs it does not carry, and command frames', () => {
    assert.equal(parseFlvVideo(hex('12 00')).type, 'skip'); // Sorenson H.263
    assert.equal(parseFlvVideo(hex('91 61763031 00')).type, 'skip'); // av01 not carried yet
    assert.equal(parseFlvVideo(hex('57 00')).type, 'skip'); // AVC command frame
  });

  it('throws FLV_TRUNCATED for cut headers', () => {
    for (const bad of ['', '17', '17 01 00', '91 6876', '91 68766331 00']) {
      assert.throws(() => parseFlvVideo(hex(bad)), (e: unknown) => e instanceof MediaParseError && e.code === 'FLV_TRUNCATED', bad);
    }
  });
});

describe('FLV audio tags', () => {
  it('reads an AAC sequence header and a raw frame', () => {
    const cfg = parseFlvAudio(hex('af 00 1210'));
    assert.ok(cfg.type === 'config' && h(cfg.config) === '1210');
    const frame = parseFlvAudio(hex('af 01 210049'));
    assert.ok(frame.type === 'frame' && h(frame.data) === '210049');
  });

  it('skips MP3 and throws on a cut AAC header', () => {
    assert.equal(parseFlvAudio(hex('2f ff')).type, 'skip');
    assert.throws(() => parseFlvAudio(hex('af')), MediaParseError);
  });
});

describe('RTMP aggregate messages', () => {
  it('splits FLV tags with their timestamps (extended byte included)', () => {
    const tags = splitAggregate(
      hex(`09 000002 000010 00 000000 1701 00000000d
           08 000001 000020 01 000000 af 00000000c`.replace(/d$/m, '').replace(/\s+/g, '')).subarray(0, 0),
    );
    assert.equal(tags.length, 0);
    const wire = Buffer.concat([
      hex('09 000002 000010 00 000000'), hex('1701'), hex('0000000d'),
      hex('08 000001 000020 01 000000'), hex('af'), hex('0000000c'),
    ]);
    const got = splitAggregate(wire);
    assert.deepEqual(got.map((t) => [t.tagType, t.timestamp, h(t.body)]), [[9, 0x10, '1701'], [8, 0x01000020, 'af']]);
    assert.throws(() => splitAggregate(wire.subarray(0, 12)), MediaParseError);
  });

  it('throws only MediaParseError on random bodies (fuzz)', () => {
    const rand = seededRandom(99);
    for (let i = 0; i < 3000; i++) {
      const body = randomBytes(rand, Math.floor(rand() * 24));
      for (const parse of [parseFlvVideo, parseFlvAudio, splitAggregate]) {
        try {
          parse(body);
        } catch (err) {
          assert.ok(err instanceof MediaParseError, `${body.toString('hex')}: ${String(err)}`);
        }
      }
    }
  });
});
