/**
 * Reads one stream's video joined with its group's audio in a chosen codec, as one stream (after MediaMTX's
 * readers that take each track from wherever it is made). An LL-HLS variant or a recording needs video and AAC
 * together: the video comes from the source or a ladder rung, the AAC from the source or from the group's one
 * derived audio rendition, so every variant carries the very same audio samples.
 *
 * The two are merged in presentation order, whichever comes late: a rung's pictures come out of the transcoder
 * after the source's audio, and bridged audio (Opus → AAC) comes out after the source's pictures. Each audio
 * frame goes out just before the first picture presented after it, and a picture waits until the audio has
 * reached it (at most {@link MAX_VIDEO_WAIT_MS}, and not at all while the audio is silent for longer), so a
 * muxer cutting segments at keyframes finds each segment's audio next to its video. The last seconds of audio are
 * kept while the video is not there yet (a rung starting or restarting), so every variant starts with the same
 * sample. When the video stream already carries audio in the wanted codec, its events pass through untouched.
 */
import type { AccessUnit } from './access-unit.js';
import type { Stream } from './stream.js';
import type { SessionStart, StreamSink, Subscriber, SubscriberOptions } from './subscriber.js';
import type { AudioTrack, Track, VideoTrack } from './track.js';

/** Audio frames held while the video catches up (about 5 s of 48 kHz AAC); older ones are dropped. */
const MAX_HELD_AUDIO = 240;
/** Longest a picture waits for the audio to reach it, ms (wall clock). */
export const MAX_VIDEO_WAIT_MS = 500;
/** Pictures held waiting for audio, at most (a bound if the audio stalls while pictures keep coming). */
const MAX_HELD_VIDEO = 300;

/** A reader of `video`'s picture plus the audio `audioFor()` names. `close()` is idempotent. */
export class JoinedReader {
  private readonly videoSubscriber: Subscriber;
  private audioSubscriber: Subscriber | undefined;
  private audioStream: Stream | undefined;
  /** How the current session is read: everything from the video stream, or video + audio joined. */
  private mode: 'passthrough' | 'joined' | 'idle' = 'idle';
  private videoTrack: VideoTrack | undefined;
  /** The joined audio track (its id may differ from the audio stream's to stay unique) and the source id. */
  private audioTrack: { track: AudioTrack; sourceId: number } | undefined;
  private heldAudio: AccessUnit[] = [];
  private heldVideo: { au: AccessUnit; at: number }[] = [];
  /** Latest video presentation time passed on this session, 90 kHz ticks. */
  private videoPts = -Infinity;
  /** Latest audio time received, as 90 kHz ticks × audio timescale (exact), and when (wall ms). */
  private audioReach = -Infinity;
  private audioAt = 0;
  private closed = false;

  constructor(
    private readonly video: Stream,
    /** The stream carrying the wanted audio now (e.g. `source.audioFor('aac')`), or undefined for none. */
    private readonly audioFor: () => Stream | undefined,
    private readonly sink: StreamSink,
    private readonly options: SubscriberOptions = {},
  ) {
    this.videoSubscriber = video.subscribe(
      {
        onSessionStart: (s) => this.onVideoStart(s),
        onAccessUnit: (au) => this.onVideo(au),
        onPublisherLost: () => {
          this.flushVideo();
          this.mode = 'idle';
          this.sink.onPublisherLost();
        },
        onEnd: (reason) => {
          this.flushVideo();
          this.close();
          this.sink.onEnd(reason);
        },
      },
      options,
    );
  }

  /** The video reader (its dropped-frame counters are the reader's). */
  get subscriber(): Subscriber {
    return this.videoSubscriber;
  }

  private onVideoStart(start: SessionStart): void {
    this.videoPts = -Infinity;
    this.heldVideo = [];
    const audioStream = this.audioFor();
    if (audioStream === this.video) {
      this.mode = 'passthrough';
      this.sink.onSessionStart(start);
      return;
    }
    this.mode = 'joined';
    this.videoTrack = start.tracks.find((t): t is VideoTrack => t.kind === 'video');
    this.follow(audioStream);
    const audio = audioStream?.tracks.find((t): t is AudioTrack => t.kind === 'audio');
    // Track ids stay unique within the joined stream (fMP4 track_IDs).
    this.audioTrack = audio && { track: audio.id === this.videoTrack?.id ? { ...audio, id: audio.id + 1 } : audio, sourceId: audio.id };
    const tracks: Track[] = [];
    if (this.videoTrack) tracks.push(this.videoTrack);
    if (this.audioTrack) tracks.push(this.audioTrack.track);
    this.sink.onSessionStart({ ...start, tracks });
  }

