/**
 * The MPEG-TS demuxer against transport streams written by real ffmpeg (H.264 + AAC, HEVC + AAC, Opus), cut in
 * SRT-sized and odd-sized pieces: the program, every PES with the timestamps ffprobe reports, continuity gaps
 * reported, 33-bit timestamps unwrapped past the wrap, the CRC-32 check value, and 300 mutated copies (fuzz).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { crc32Mpeg2, MAX_PES_BYTES, MpegTsDemuxer, splitOpusAccessUnits, TS_PACKET_SIZE, type TsDemuxEvent } from '../../src/media/formats/mpegts-demuxer.js';
import { FFMPEG, FFPROBE } from '../support/ffmpeg.js';
import { opusPacketSamples } from '../../src/media/formats/ogg.js';
import { seededRandom } from '../support/random.js';

let dir: string;
const made = new Map<string, Buffer>();

/** A 3 s lavfi source encoded by ffmpeg into MPEG-TS. */
function makeTs(name: string, videoCodec: string[], audioCodec: string[], extra: string[] = []): Buffer {
  const path = join(dir, `${name}.ts`);
  const r = spawnSync(FFMPEG, [
    '-v', 'error', '-f', 'lavfi', '-i', 'testsrc2=size=320x180:rate=30', '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-t', '3', ...videoCodec, ...audioCodec, ...extra, '-f', 'mpegts', path,
  ]);
  assert.equal(r.status, 0, r.stderr.toString());
  const bytes = readFileSync(path);
  made.set(name, bytes);
  return bytes;
}

/** ffprobe's packet timestamps (90 kHz) per stream index: [pts, dts][] for video. */
function probePackets(name: string): { video: [number, number][]; audio: number } {
  const r = spawnSync(FFPROBE, ['-v', 'error', '-show_entries', 'packet=stream_index,pts,dts', '-of', 'csv=p=0', join(dir, `${name}.ts`)]);
  const rows = r.stdout.toString().split('\n').filter((l) => /^\d/.test(l)).map((l) => l.split(',').map(Number));
  return { video: rows.filter((x) => x[0] === 0).map((x) => [x[1]!, x[2]!]), audio: rows.filter((x) => x[0] === 1).length };
}

function demux(bytes: Uint8Array, sizes: number[]): TsDemuxEvent[] {
  const d = new MpegTsDemuxer();
  const events: TsDemuxEvent[] = [];
  for (let pos = 0, i = 0; pos < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    events.push(...d.push(bytes.subarray(pos, pos + n)));
    pos += n;
  }
  events.push(...d.flush());
  return events;
}

const pesOf = (events: TsDemuxEvent[], kind: string): Extract<TsDemuxEvent, { type: 'pes' }>[] => events.filter((e): e is Extract<TsDemuxEvent, { type: 'pes' }> => e.type === 'pes' && e.kind === kind);

