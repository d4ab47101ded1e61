/**
 * Reads one stream's video joined with its group's audio in a chosen codec, as one stream (after MediaMTX's
 * readers that take each track from wherever it is made). An LL-HLS variant or a recording needs video and AAC
 * together: the video comes from the source or a ladder rung, the AAC from the source or from the group's one
 * derived audio rendition, so every variant carries the very same audio samples.
 *
 * Audio reaches the sink just before the first picture presented after it (its time < that picture's PTS),
 * whatever order the two streams deliver in: a rung's pictures come out of the transcoder later than the
 * source's audio, and a muxer that cuts segments at keyframes then finds each segment's audio next to its video.
 * When the video stream already carries audio in the wanted codec, its events pass through untouched.
 */
import type { AccessUnit } from './access-unit.js';
import type { Stream } from './stream.js';
import type { SessionStart, StreamSink, Subscriber, SubscriberOptions } from './subscriber.js';
import type { AudioTrack, Track, VideoTrack } from './track.js';

/** Audio frames held while the video catches up (about 5 s of 48 kHz AAC); older ones are dropped. */
const MAX_HELD_AUDIO = 240;

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
  private held: AccessUnit[] = [];
  /** Latest video presentation time seen this session, 90 kHz ticks. */
  private videoPts = -Infinity;
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
          this.mode = 'idle';
          this.held = [];
          this.sink.onPublisherLost();
        },
        onEnd: (reason) => {
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
    this.held = [];
    this.videoPts = -Infinity;
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
    if (au.pts > this.videoPts) this.videoPts = au.pts;
    this.release();
    this.sink.onAccessUnit(au);
  }

  private onAudio(au: AccessUnit): void {
    const audio = this.audioTrack;
    if (this.mode !== 'joined' || !audio || au.trackId !== audio.sourceId) return;
    const out = audio.track.id === au.trackId ? au : { ...au, trackId: audio.track.id };
    if (!this.videoTrack) {
      this.sink.onAccessUnit(out); // audio only: nothing to wait for
      return;
    }
    this.held.push(out);
    if (this.held.length > MAX_HELD_AUDIO) this.held.shift();
    this.release();
  }

  /** Passes on the held audio that plays before the latest picture (integer compare across timescales). */
  private release(): void {
    const audio = this.audioTrack?.track;
    if (!audio) return;
    let n = 0;
    while (n < this.held.length && this.held[n]!.dts * 90_000 < this.videoPts * audio.timescale) n++;
    if (n === 0) return;
    const out = this.held.splice(0, n);
    for (const au of out) this.sink.onAccessUnit(au);
  }

  /** Stops reading both streams. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.videoSubscriber.close();
    this.audioSubscriber?.close();
    this.audioSubscriber = undefined;
    this.held = [];
  }
}
