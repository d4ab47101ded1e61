/** Pure parts of ABR: ladder text, rung planning, the ffmpeg command, rendition reports and the WebRTC rendition policy. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { renderRenditionReports } from '../../src/egress/llhls/llhls-playlist.js';
import { RenditionPolicy } from '../../src/egress/whep/rendition-policy.js';
import { GlasscastError } from '../../src/core/errors.js';
import { DEFAULT_LADDER, formatLadder, parseLadder, planRungs } from '../../src/transcode/ladder.js';
import { bframeFreeBitrate, fullPlan, nominalFrameRate, planCost, sheddingSteps, videoJobArgs, type VideoSourceFacts } from '../../src/transcode/video-job.js';
import type { VideoEncoderKind } from '../../src/transcode/encoder-detect.js';
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

/** The video job's ffmpeg arguments for a source at full service. */
function ladderFfmpegArgs(encoder: VideoEncoderKind, frameRate = 30, bFrames = false, width = 1920, height = 1080): string[] {
  const facts: VideoSourceFacts = { width, height, frameRate, bFrames };
  return videoJobArgs(fullPlan(parseLadder(DEFAULT_LADDER), facts), encoder, facts);
}

describe('video job ffmpeg command', () => {
  const rungs = planRungs(parseLadder(DEFAULT_LADDER), 1920, 1080);

  it('scales in a chain, caps frame rate keeping keyframes, forces keyframes where the source has them and one a second between (golden)', () => {
    const args = ladderFfmpegArgs('libx264', 59.94);
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
    assert.ok(ladderFfmpegArgs('nvenc').includes('h264_nvenc'));
    const vaapi = ladderFfmpegArgs('vaapi');
    assert.deepEqual(vaapi.slice(0, 2), ['-vaapi_device', '/dev/dri/renderD128']);
    assert.match(vaapi[vaapi.indexOf('-filter_complex') + 1]!, /format=nv12,hwupload\[out0\]/);
    assert.ok(ladderFfmpegArgs('qsv').includes('h264_qsv'));
    assert.ok(probeArgs('nvenc').includes('h264_nvenc') && probeArgs('nvenc').includes('1'), 'a one-frame probe');
  });

  it('makes the B-frame-free copy for WebRTC from the same decode, unscaled, first in the chain (golden)', () => {
    const args = ladderFfmpegArgs('libx264', 30, true, 1280, 720);
    assert.equal(
      args[args.indexOf('-filter_complex') + 1],
      '[0:v]null,split=2[scaled0][next0];[scaled0]null[out0];' +
        "[next0]scale=854:480,split=2[scaled1][next1];[scaled1]null[out1];" +
        '[next1]scale=640:360[scaled2];[scaled2]null[out2]',
      'a 720p30 source: the copy at 720p, then 480p and 360p (no frame-rate cap needed at 30 fps)',
    );
    assert.equal(args.filter((a) => a === 'libx264').length, 3, 'three encoders in one process');
    assert.equal(args[args.indexOf('-b:v') + 1], String(bframeFreeBitrate(1280, 720, 30)));
    assert.equal(bframeFreeBitrate(1280, 720, 30), 2_500_000);
  });
});