  /** Subscribes to `stream`'s audio (once; again if the group's audio moved to another stream). */
  private follow(stream: Stream | undefined): void {
    if (stream === this.audioStream && this.audioSubscriber) return;
    this.audioSubscriber?.close();
    this.audioSubscriber = undefined;
    this.audioStream = stream;
    if (!stream || stream.state === 'ended') return;
    this.audioSubscriber = stream.subscribe(
      {
        onSessionStart: () => undefined,
        onAccessUnit: (au) => this.onAudio(au),
        onPublisherLost: () => undefined,
        onEnd: () => {
          this.audioSubscriber = undefined;
          this.audioStream = undefined;
        },
      },
      { ...this.options, label: `${this.options.label ?? 'reader'}-audio` },
    );
  }

  private onVideo(au: AccessUnit): void {
    if (this.mode === 'passthrough') {
      this.sink.onAccessUnit(au);
      return;
    }
    if (this.mode !== 'joined' || au.trackId !== this.videoTrack?.id) return;
    this.heldVideo.push({ au, at: Date.now() });
    this.pump();
  }

  private onAudio(au: AccessUnit): void {
    if (this.audioTrack && au.trackId !== this.audioTrack.sourceId) return;
    this.audioReach = Math.max(this.audioReach, au.dts * 90_000);
    this.audioAt = Date.now();
    this.heldAudio.push(au);
    if (this.heldAudio.length > MAX_HELD_AUDIO) this.heldAudio.shift();
    if (this.mode === 'joined') this.pump();
  }

  /** True when the held audio reaches `pts` (90 kHz), or the audio is too late or silent to wait for. */
  private audioCovers(pts: number, waitingSince: number, now: number): boolean {
    const audio = this.audioTrack?.track;
    if (!audio) return true;
    if (this.audioReach >= pts * audio.timescale) return true;
    return now - waitingSince > MAX_VIDEO_WAIT_MS || now - this.audioAt > MAX_VIDEO_WAIT_MS;
  }

  /** Passes on, in presentation order, what both tracks allow (integer compares across timescales). */
  private pump(): void {
    const audio = this.audioTrack;
    if (!this.videoTrack) {
      // Audio only: nothing to wait for.
      for (const au of this.heldAudio.splice(0)) this.emitAudio(au);
      return;
    }
    const now = Date.now();
    for (;;) {
      const next = this.heldVideo[0];
      if (next && (this.audioCovers(next.au.pts, next.at, now) || this.heldVideo.length > MAX_HELD_VIDEO)) {
        this.heldVideo.shift();
        if (next.au.pts > this.videoPts) this.videoPts = next.au.pts;
        this.releaseAudio();
        this.sink.onAccessUnit(next.au);
        continue;
      }
      break;
    }
    if (!audio) this.heldAudio = [];
  }

  /** Passes on the held audio that plays before the latest picture passed on. */
  private releaseAudio(): void {
    const audio = this.audioTrack;
    if (!audio) return;
    let n = 0;
    while (n < this.heldAudio.length && this.heldAudio[n]!.dts * 90_000 < this.videoPts * audio.track.timescale) n++;
    for (const au of this.heldAudio.splice(0, n)) this.emitAudio(au);
  }

  private emitAudio(au: AccessUnit): void {
    const audio = this.audioTrack;
    if (!audio || au.trackId !== audio.sourceId) return;
    this.sink.onAccessUnit(audio.track.id === au.trackId ? au : { ...au, trackId: audio.track.id });
  }

  /** Passes on every held picture (the video session is ending). */
  private flushVideo(): void {
    if (this.mode !== 'joined') return;
    for (const { au } of this.heldVideo.splice(0)) {
      if (au.pts > this.videoPts) this.videoPts = au.pts;
      this.releaseAudio();
      this.sink.onAccessUnit(au);
    }
  }

  /** Stops reading both streams. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.videoSubscriber.close();
    this.audioSubscriber?.close();
    this.audioSubscriber = undefined;
    this.heldAudio = [];
    this.heldVideo = [];
  }
}