describe('MPEG-TS demuxer (ISO/IEC 13818-1)', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'glasscast-ts-'));
    makeTs('h264', ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '30', '-bf', '2'], ['-c:a', 'aac', '-b:a', '96k']);
    makeTs('hevc', ['-c:v', 'libx265', '-preset', 'ultrafast', '-x265-params', 'log-level=none:keyint=30'], ['-c:a', 'aac']);
    makeTs('opus', ['-c:v', 'libx264', '-preset', 'ultrafast'], ['-c:a', 'libopus', '-b:a', '64k']);
    // Starts 3 s before the 33-bit PTS wraps (2^33 / 90 kHz = 95443.7 s).
    makeTs('wrap', ['-c:v', 'libx264', '-preset', 'ultrafast', '-g', '30'], ['-c:a', 'aac'], ['-output_ts_offset', '95442']);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('computes the MPEG-2 CRC-32 check value', () => {
    assert.equal(crc32Mpeg2(Buffer.from('123456789')), 0x0376e6e7);
  });

  for (const [name, video] of [['h264', 'h264'], ['hevc', 'hevc']] as const) {
    it(`reads ffmpeg's ${name.toUpperCase()} + AAC program and every PES with ffprobe's timestamps, whatever the datagram sizes`, () => {
      const bytes = made.get(name)!;
      const expected = probePackets(name);
      for (const sizes of [[1316], [188], [1, 7, 1000, 333], [bytes.length]]) {
        const events = demux(bytes, sizes);
        const program = events.find((e) => e.type === 'program');
        assert.ok(program && program.type === 'program');
        assert.deepEqual(program.streams.map((s) => s.kind), [video, 'aac']);
        const frames = pesOf(events, video);
        assert.equal(frames.length, expected.video.length, `video PES with sizes ${sizes.join(',')}`);
        assert.deepEqual(frames.map((f) => [f.pts, f.dts]), expected.video);
        // Annex B: each video PES starts with a start code; the first is a keyframe flagged random access.
        assert.deepEqual([...frames[0]!.data.subarray(0, 3)], [0, 0, 0]);
        assert.equal(frames[0]!.randomAccess, true);
        const audio = pesOf(events, 'aac');
        assert.ok(audio.length > 0 && audio.every((a) => a.data[0] === 0xff && (a.data[1]! & 0xf0) === 0xf0), 'ADTS frames');
        assert.equal(events.filter((e) => e.type === 'discontinuity').length, 0);
      }
    });
  }

  it('reads Opus in TS by its registration descriptor', () => {
    const events = demux(made.get('opus')!, [1316]);
    const program = events.find((e) => e.type === 'program');
    assert.ok(program && program.type === 'program');
    assert.deepEqual(program.streams.map((s) => s.kind), ['h264', 'opus']);
    // ffmpeg puts several Opus packets (each behind its control header) in one PES: ~11 a second.
    assert.ok(pesOf(events, 'opus').length > 25 && pesOf(events, 'opus').every((p) => p.data[0] === 0x7f && (p.data[1]! & 0xe0) === 0xe0));
    assert.equal(program.streams[1]!.channels, 1, "the extension descriptor's channel_config_code (lavfi sine is mono)");
    // Split behind the control headers: as many Opus packets, of as many samples, as ffprobe counts.
    const packets = pesOf(events, 'opus').flatMap((p) => splitOpusAccessUnits(p.data));
    assert.equal(packets.length, probePackets('opus').audio);
    assert.ok(packets.every((p) => opusPacketSamples(p) === 960), '20 ms packets');
    assert.deepEqual(splitOpusAccessUnits(Buffer.from([0x7f, 0xe0, 0x05, 1, 2])), [], 'a size past the end');
    assert.deepEqual(splitOpusAccessUnits(Buffer.from([0x47, 0xe0, 0x01, 0xfc])), [], 'no control header');
  });

  it('unwraps 33-bit timestamps: they keep increasing past 2^33', () => {
    const frames = pesOf(demux(made.get('wrap')!, [1316]), 'h264');
    assert.ok(frames[0]!.dts < 2 ** 33 && frames.at(-1)!.dts > 2 ** 33, `${frames[0]!.dts} … ${frames.at(-1)!.dts}`);
    for (let i = 1; i < frames.length; i++) assert.ok(frames[i]!.dts > frames[i - 1]!.dts, `DTS ${i} increases`);
  });

  it('reports a continuity gap, drops the PES it broke and reads on', () => {
    const bytes = made.get('h264')!;
    const clean = pesOf(demux(bytes, [1316]), 'h264');
    // Drop one video packet in the middle (not a payload-unit start).
    let victim = -1;
    for (let i = Math.floor(bytes.length / TS_PACKET_SIZE / 2); i < bytes.length / TS_PACKET_SIZE; i++) {
      const p = bytes.subarray(i * TS_PACKET_SIZE, (i + 1) * TS_PACKET_SIZE);
      const pid = ((p[1]! & 0x1f) << 8) | p[2]!;
      if (pid === 0x100 && !(p[1]! & 0x40)) {
        victim = i;
        break;
      }
    }
    assert.ok(victim > 0);
    const cut = Buffer.concat([bytes.subarray(0, victim * TS_PACKET_SIZE), bytes.subarray((victim + 1) * TS_PACKET_SIZE)]);
    const events = demux(cut, [1316]);
    const gaps = events.filter((e) => e.type === 'discontinuity');
    assert.equal(gaps.length, 1);
    assert.equal(pesOf(events, 'h264').length, clean.length - 1, 'only the broken PES is lost');
  });

  it('survives 300 truncated, bit-flipped and desynchronized copies (fuzz)', () => {
    const bytes = made.get('h264')!.subarray(0, 200 * TS_PACKET_SIZE);
    const rand = seededRandom(1212);
    for (let n = 0; n < 300; n++) {
      const copy = Buffer.from(bytes.subarray(0, Math.floor(rand() * bytes.length)));
      for (let f = 0; f < 1 + Math.floor(rand() * 40); f++) {
        const at = Math.floor(rand() * copy.length);
        copy[at] = copy[at]! ^ (1 << Math.floor(rand() * 8));
      }
      const sizes = [1 + Math.floor(rand() * 2000)];
      const events = demux(copy.subarray(Math.floor(rand() * 5)), sizes);
      for (const e of events) if (e.type === 'pes') assert.ok(e.data.length <= MAX_PES_BYTES && Number.isInteger(e.pts) && Number.isInteger(e.dts));
    }
  });
});
