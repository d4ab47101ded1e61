import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { aacCodecString, parseAacConfig } from '../../src/media/codecs/aac.js';
import { VIDEO_CODECS } from '../../src/media/codecs/codec-table.js';
import { buildAvcConfig, h264CodecString, joinLengthPrefixed, parseAvcConfig, parseH264Sps, splitAnnexB, splitLengthPrefixed } from '../../src/media/codecs/h264.js';
import { buildHevcConfig, hevcCodecString, parseHevcConfig, parseHevcSpsSize } from '../../src/media/codecs/hevc.js';
import { MediaParseError } from '../../src/media/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

// Golden parameter sets from x264 (High, 640x360, so the SPS crops 368 → 360) and x265 (Main, 640x360).
const H264_ANNEX_B = hex(`00000001 6764001eacd940a02ff970110000030001000003003c0f162d96
                          00000001 68ebe3cb22c0`);
const HEVC_ANNEX_B = hex(`00000001 40010c01ffff01600000030090000003000003003f95980900
                          00000001 42010101600000030090000003000003003fa00502016965959a4932bc05a020000003002000000303c1
                          00000001 4401c172b46240`);

describe('H.264', () => {
  const [sps, pps] = splitAnnexB(H264_ANNEX_B);

  it('splits Annex B into NAL units without start codes', () => {
    assert.equal(sps![0], 0x67);
    assert.equal(Buffer.from(pps!).toString('hex'), '68ebe3cb22c0');
  });

  it('reads profile, level and the cropped 640x360 size from the SPS', () => {
    const info = parseH264Sps(sps!);
    assert.deepEqual(info, { profileIdc: 100, constraintFlags: 0, levelIdc: 30, width: 640, height: 360 });
    assert.equal(h264CodecString(info), 'avc1.64001e');
  });

  it('builds and parses an avcC record (both directions)', () => {
    const record = buildAvcConfig([sps!], [pps!]);
    assert.equal(Buffer.from(record.subarray(0, 6)).toString('hex'), '016400' + '1eff' + 'e1');
    const cfg = parseAvcConfig(record);
    assert.equal(cfg.nalLengthSize, 4);
    assert.deepEqual(cfg.sps.map((s) => Buffer.from(s).toString('hex')), [Buffer.from(sps!).toString('hex')]);
    assert.deepEqual(cfg.pps.map((s) => Buffer.from(s).toString('hex')), ['68ebe3cb22c0']);
    assert.equal(VIDEO_CODECS.h264.parseConfig(record).codecString, 'avc1.64001e');
  });

  it('rejects truncated avcC records and SPS with MediaParseError', () => {
    const record = buildAvcConfig([sps!], [pps!]);
    for (let n = 0; n < record.length - 1; n++) {
      assert.throws(() => VIDEO_CODECS.h264.parseConfig(record.subarray(0, n)), MediaParseError, `prefix ${n}`);
    }
    assert.throws(() => parseH264Sps(sps!.subarray(0, 4)), MediaParseError);
  });

  it('splits length-prefixed NAL units and refuses a length past the end', () => {
    assert.deepEqual(splitLengthPrefixed(hex('00000002 abcd 00000001 ef'), 4).map((n) => Buffer.from(n).toString('hex')), ['abcd', 'ef']);
    assert.throws(() => splitLengthPrefixed(hex('00000009 abcd'), 4), (e: unknown) => e instanceof MediaParseError && e.code === 'NAL_LENGTH_INVALID');
    // Joining is the inverse, for every length size (golden, then round trip).
    assert.equal(joinLengthPrefixed([hex('abcd'), hex('ef')], 4).toString('hex'), '00000002abcd00000001ef');
    assert.equal(joinLengthPrefixed([hex('abcd')], 2).toString('hex'), '0002abcd');
    assert.equal(joinLengthPrefixed([hex('abcd'), hex('ef')], 1).toString('hex'), '02abcd01ef');
    for (const size of [1, 2, 4]) {
      const nals = [hex('65 88 84'), hex('41 9a'), Buffer.alloc(200, 7)];
      assert.deepEqual(splitLengthPrefixed(joinLengthPrefixed(nals, size), size).map((n) => Buffer.from(n).toString('hex')), nals.map((n) => n.toString('hex')));
    }
    assert.equal(joinLengthPrefixed([], 4).length, 0);
  });
});

describe('HEVC', () => {
  const [vps, sps, pps] = splitAnnexB(HEVC_ANNEX_B);

  it('reads the 640x360 picture size from the SPS', () => {
    assert.deepEqual(parseHevcSpsSize(sps!), { width: 640, height: 360 });
  });

  it('builds an hvcC record that parses back with the RFC 6381 codec string hvc1.1.6.L63.90', () => {
    const record = buildHevcConfig([vps!], [sps!], [pps!]);
    const cfg = parseHevcConfig(record);
    assert.equal(cfg.profileIdc, 1);
    assert.equal(cfg.levelIdc, 63); // level 2.1: 640x360 fits its 245,760 luma samples
    assert.equal(cfg.nalLengthSize, 4);
    assert.equal(hevcCodecString(cfg), 'hvc1.1.6.L63.90');
    assert.deepEqual([cfg.vps.length, cfg.sps.length, cfg.pps.length], [1, 1, 1]);
    const info = VIDEO_CODECS.h265.parseConfig(record);
    assert.deepEqual([info.width, info.height, info.parameterSets.length], [640, 360, 3]);
  });

  it('rejects a truncated hvcC with MediaParseError', () => {
    const record = buildHevcConfig([vps!], [sps!], [pps!]);
    for (let n = 0; n < record.length - 1; n += 3) {
      assert.throws(() => VIDEO_CODECS.h265.parseConfig(record.subarray(0, n)), MediaParseError, `prefix ${n}`);
    }
  });
});

describe('AAC', () => {
  it('parses AudioSpecificConfig 0x1210 as AAC-LC 44.1 kHz stereo', () => {
    const cfg = parseAacConfig(hex('1210'));
    assert.deepEqual([cfg.objectType, cfg.sampleRate, cfg.channels], [2, 44100, 2]);
    assert.equal(aacCodecString(cfg), 'mp4a.40.2');
  });

  it('parses 0x1190 as AAC-LC 48 kHz stereo and rejects a reserved frequency index', () => {
    assert.equal(parseAacConfig(hex('1190')).sampleRate, 48000);
    assert.throws(() => parseAacConfig(hex('16')), MediaParseError);
  });
});
