/**
 * Re-encodes H.264 without B-frames, once per stream, for WebRTC viewers (WebRTC has no decode timestamps, so a
 * stream with reordered frames stutters; issue 3). ffmpeg reads FLV on stdin and writes FLV on stdout with
 * timestamps copied through, x264 zerolatency, a keyframe every second. The child ends when its
 * stdin closes, so it cannot outlive Glasscast.
 */
import type { AccessUnit } from '../core/access-unit.js';
import type { Logger } from '../core/logger.js';
import type { VideoTrack } from '../core/track.js';
import { joinLengthPrefixed, splitLengthPrefixed } from '../media/codecs/h264.js';
import { VIDEO_CODECS } from '../media/codecs/codec-table.js';
import { flvAvcBody, FlvStreamReader, parseFlvVideo, writeFlvHeader, writeFlvTag } from '../media/formats/flv.js';
import { spawnFfmpegPipe } from './ffmpeg-path.js';

/** What comes out: access units in presentation order (pts = dts), and the new decoder configuration. */
export interface ReencodedOutput {
  onConfig(record: Uint8Array): void;
  onAccessUnit(au: AccessUnit): void;
}

/** A running re-encoder; `close()` is idempotent and kills the child. */
export interface VideoReencoder {
  push(au: AccessUnit): void;
  close(): void;
}

/** Creates re-encoders (what the WHEP egress is given in app.ts). */
export class FfmpegH264Reencoder {
  constructor(
    private readonly log: Logger,
    /** Target bits/s. */
    private readonly bitrate = 2_500_000,
  ) {}

  /** Starts ffmpeg for `track`; `output` receives the re-encoded frames. */
  create(track: VideoTrack, output: ReencodedOutput): VideoReencoder | undefined {
    if (track.codec !== 'h264') return undefined;
    const ff = spawnFfmpegPipe(
      [
        // Probe as little as possible; `-fflags nobuffer` must not be used here: it leaves the FLV demuxer
        // without a first DTS and ffmpeg then holds every frame ("cur_dts is invalid").
        '-probesize', '32', '-analyzeduration', '0',
        '-f', 'flv', '-i', 'pipe:0',
        '-an', '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-profile:v', 'baseline',
        '-b:v', String(this.bitrate), '-maxrate', String(this.bitrate), '-bufsize', String(this.bitrate),
        // A keyframe every second bounds what a joining viewer must receive before its first picture.
        '-force_key_frames', 'expr:gte(t,n_forced*1)', '-fps_mode', 'passthrough', '-copyts',
        '-f', 'flv', '-flvflags', 'no_duration_filesize', '-flush_packets', '1', 'pipe:1',
      ],
      this.log,
      'H.264 re-encoder',
    );
    let nalLengthSize = 4;
    /** Stream-timeline ticks of the first input frame: FLV carries ms from 0, so outputs are shifted back by it. */
    let base: number | undefined;
    const reader = new FlvStreamReader();
    ff.child.stdout.on('data', (data: Buffer) => {
      try {
        for (const tag of reader.push(data)) {
          if (tag.tagType !== 9) continue;
          const p = parseFlvVideo(tag.body);
          if (p.type === 'config') {
            nalLengthSize = VIDEO_CODECS.h264.parseConfig(p.record).nalLengthSize;
            output.onConfig(p.record);
          } else if (p.type === 'frame') {
            const ticks = (base ?? 0) + (tag.timestamp + p.compositionTime) * 90;
            output.onAccessUnit({ trackId: track.id, dts: ticks, pts: ticks, keyframe: p.keyframe, payload: splitLengthPrefixed(p.data, nalLengthSize).map((n) => Buffer.from(n)) });
          }
        }
      } catch (err) {
        this.log.warn({ err }, 'bad FLV from the H.264 re-encoder');
        ff.stop();
      }
    });
    ff.write(writeFlvHeader(true, false));
    ff.write(writeFlvTag(9, 0, flvAvcBody(0, true, 0, track.config)));
    const lengthSize = track.info.nalLengthSize;
    return {
      push(au) {
        if (!ff.alive) return;
        // FLV timestamps are ms from 0: keep the input's offset so output ticks map back to the stream's timeline.
        base ??= au.dts;
        const dtsMs = Math.round((au.dts - base) / 90);
        const cts = Math.round((au.pts - au.dts) / 90);
        const data = joinLengthPrefixed(au.payload, lengthSize);
        ff.write(writeFlvTag(9, dtsMs, flvAvcBody(1, au.keyframe, cts, data)));
      },
      close: () => ff.stop(),
    };
  }
}