describe('overload shedding', () => {
  const ladder = parseLadder(DEFAULT_LADDER);
  const source: VideoSourceFacts = { width: 1920, height: 1080, frameRate: 60, bFrames: true };

  it('sheds in the stated order: ultrafast, 30 fps, rungs from the top, the copy to 720p then 480p, the last rung, everything', () => {
    const full = fullPlan(ladder, source);
    assert.deepEqual(full.outputs.map((o) => o.name), ['webrtc', '720p', '480p', '360p']);
    const steps = sheddingSteps(full, source, 'libx264');
    assert.deepEqual(steps.map((s) => s.shed.at(-1)), ['x264 ultrafast', 'frame rate capped at 30', '720p dropped', '480p dropped', 'webrtc scaled to 720p', 'webrtc scaled to 480p', '360p dropped', 'all derived video stopped']);
    assert.deepEqual(steps.map((s) => s.outputs.map((o) => `${o.name}:${o.height}`).join(' ')), [
      'webrtc:1080 720p:720 480p:480 360p:360',
      'webrtc:1080 720p:720 480p:480 360p:360',
      'webrtc:1080 480p:480 360p:360',
      'webrtc:1080 360p:360',
      'webrtc:720 360p:360',
      'webrtc:480 360p:360',
      'webrtc:480',
      '',
    ]);
    // Every step is cheaper than the one before it (the cost model the jump uses agrees with the order).
    const costs = [full, ...steps].map((p) => planCost(p, source));
    for (let i = 1; i < costs.length; i++) assert.ok(costs[i]! < costs[i - 1]!, `step ${i} costs less (${costs.join(' ')})`);
    assert.equal(costs.at(-1), 0);
  });

  it('has no preset step for hardware encoders and no frame-rate step for a 30 fps source', () => {
    const s30: VideoSourceFacts = { ...source, frameRate: 30 };
    const steps = sheddingSteps(fullPlan(ladder, s30), s30, 'nvenc');
    assert.equal(steps[0]!.shed[0], '720p dropped');
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

describe('WebRTC rendition policy', () => {
  const renditions = [{ bitrate: 6_000_000 }, { bitrate: 2_500_000 }, { bitrate: 1_200_000 }, { bitrate: 600_000 }];

  it('steps down at once on severe loss, to what fits, after the start settles', () => {
    const p = new RenditionPolicy(0);
    assert.equal(p.onReport(1000, { fractionLost: 0.4 }, renditions, 0), undefined, 'not in the first 2.5 s');
    assert.equal(p.onReport(3000, { fractionLost: 0.4 }, renditions, 0), 1, '60 % of 6 Mb/s with 15 % headroom: 2.5 Mb/s fits');
  });

  it('needs two lossy reports below the severe threshold, and ignores small loss', () => {
    const p = new RenditionPolicy(0);
    assert.equal(p.onReport(3000, { fractionLost: 0.12 }, renditions, 1), undefined);
    assert.equal(p.onReport(4000, { fractionLost: 0.01 }, renditions, 1), undefined, 'a clean report resets the count');
    assert.equal(p.onReport(5000, { fractionLost: 0.12 }, renditions, 1), undefined);
    assert.equal(p.onReport(6000, { fractionLost: 0.15 }, renditions, 1), 2, '60 % of 2.5 Mb/s: 1.2 Mb/s');
  });

  it('follows REMB down once past its warm-up, never below the last rendition', () => {
    const p = new RenditionPolicy(0);
    assert.equal(p.onReport(3000, { remb: 300_000 }, renditions, 0), undefined, 'the browser’s starting guess is ignored');
    assert.equal(p.onReport(7000, { remb: 4_000_000 }, renditions, 0), 1, '4 Mb/s under a 6 Mb/s source: 2.5 Mb/s fits');
    assert.equal(p.onReport(12_000, { remb: 1_500_000 }, renditions, 1), 2);
    assert.equal(p.onReport(13_000, { remb: 1_500_000, fractionLost: 0.01 }, renditions, 2), undefined, 'settling');
    assert.equal(p.onReport(16_000, { remb: 100_000, nackFraction: 0.01 }, renditions, 2), 3, 'far below, but with loss: believed');
    assert.equal(p.onReport(20_000, { remb: 100_000, fractionLost: 0.01 }, renditions, 3), undefined, 'already at the bottom');
  });

  it('does not believe a REMB far below what arrives without loss (an estimator misled by uneven sending)', () => {
    const p = new RenditionPolicy(0);
    // 22 kb/s while a 6 Mb/s source arrives whole: what Chromium reported on loopback with both cores busy.
    for (let t = 7000; t < 30_000; t += 1000) assert.equal(p.onReport(t, { remb: 22_000, fractionLost: 0, nackFraction: 0 }, renditions, 0), undefined, `at ${t} ms`);
    assert.equal(p.onReport(30_000, { remb: 22_000, nackFraction: 0.05 }, renditions, 0), 3, 'the first loss makes it credible: down to what fits');
  });

  it('probes up one rendition after a quiet period, and waits twice as long after a failed probe', () => {
    const p = new RenditionPolicy(0);
    assert.equal(p.onReport(3000, { fractionLost: 0.5 }, renditions, 2), 3);
    assert.equal(p.onReport(8000, { fractionLost: 0 }, renditions, 3), undefined, 'quiet for 8 s first');
    assert.equal(p.onReport(11_100, { fractionLost: 0 }, renditions, 3), 2, 'up one');
    assert.equal(p.onReport(14_000, { fractionLost: 0.3 }, renditions, 2), 3, 'the probe failed');
    assert.equal(p.onReport(14_000 + 8_100, { fractionLost: 0 }, renditions, 3), undefined, 'not after 8 s now');
    assert.equal(p.onReport(14_000 + 16_100, { fractionLost: 0 }, renditions, 3), 2, 'after 16 s');
  });

  it('reacts to NACKed shares like to RR loss: two lossy windows or one severe', () => {
    const p = new RenditionPolicy(0);
    assert.equal(p.onReport(3000, { nackFraction: 0.15 }, renditions, 0), undefined);
    assert.equal(p.onReport(3500, { nackFraction: 0.01 }, renditions, 0), undefined, 'a clean window resets the count');
    assert.equal(p.onReport(4000, { nackFraction: 0.15 }, renditions, 0), undefined);
    assert.equal(p.onReport(4500, { nackFraction: 0.12 }, renditions, 0), 1);
    const q = new RenditionPolicy(0);
    assert.equal(q.onReport(3000, { nackFraction: 0.3 }, renditions, 0), 1, 'severe: at once');
  });

  it('records but does not decide while a switch is on its way, and settles again from where it lands', () => {
    const p = new RenditionPolicy(0);
    assert.equal(p.onReport(3000, { fractionLost: 0.4 }, renditions, 0), 1);
    assert.equal(p.onReport(5000, { nackFraction: 0.4 }, renditions, 1, true), undefined, 'the old rendition’s loss while switching');
    p.switchLanded(5200);
    assert.equal(p.onReport(6000, { nackFraction: 0.4 }, renditions, 1), undefined, 'settling after the landing');
    assert.equal(p.onReport(6800, { nackFraction: 0.4 }, renditions, 1), 2, 'loss that goes on after the settle time counts');
  });

  it('a manual choice restarts the quiet period', () => {
    const p = new RenditionPolicy(0);
    p.manualSwitch(10_000);
    assert.equal(p.onReport(11_000, { fractionLost: 0 }, renditions, 1), undefined);
    assert.equal(p.onReport(18_100, { fractionLost: 0 }, renditions, 1), 0);
  });
});
