import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MediaParseError } from '../../src/media/errors.js';
import { decodeAmf0, encodeAmf0, encodeAmf0EcmaArray } from '../../src/media/formats/amf0.js';
import { randomBytes, seededRandom } from '../support/random.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Golden bytes: [description, values, AMF0 bytes] — each drives both encode and decode.
const GOLDEN: [string, Parameters<typeof encodeAmf0>, Buffer][] = [
  [
    'connect command with an object',
    ['connect', 1, { app: 'live' }],
    hex(`02 0007 636f6e6e656374
         00 3ff0000000000000
         03 0003 617070 02 0004 6c697665 000009`),
  ],
  ['null and booleans', [null, true, false], hex('05 0101 0100')],
  ['strict array of numbers', [[0, -1.5]], hex('0a 00000002 00 0000000000000000 00 bff8000000000000')],
  ['undefined', [undefined], hex('06')],
  ['_result with a nested status object', ['_result', 4, null, { level: 'status', code: 'X' }],
    hex(`02 0007 5f726573756c74 00 4010000000000000 05
         03 0005 6c6576656c 02 0006 737461747573 0004 636f6465 02 0001 58 000009`)],
];

describe('AMF0', () => {
  for (const [name, values, bytes] of GOLDEN) {
    it(`encodes ${name} to golden bytes`, () => {
      assert.deepEqual(encodeAmf0(...values), bytes);
    });
    it(`decodes golden bytes of ${name}`, () => {
      assert.deepEqual(JSON.parse(JSON.stringify(decodeAmf0(bytes))), JSON.parse(JSON.stringify(values)));
    });
  }

  it('decodes an onMetaData ECMA array as sent by OBS and FFmpeg', () => {
    const bytes = Buffer.concat([encodeAmf0('onMetaData'), encodeAmf0EcmaArray({ width: 1280, height: 720, videocodecid: 7 })]);
    assert.equal(bytes[13], 0x08); // ECMA array marker after the string
    const [name, meta] = decodeAmf0(bytes);
    assert.equal(name, 'onMetaData');
    assert.deepEqual({ ...(meta as object) }, { width: 1280, height: 720, videocodecid: 7 });
  });

  it('decodes a date and a long string', () => {
    const date = hex('0b 4272c148d0400000 0000'); // 1288834974720 ms as a float64
    assert.equal((decodeAmf0(date)[0] as Date).getTime(), 1288834974720);
    const long = Buffer.concat([hex('0c 00000003'), Buffer.from('abc')]);
    assert.deepEqual(decodeAmf0(long), ['abc']);
  });

  it('keeps a "__proto__" key as plain data', () => {
    const bytes = hex('03 0009 5f5f70726f746f5f5f 00 3ff0000000000000 000009');
    const [obj] = decodeAmf0(bytes) as [Record<string, unknown>];
    assert.equal(obj['__proto__'], 1);
    assert.equal(({} as Record<string, unknown>)['polluted'], undefined);
  });

  it('rejects truncation inside any value of a command with a MediaParseError', () => {
    const bytes = GOLDEN[4]![2];
    const valueEnds = new Set([10, 19, 20]); // '_result' | 4 | null | {...}: cuts there leave whole values
    for (let n = 1; n < bytes.length; n++) {
      if (valueEnds.has(n)) continue;
      assert.throws(() => decodeAmf0(bytes.subarray(0, n)), MediaParseError, `prefix of ${n} bytes`);
    }
  });

  it('rejects nesting deeper than the limit', () => {
    const deep = Buffer.concat([...Array.from({ length: 40 }, () => hex('0a 00000001')), hex('05')]);
    assert.throws(() => decodeAmf0(deep), (err: unknown) => err instanceof MediaParseError && err.code === 'AMF0_TOO_DEEP');
  });

  it('rejects a strict array claiming billions of entries without allocating them', () => {
    assert.throws(() => decodeAmf0(hex('0a ffffffff')), (err: unknown) => err instanceof MediaParseError && err.code === 'AMF0_TOO_LARGE');
  });

  it('throws only MediaParseError on 5,000 random inputs (fuzz)', () => {
    const rand = seededRandom(0xa3f0);
    for (let i = 0; i < 5000; i++) {
      const input = randomBytes(rand, Math.floor(rand() * 64));
      // Bias toward valid markers so the decoder gets past the first byte.
      if (input.length > 0) input[0] = Math.floor(rand() * 0x12);
      try {
        decodeAmf0(input);
      } catch (err) {
        assert.ok(err instanceof MediaParseError, `input ${input.toString('hex')} threw ${String(err)}`);
      }
    }
  });
});
