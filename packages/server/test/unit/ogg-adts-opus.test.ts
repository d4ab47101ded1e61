import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { AdtsFrameReader, adtsHeader, buildAacConfig, parseAacConfig } from '../../src/media/codecs/aac.js';
import { buildOpusHead, parseOpusHead } from '../../src/media/codecs/opus.js';
import { MediaParseError } from '../../src/media/errors.js';
import { OggOpusWriter, OggPacketReader } from '../../src/media/formats/ogg.js';
import { FFMPEG } from '../support/ffmpeg.js';
import { randomBytes, seededRandom } from '../support/random.js';

describe('OpusHead (RFC 7845 §5.1)', () => {
  it('writes golden bytes and reads them back; refuses what is not an OpusHead', () => {
    const head = buildOpusHead(2);
    assert.equal(head.toString('hex'), '4f707573486561640102' + '3801' + '80bb0000' + '0000' + '00');
    assert.deepEqual(parseOpusHead(head), { channels: 2, preSkip: 312, inputSampleRate: 48_000 });
    assert.throws(() => parseOpusHead(head.subarray(0, 10)), MediaParseError);
    assert.throws(() => parseOpusHead(Buffer.from('OpusTags' + '\0'.repeat(11))), MediaParseError);
  });
});

describe('AAC AudioSpecificConfig and ADTS', () => {
  it('builds AAC-LC 48 kHz stereo as 0x1190 (golden) and refuses what ADTS/ASC cannot say', () => {
    const asc = buildAacConfig(2, 48_000, 2);
    assert.equal(asc.toString('hex'), '1190');
    assert.deepEqual([parseAacConfig(asc).objectType, parseAacConfig(asc).sampleRate, parseAacConfig(asc).channels], [2, 48_000, 2]);
    assert.throws(() => buildAacConfig(2, 47_000, 2), RangeError);
  });

  it('splits an ADTS stream fed in odd pieces back into frames, skipping garbage before a sync word', () => {
    const config = parseAacConfig(buildAacConfig(2, 48_000, 2));
    const rand = seededRandom(3);
    const frames = Array.from({ length: 20 }, (_, i) => randomBytes(rand, 1 + ((i * 37) % 400)).fill(0x11, 0, 1));
    const stream = Buffer.concat([Buffer.from([0x00, 0x12, 0x34]), ...frames.flatMap((f) => [adtsHeader(config, f.length), f])]);
    const reader = new AdtsFrameReader();
    const out: Buffer[] = [];
    for (let pos = 0; pos < stream.length; ) {
      const n = 1 + Math.floor(rand() * 97);
      out.push(...reader.push(stream.subarray(pos, pos + n)));
      pos += n;
    }
    assert.deepEqual(out.map((f) => f.toString('hex')), frames.map((f) => f.toString('hex')));
    // A truncated last frame is held, not returned half.
    assert.deepEqual(reader.push(Buffer.concat([adtsHeader(config, 100), Buffer.alloc(50)])), []);
  });

  it('never throws on random bytes (fuzz)', () => {
    const rand = seededRandom(9);
    const reader = new AdtsFrameReader();
    for (let i = 0; i < 2000; i++) assert.doesNotThrow(() => reader.push(randomBytes(rand, Math.floor(rand() * 200))));
  });
});

describe('Ogg Opus writer (RFC 3533, RFC 7845)', () => {
  it("re-muxes ffmpeg's Opus packets into pages ffmpeg decodes with CRC checking, and our reader reads back", () => {
    const enc = spawnSync(FFMPEG, ['-v', 'error', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000:duration=1', '-c:a', 'libopus', '-b:a', '64k', '-f', 'ogg', 'pipe:1'], { maxBuffer: 1 << 24 });
    assert.equal(enc.status, 0, enc.stderr.toString());
    const packets = new OggPacketReader().push(enc.stdout);
    const [head, , ...audio] = packets;
    assert.ok(head && audio.length >= 49, `${audio.length} audio packets`);
    // A packet longer than 255 bytes needs more than one lacing value.
    const big = Buffer.concat([audio[0]!, Buffer.alloc(600 - audio[0]!.length)]);
    const writer = new OggOpusWriter();
    const ogg = Buffer.concat([writer.headers(head), ...audio.map((p) => writer.packet(p))]);
    const dec = spawnSync(FFMPEG, ['-v', 'error', '-err_detect', 'crccheck', '-f', 'ogg', '-i', 'pipe:0', '-f', 'null', '-'], { input: ogg });
    assert.equal(dec.status, 0);
    assert.equal(dec.stderr.toString(), '', 'ffmpeg found no CRC or framing error');
    const back = new OggPacketReader().push(Buffer.concat([new OggOpusWriter().headers(head), new OggOpusWriter().packet(big)]));
    assert.equal(back[0]!.toString('hex'), head.toString('hex'));
    assert.equal(back[1]!.subarray(0, 8).toString('latin1'), 'OpusTags');
    assert.equal(back[2]!.toString('hex'), big.toString('hex'));
  });
});
