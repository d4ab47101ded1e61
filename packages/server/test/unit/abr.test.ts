/** Pure parts of ABR: ladder text, rung planning, the ffmpeg command, rendition reports and the WebRTC layer policy. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderRenditionReports } from '../../src/egress/llhls/llhls-playlist.js';
import { LayerPolicy } from '../../src/egress/whep/layer-policy.js';
import { GlasscastError } from '../../src/core/errors.js';
import { DEFAULT_LADDER, formatLadder, parseLadder, planRungs } from '../../src/transcode/ladder.js';
import { ladderFfmpegArgs, nominalFrameRate } from '../../src/transcode/ladder-transcoder.js';
import { probeArgs } from '../../src/transcode/encoder-detect.js';
import { seededRandom } from '../support/random.js';

describe('ladder profiles', () => {
  it('parses the default ladder, highest first, and writes it back', () => {
    const rungs = parseLadder(DEFAULT_LADDER);
    assert.deepEqual(rungs, [
      { name: '1080p', height: 1080, bitrate: 4_500_000, maxFrameRate: undefined },
      { name: '720p', height: 720, bitrate: 2_500_000, maxFrameRate: undefined },
      { name: '480p', height: 480, bitrate: 1_200_000, maxFrameRate: 30 },
      { name: '360p', height: 360, bitrate: 600_000, maxFrameRate: 30 },
    ]);
    assert.equal(formatLadder(rungs), DEFAULT_LADDER);
    assert.deepEqual(parseLadder('360p=0.6m, 720p=2.5M'), [
      { name: '720p', height: 720, bitrate: 2_500_000, maxFrameRate: undefined },
      { name: '360p', height: 360, bitrate: 600_000, maxFrameRate: undefined },
    ]);
    assert.deepEqual(parseLadder('none'), []);
    assert.deepEqual(parseLadder(''), []);
  });

  it('refuses bad rungs with a sentence naming them', () => {
    for (const bad of ['720p', '720p=fast', '721p=1000k', '100p=200k', '720p=10k', '720p=1000k@0', '720p=1m,720p=2m', '1p=1k,2p=1k']) {
      assert.throws(() => parseLadder(bad), (err: unknown) => err instanceof GlasscastError && err.code === 'CONFIG_INVALID', bad);
    }
    assert.throws(() => parseLadder('144p=100k,240p=200k,360p=300k,480p=400k,576p=500k,720p=600k,1080p=700k'), /at most 6 rungs/);
  });

  it('never throws anything but CONFIG_INVALID on random text (fuzz)', () => {
    const rand = seededRandom(5);
    const alphabet = '0123456789pkm=@,. none';
    for (let i = 0; i < 2000; i++) {
      const text = Array.from({ length: Math.floor(rand() * 30) }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
      try {
        parseLadder(text);
      } catch (err) {
        assert.ok(err instanceof GlasscastError && err.code === 'CONFIG_INVALID', text);
      }
    }
  });

  it('plans only rungs below the source height, keeping its aspect ratio with even widths', () => {
    const ladder = parseLadder(DEFAULT_LADDER);
    assert.deepEqual(planRungs(ladder, 1920, 1080).map((r) => `${r.width}x${r.height}`), ['1280x720', '854x480', '640x360']);
    assert.deepEqual(planRungs(ladder, 640, 360), [], 'a 360p source: nothing above or at it');
    assert.deepEqual(planRungs(ladder, 1080, 1920).map((r) => `${r.width}x${r.height}`), ['608x1080', '406x720', '270x480', '202x360'], 'portrait');
    assert.deepEqual(planRungs(ladder, 0, 0), []);
  });
});

describe('ladder ffmpeg command', () => {
  const rungs = planRungs(parseLadder(DEFAULT_LADDER), 1920, 1080);

  it('scales in a chain, caps frame rate keeping keyframes, forces keyframes where the source has them and one a second between (golden)', () => {
    const args = ladderFfmpegArgs(rungs, 'libx264', 59.94);
    const graph = args[args.indexOf('-filter_complex') + 1];
    assert.equal(
      graph,
      '[0:v]scale=1280:720,split=2[scaled0][next0];[scaled0]null[out0];' +
        "[next0]scale=854:480,split=2[scaled1][next1];[scaled1]select='isnan(prev_selected_t)+key+gte(t-prev_selected_t\\,0.0300)'[out1];" +
        "[next1]scale=640:360[scaled2];[scaled2]select='isnan(prev_selected_t)+key+gte(t-prev_selected_t\\,0.0300)'[out2]",
    );
    assert.deepEqual(args.slice(0, 9), ['-probesize', '32', '-analyzeduration', '0', '-copyts', '-f', 'flv', '-i', 'pipe:0']);
    for (let i = 0; i < 3; i++) {
      const at = args.indexOf(`[out${i}]`);
      const out = args.slice(at, args.indexOf(`pipe:${3 + i}`) + 1);
      // 720p keeps the source's 59.94 fps; 480p and 360p are capped at 30.
      assert.deepEqual(out.slice(out.indexOf('-force_key_frames'), out.indexOf('-force_key_frames') + 4), ['-force_key_frames', 'source', '-g', i === 0 ? '60' : '30']);
      assert.deepEqual(out.slice(out.indexOf('-enc_time_base'), out.indexOf('-enc_time_base') + 2), ['-enc_time_base', '1:1000'], 'timestamps kept to the ms, not snapped to 1/fps');
      assert.ok(out.includes('zerolatency') && out.includes('baseline'), 'no B-frames, no lookahead');
      assert.equal(out[out.indexOf('-b:v') + 1], String(rungs[i]!.bitrate));
    }
  });

  it('snaps a measured frame rate to the common one it is near (RTMP timestamps are whole ms)', () => {
    assert.equal(nominalFrameRate(90_000 / 2970), 30, '33 ms');
    assert.equal(Math.round(nominalFrameRate(90_000 / 3060) * 100), 2997, '34 ms');
    assert.equal(nominalFrameRate(90_000 / 3600), 25);
    assert.equal(nominalFrameRate(90_000 / 1530), 60000 / 1001, '17 ms');
    assert.equal(nominalFrameRate(15), 15, 'nothing near: as measured');
  });

  it('drives hardware encoders with their own options (VAAPI uploads frames)', () => {
    assert.ok(ladderFfmpegArgs(rungs, 'nvenc').includes('h264_nvenc'));
    const vaapi = ladderFfmpegArgs(rungs, 'vaapi');
    assert.deepEqual(vaapi.slice(0, 2), ['-vaapi_device', '/dev/dri/renderD128']);
    assert.match(vaapi[vaapi.indexOf('-filter_complex') + 1]!, /format=nv12,hwupload\[out0\]/);
    assert.ok(ladderFfmpegArgs(rungs, 'qsv').includes('h264_qsv'));
    assert.ok(probeArgs('nvenc').includes('h264_nvenc') && probeArgs('nvenc').includes('1'), 'a one-frame probe');
  });
});

describe('EXT-X-RENDITION-REPORT', () => {
  it('renders one line per other rendition (golden)', () => {
    assert.equal(
      renderRenditionReports([{ uri: '../720p/media.m3u8', lastMsn: 12, lastPart: 3 }, { uri: '../src/media.m3u8', lastMsn: 13, lastPart: 0 }]),
      '#EXT-X-RENDITION-REPORT:URI="../720p/media.m3u8",LAST-MSN=12,LAST-PART=3\n#EXT-X-RENDITION-REPORT:URI="../src/media.m3u8",LAST-MSN=13,LAST-PART=0\n',
    );
    assert.equal(renderRenditionReports([]), '');
  });
});

describe('WebRTC layer policy', () => {
  const layers = [{ bitrate: 6_000_000 }, { bitrate: 2_500_000 }, { bitrate: 1_200_000 }, { bitrate: 600_000 }];

  it('steps down at once on severe loss, to what fits, after the start settles', () => {
    const p = new LayerPolicy(0);
    assert.equal(p.onReport(1000, { fractionLost: 0.4 }, layers, 0), undefined, 'not in the first 2.5 s');
    assert.equal(p.onReport(3000, { fractionLost: 0.4 }, layers, 0), 1, '60 % of 6 Mb/s with 15 % headroom: 2.5 Mb/s fits');
  });

  it('needs two lossy reports below the severe threshold, and ignores small loss', () => {
    const p = new LayerPolicy(0);
    assert.equal(p.onReport(3000, { fractionLost: 0.12 }, layers, 1), undefined);
    assert.equal(p.onReport(4000, { fractionLost: 0.01 }, layers, 1), undefined, 'a clean report resets the count');
    assert.equal(p.onReport(5000, { fractionLost: 0.12 }, layers, 1), undefined);
    assert.equal(p.onReport(6000, { fractionLost: 0.15 }, layers, 1), 2, '60 % of 2.5 Mb/s: 1.2 Mb/s');
  });

  it('follows REMB down once past its warm-up, never below the last layer', () => {
    const p = new LayerPolicy(0);
    assert.equal(p.onReport(3000, { remb: 300_000 }, layers, 0), undefined, 'the browser’s starting guess is ignored');
    assert.equal(p.onReport(7000, { remb: 1_500_000 }, layers, 0), 2);
    assert.equal(p.onReport(12_000, { remb: 100_000 }, layers, 2), 3);
    assert.equal(p.onReport(20_000, { remb: 100_000 }, layers, 3), undefined, 'already at the bottom');
  });

  it('probes up one layer after a quiet period, and waits twice as long after a failed probe', () => {
    const p = new LayerPolicy(0);
    assert.equal(p.onReport(3000, { fractionLost: 0.5 }, layers, 2), 3);
    assert.equal(p.onReport(8000, { fractionLost: 0 }, layers, 3), undefined, 'quiet for 8 s first');
    assert.equal(p.onReport(11_100, { fractionLost: 0 }, layers, 3), 2, 'up one');
    assert.equal(p.onReport(14_000, { fractionLost: 0.3 }, layers, 2), 3, 'the probe failed');
    assert.equal(p.onReport(14_000 + 8_100, { fractionLost: 0 }, layers, 3), undefined, 'not after 8 s now');
    assert.equal(p.onReport(14_000 + 16_100, { fractionLost: 0 }, layers, 3), 2, 'after 16 s');
  });

  it('reacts to NACKed shares like to RR loss: two lossy windows or one severe', () => {
    const p = new LayerPolicy(0);
    assert.equal(p.onReport(3000, { nackFraction: 0.15 }, layers, 0), undefined);
    assert.equal(p.onReport(3500, { nackFraction: 0.01 }, layers, 0), undefined, 'a clean window resets the count');
    assert.equal(p.onReport(4000, { nackFraction: 0.15 }, layers, 0), undefined);
    assert.equal(p.onReport(4500, { nackFraction: 0.12 }, layers, 0), 1);
    const q = new LayerPolicy(0);
    assert.equal(q.onReport(3000, { nackFraction: 0.3 }, layers, 0), 1, 'severe: at once');
  });

  it('records but does not decide while a switch is on its way, and settles again from where it lands', () => {
    const p = new LayerPolicy(0);
    assert.equal(p.onReport(3000, { fractionLost: 0.4 }, layers, 0), 1);
    assert.equal(p.onReport(5000, { nackFraction: 0.4 }, layers, 1, true), undefined, 'the old layer’s loss while switching');
    p.switchLanded(5200);
    assert.equal(p.onReport(6000, { nackFraction: 0.4 }, layers, 1), undefined, 'settling after the landing');
    assert.equal(p.onReport(6800, { nackFraction: 0.4 }, layers, 1), 2, 'loss that goes on after the settle time counts');
  });

  it('a manual choice restarts the quiet period', () => {
    const p = new LayerPolicy(0);
    p.manualSwitch(10_000);
    assert.equal(p.onReport(11_000, { fractionLost: 0 }, layers, 1), undefined);
    assert.equal(p.onReport(18_100, { fractionLost: 0 }, layers, 1), 0);
  });
});
