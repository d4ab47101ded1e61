/**
 * Stream → LL-HLS (the "out of the stream" half): cuts CMAF parts and segments from access units, keeps a
 * sliding window of them in memory, and answers blocking playlist and preload-hint requests
 * (RFC 8216bis-17 §6.2.5.2). Segments start at keyframes; parts never exceed PART-TARGET.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { AccessUnit } from '../../core/access-unit.js';
import type { Logger } from '../../core/logger.js';
import type { SessionStart, StreamSink } from '../../core/subscriber.js';
import type { Track } from '../../core/track.js';
import { sameTracks } from '../../core/track.js';
import { VIDEO_CODECS } from '../../media/codecs/codec-table.js';
import type { Fmp4Sample, Fmp4Track } from '../../media/formats/fmp4-writer.js';
import { writeFragment, writeInitSegment } from '../../media/formats/fmp4-writer.js';
import type { MediaPlaylistSnapshot, PlaylistSegment } from './llhls-playlist.js';
import { renderMediaPlaylist } from './llhls-playlist.js';

/**
 * A segment as it completes (the recorder's input, record/recorder.ts): its CMAF bytes, the init segment they
 * need, and where it sits on the timeline. Delivered synchronously, once, in media sequence order.
 */
export interface CompletedSegment {
  msn: number;
  /** Seconds. */
  duration: number;
  /** moof+mdat of every part, concatenated. */
  bytes: Buffer;
  /** Which init segment it needs (a new id after a codec change), and its bytes. */
  initId: number;
  init: Buffer;
  /** The first segment after a publisher's reconnect. */
  discontinuity: boolean;
  /** Wall-clock time of its first picture, epoch ms. */
  programDateTime: number;
}

/** Options of the LL-HLS muxer. */
export interface LlHlsMuxerOptions {
  /** Part target, ms (default 200). Parts never exceed it. */
  partTargetMs: number;
  /** Segment target, ms (default 2000). Segments are cut at the first keyframe past it. */
  segmentTargetMs: number;
  /** Complete segments kept in the playlist (default 10). */
  windowSegments: number;
}

interface Part {
  number: number;
  /** Seconds. */
  duration: number;
  independent: boolean;
  bytes: Buffer | undefined;
}

interface Segment {
  msn: number;
  /** Presentation time of its first picture on the output timeline, 90 kHz ticks. */
  start: number;
  parts: Part[];
  /** Seconds, final once complete. */
  duration: number;
  programDateTime: number;
  discontinuity: boolean;
  initId: number;
  complete: boolean;
  bytes: Buffer | undefined;
  /** SHA-256 of `bytes`, base64, once complete: venue mode's peers check segments they get from each other. */
  sha256: string | undefined;
  /** A segment this rendition has no media for (its transcoder was restarting): EXT-X-GAP keeps numbering aligned. */
  gap: boolean;
}

/** The part being built, chunk by chunk. */
interface BuildingPart {
  /** CMAF chunks written so far (moof+mdat each). */
  chunks: Buffer[];
  bytes: number;
  /** Driving-track ticks and samples written so far. */
  ticks: number;
  samples: number;
  /** Whether its first driving-track sample is a keyframe; undefined before it has one. */
  independent: boolean | undefined;
  /** Told of each chunk as it is written, then `undefined` once the part is complete (or will never be). */
  followers: Set<(chunk: Buffer | undefined) => void>;
}

function newBuildingPart(): BuildingPart {
  return { chunks: [], bytes: 0, ticks: 0, samples: 0, independent: undefined, followers: new Set() };
}

interface OutSample extends Fmp4Sample {
  dts: number;
}

interface TrackState {
  track: Track;
  /** Ticks added to input timestamps so the output timeline continues across publisher sessions. */
  offset: number | undefined;
  /** The last sample, held until the next one gives its duration. */
  held: OutSample | undefined;
  lastDuration: number;
  /** Samples of the part being built not yet written out as a chunk. */
  partSamples: OutSample[];
  /** Decode time after the last written sample (output timeline ticks). */
  endDts: number;
}

interface Waiter {
  ready: () => boolean;
  resolve: (ready: boolean) => void;
  timer: NodeJS.Timeout;
}

/**
 * The output timeline is kept in integer ticks of this timescale (STYLE rule 3): video tracks' own timescale, so
 * a picture's presentation time on it is exact, and renditions (which carry the source's ticks) match pictures
 * by equality, never by a float tolerance.
 */
const TIMELINE_TIMESCALE = 90_000;
/** Where the timeline starts, ticks (10 s): positive so early audio before the first keyframe never goes negative. */
const TIMELINE_ORIGIN = 10 * TIMELINE_TIMESCALE;
/** Longest a segment cut waits for the other tracks to reach it, in presentation time of the driving track, ticks (200 ms). */
const MAX_CUT_WAIT = TIMELINE_TIMESCALE / 5;
/** Parts of this many most recent complete segments are listed and kept. */
const SEGMENTS_WITH_PARTS = 3;

/** `ticks` of a track with timescale `timescale` on the output timeline (90 kHz), rounded to the tick. */
function toTimeline(ticks: number, timescale: number): number {
  return timescale === TIMELINE_TIMESCALE ? ticks : Math.round((ticks * TIMELINE_TIMESCALE) / timescale);
}

/** The LL-HLS state of one stream. A reader of the stream; `close()` is idempotent. */
export class LlHlsMuxer implements StreamSink {
  /** Random per-muxer path element so cached objects of a previous run can never be served for this one. */
  readonly epoch = randomBytes(4).toString('hex');
  private tracks: TrackState[] = [];
  private driver: TrackState | undefined;
  private readonly inits = new Map<number, Buffer>();
  private initId = 0;
  private currentTracks: readonly Track[] = [];
  private segments: Segment[] = [];
  private current: Segment | undefined;
  private nextMsn = 0;
  private nextPartNumber = 0;
  private fragmentSequence = 1;
  private mediaSequence = 0;
  private discontinuitySequence = 0;
  private pendingDiscontinuity = false;
  private waitingForKeyframe = true;
  /** The session's first keyframe's decode time (input, timeline ticks) and where it lands on the output timeline. */
  private sessionFirst: number | undefined;
  private sessionBase = TIMELINE_ORIGIN;
  /** That keyframe's presentation time (input, timeline ticks): other tracks' samples before it are dropped. */
  private sessionStartPts: number | undefined;
  private wallAnchor: { wallMs: number; ticks: number } | undefined;
  private waiters = new Set<Waiter>();
  private _ended = false;
  private _closed = false;
  private maxSegmentDuration = 0;
  private peakBitrate = 0;
  private bytesWritten = 0;
  private secondsWritten = 0;
  /** Driving-track samples in closed parts (the same span as `secondsWritten`). */
  private driverSamples = 0;
  /** Driver-track ticks in the closed parts of the current segment (spares re-adding parts per sample). */
  private segmentPartTicks = 0;
  /** Latest presentation time of a driving-track sample taken into a part, output timeline ticks. */
  private latest = -Infinity;
  /**
   * A segment cut decided at the keyframe presenting at `at` s, waiting for the other tracks (audio) to reach that
   * time, so their samples before it end the old segment and those from it on start the new one (a player's
   * buffered audio and video then end together at the boundary). Driving-track samples wait in `driver`,
   * other tracks' samples from `at` on in `others`.
   */
  private cutPending: { at: number; driver: OutSample[]; others: { state: TrackState; sample: OutSample }[] } | undefined;
  /** The part being built: its chunks so far and the viewers following it (the preload-hinted part, §6.2.6). */
  private building: BuildingPart = newBuildingPart();
  /** Rendered playlist text, full and delta, until the playlist changes (thousands of viewers ask for the same). */
  private rendered: { full?: string; delta?: string; segments?: string } = {};

  constructor(
    readonly streamName: string,
    private readonly options: LlHlsMuxerOptions,
    private readonly log: Logger,
    /**
     * For a rendition: the source's muxer, whose timeline this one follows (a picture has the same media time
     * and program date-time in every rendition, which players need to switch between them).
     */
    private readonly timelineLeader?: LlHlsMuxer,
  ) {}

  /** How input maps to output in this session (output = input − first + base, 90 kHz ticks), once known. */
  get timeline(): { first: number; base: number; wallAnchor: { wallMs: number; ticks: number } | undefined } | undefined {
    return this.sessionFirst === undefined ? undefined : { first: this.sessionFirst, base: this.sessionBase, wallAnchor: this.wallAnchor };
  }

  /**
   * Whether one of this muxer's recent segments starts with the picture presented at `pts` (output timeline,
   * 90 kHz ticks, exactly); undefined when this muxer has not taken that picture yet. Renditions cut their
   * segments where their leader did, so segment N is the same stretch of time in every rendition.
   */
  segmentStartsAt(pts: number): boolean | undefined {
    if (pts > this.latest) return undefined;
    if (this.cutPending?.at === pts || this.current?.start === pts) return true;
    for (let i = this.segments.length - 1; i >= 0; i--) {
      const start = this.segments[i]!.start;
      if (start === pts) return true;
      if (start < pts) break;
    }
    return false;
  }

  /** True once the stream ended (the playlist carries EXT-X-ENDLIST). */
  get ended(): boolean {
    return this._ended;
  }

  /** True once the first part exists, so a playlist has something to play. */
  get ready(): boolean {
    return this.lastPart() !== undefined;
  }

  /** The tracks of the current session. */
  get trackList(): readonly Track[] {
    return this.currentTracks;
  }

  // ---- StreamSink -------------------------------------------------------------------------------------------

  onSessionStart(start: SessionStart): void {
    this.flush();
    if (!sameTracks(start.tracks, this.currentTracks) || this.initId === 0) {
      this.initId++;
      this.inits.set(this.initId, writeInitSegment(start.tracks.map(toFmp4Track)));
      this.currentTracks = start.tracks;
    }
    this.sessionBase = this.timelineEnd();
    this.sessionFirst = undefined;
    this.sessionStartPts = undefined;
    this.tracks = start.tracks.map((track) => ({ track, offset: undefined, held: undefined, lastDuration: 0, partSamples: [], endDts: 0 }));
    this.driver = this.tracks.find((t) => t.track.kind === 'video') ?? this.tracks[0];
    this.waitingForKeyframe = true;
    // Every session after the first one in this playlist begins with a discontinuity.
    this.pendingDiscontinuity = this.segments.length > 0 || this.current !== undefined;
  }

  onAccessUnit(au: AccessUnit): void {
    if (this._ended) return;
    const state = this.tracks.find((t) => t.track.id === au.trackId);
    if (!state || !this.driver) return;
    const ts = state.track.timescale;
    if (this.waitingForKeyframe) {
      if (state !== this.driver || !au.keyframe) return;
      this.waitingForKeyframe = false;
      this.sessionStartPts = toTimeline(au.pts, ts);
    }
    // Other tracks start at the first keyframe's presentation time, whatever order they arrive in: every variant
    // of a group (all fed the same audio) then starts its audio with the very same sample.
    if (state !== this.driver && toTimeline(au.pts, ts) < this.sessionStartPts!) return;
    const leader = this.timelineLeader?.timeline;
    if (this.sessionFirst === undefined && leader) {
      this.sessionFirst = leader.first;
      this.sessionBase = leader.base;
      this.wallAnchor = leader.wallAnchor;
    }
    if (this.sessionFirst === undefined) {
      this.sessionFirst = toTimeline(au.dts, ts);
      // Program date-times follow the wall clock, but never step back behind the previous segment's end.
      if (!this.wallAnchor || this.pendingDiscontinuity) {
        this.wallAnchor = { wallMs: Math.max(Date.now(), this.lastProgramDateTimeEnd()), ticks: this.sessionBase };
      }
    }
    state.offset ??= Math.round((this.sessionBase * ts) / TIMELINE_TIMESCALE) - Math.round((this.sessionFirst * ts) / TIMELINE_TIMESCALE);
    const dts = au.dts + state.offset;
    if (state.held && dts <= state.held.dts) {
      return; // out of order or duplicate: CMAF decode times must increase
    }
    if (dts < 0) return;
    const sample: OutSample = {
      dts,
      duration: 0,
      compositionOffset: au.pts - au.dts,
      keyframe: au.keyframe,
      data: toSampleData(state.track, au),
    };
    if (state.held) {
      this.release(state, dts - state.held.dts);
    }
    state.held = sample;
  }

  onPublisherLost(): void {
    // Close what we have so players can play up to the last frame while the publisher may return.
    this.flush();
  }

  onEnd(reason: string): void {
    this.flush();
    this._ended = true;
    // A part hinted but never started will not be made.
    for (const follower of this.building.followers) follower(undefined);
    this.building.followers.clear();
    this.log.info({ reason }, 'LL-HLS playlist ended');
    this.wakeWaiters();
  }

  // ---- cutting ----------------------------------------------------------------------------------------------

  /** Gives the held sample its duration and adds it to the current part. */
  private release(state: TrackState, duration: number): void {
    const sample = state.held!;
    state.held = undefined;
    const ts = state.track.timescale;
    // Guard against timestamp jumps: a sample lasts at most one second.
    sample.duration = duration > 0 && duration <= ts ? duration : state.lastDuration || Math.round(ts / 30);
    state.lastDuration = sample.duration;
    if (state === this.driver) this.addDriverSample(sample);
    else if (this.cutPending && toTimeline(sample.dts, ts) >= this.cutPending.at) {
      this.cutPending.others.push({ state, sample });
      this.finishCut(); // this track reached the boundary
    } else if (this.current) state.partSamples.push(sample);
    state.endDts = sample.dts + sample.duration;
  }

  /** Closes the old segment and starts the new one for a pending cut, then replays what waited for it. */
  private finishCut(): void {
    const cut = this.cutPending;
    if (!cut) return;
    this.cutPending = undefined;
    this.closePart();
    this.closeSegment();
    this.startSegment(cut.at);
    for (const o of cut.others) o.state.partSamples.push(o.sample);
    this.driver!.partSamples.push(cut.driver[0]!);
    this.flushChunk();
    for (const sample of cut.driver.slice(1)) this.addDriverSample(sample);
  }

  private addDriverSample(sample: OutSample): void {
    const driver = this.driver!;
    const ts = driver.track.timescale;
    const partTicks = (this.options.partTargetMs * ts) / 1000;
    const segmentTicks = (this.options.segmentTargetMs * ts) / 1000;
    const segmentSoFar = this.current ? this.segmentPartTicks + this.building.ticks + sum(driver.partSamples) : 0;
    const presentation = toTimeline(sample.dts + sample.compositionOffset, ts);
    if (this.cutPending) {
      this.cutPending.driver.push(sample);
      this.latest = Math.max(this.latest, presentation);
      // Other tracks that do not reach the boundary soon (a gap in the audio) do not hold the video back.
      if (presentation - this.cutPending.at > MAX_CUT_WAIT) this.finishCut();
      return;
    }
    if (!this.current) {
      if (!sample.keyframe) return;
      this.startSegment(presentation);
    } else if (sample.keyframe && this.cutsSegment(presentation, segmentSoFar + sample.duration / 2 >= segmentTicks)) {
      if (this.tracks.some((t) => t !== driver)) {
        this.cutPending = { at: presentation, driver: [sample], others: [] };
        this.latest = Math.max(this.latest, presentation);
        return;
      }
      this.closePart();
      this.closeSegment();
      this.startSegment(presentation);
    } else if (sample.keyframe || this.building.ticks + sum(driver.partSamples) + sample.duration > partTicks + 1) {
      // Every keyframe starts a part: INDEPENDENT=YES, where a player switching renditions can begin.
      this.closePart();
    }
    driver.partSamples.push(sample);
    this.latest = Math.max(this.latest, presentation);
    this.flushChunk();
  }

  /**
   * Writes the samples taken since the last chunk as one CMAF chunk (moof+mdat, ISO/IEC 23000-19 §7.3.2.3) of the
   * part being built, and hands it to the viewers following that part: a part's bytes leave as each picture is
   * taken, not when the part is complete.
   */
  private flushChunk(): void {
    const driver = this.driver;
    if (!this.current || !driver || driver.partSamples.length === 0) return;
    const part = this.building;
    part.independent ??= driver.partSamples[0]!.keyframe;
    part.ticks += sum(driver.partSamples);
    part.samples += driver.partSamples.length;
    this.writeChunk();
  }

  private writeChunk(): void {
    const runs = this.tracks
      .filter((t) => t.partSamples.length > 0)
      .map((t) => ({ trackId: t.track.id, baseDecodeTime: t.partSamples[0]!.dts, samples: t.partSamples }));
    if (runs.length === 0) return;
    const chunk = writeFragment(this.fragmentSequence++, runs);
    for (const t of this.tracks) t.partSamples = [];
    this.building.chunks.push(chunk);
    this.building.bytes += chunk.length;
    for (const follower of this.building.followers) follower(chunk);
  }

  /**
   * Whether a keyframe at `presentation` (timeline ticks) starts a new segment: for a rendition, where its leader started one
   * (its extra keyframes only start parts); on its own, or when the leader has not got there, once the segment
   * reached its target (`due`). A rendition's segment never exceeds twice the target or 1.5× the leader's longest.
   */
  private cutsSegment(presentation: number, due: boolean): boolean {
    const leader = this.timelineLeader;
    const aligned = leader?.segmentStartsAt(presentation);
    if (aligned === undefined) return due;
    // Never grow without bound if the leader's cut is not among this one's keyframes (a fault): cut on our own.
    const limit = Math.round(Math.max((2 * this.options.segmentTargetMs) / 1000, 1.5 * leader!.maxSegmentDuration) * TIMELINE_TIMESCALE);
    return aligned || presentation - this.current!.start >= limit;
  }

  /** `start`: presentation time of the first picture, timeline ticks (program date-times follow it, equal across renditions). */
  private startSegment(start: number): void {
    this.alignWithLeader(start);
    const anchor = this.wallAnchor ?? { wallMs: Date.now(), ticks: start };
    this.segmentPartTicks = 0;
    this.current = {
      msn: this.nextMsn++,
      start,
      parts: [],
      duration: 0,
      programDateTime: anchor.wallMs + Math.round(((start - anchor.ticks) * 1000) / TIMELINE_TIMESCALE),
      discontinuity: this.pendingDiscontinuity,
      initId: this.initId,
      complete: false,
      bytes: undefined,
      sha256: undefined,
      gap: false,
    };
    this.pendingDiscontinuity = false;
  }

  private closePart(): void {
    const seg = this.current;
    const driver = this.driver;
    if (!seg || !driver || (this.building.samples === 0 && driver.partSamples.length === 0)) return;
    this.flushChunk();
    this.writeChunk(); // samples of the other tracks after the last picture
    const part = this.building;
    this.building = newBuildingPart();
    const bytes = part.chunks.length === 1 ? part.chunks[0]! : Buffer.concat(part.chunks, part.bytes);
    this.driverSamples += part.samples;
    this.segmentPartTicks += part.ticks;
    const duration = part.ticks / driver.track.timescale;
    seg.parts.push({ number: this.nextPartNumber++, duration, independent: part.independent ?? false, bytes });
    this.bytesWritten += bytes.length;
    this.secondsWritten += duration;
    for (const follower of part.followers) follower(undefined);
    this.wakeWaiters();
  }

  private closeSegment(): void {
    const seg = this.current;
    if (!seg) return;
    this.current = undefined;
    if (seg.parts.length === 0) {
      // Nothing was written: its number is the next segment's (numbers in a playlist follow one another).
      if (seg.msn === this.nextMsn - 1) this.nextMsn = seg.msn;
      return;
    }
    seg.complete = true;
    seg.duration = seg.parts.reduce((n, p) => n + p.duration, 0);
    seg.bytes = Buffer.concat(seg.parts.map((p) => p.bytes!));
    seg.sha256 = createHash('sha256').update(seg.bytes).digest('base64');
    this.maxSegmentDuration = Math.max(this.maxSegmentDuration, seg.duration);
    // BANDWIDTH is the peak segment bitrate (RFC 8216bis §4.4.6.2), but a segment cut short (its publisher or
    // transcoder restarted: a keyframe and a few pictures) says nothing about the rate: it would announce many
    // times the real one and steer players away from this variant. Short segments count toward the average only.
    if (seg.duration * 1000 >= this.options.segmentTargetMs / 2) this.peakBitrate = Math.max(this.peakBitrate, (seg.bytes.length * 8) / seg.duration);
    this.pushSegment(seg);
    this.wakeWaiters();
    const init = this.inits.get(seg.initId);
    if (this.segmentCompleted && init) {
      try {
        this.segmentCompleted({ msn: seg.msn, duration: seg.duration, bytes: seg.bytes, initId: seg.initId, init, discontinuity: seg.discontinuity, programDateTime: seg.programDateTime });
      } catch (err) {
        this.log.error({ err }, 'segment listener threw');
      }
    }
  }

  /** Told of every segment as it completes (the recorder). Must not throw. */
  segmentCompleted: ((segment: CompletedSegment) => void) | undefined;

  /** Adds a complete segment to the window, dropping the oldest beyond it. */
  private pushSegment(seg: Segment): void {
    this.segments.push(seg);
    while (this.segments.length > this.options.windowSegments) {
      const old = this.segments.shift()!;
      this.mediaSequence = old.msn + 1;
      if (this.segments[0]?.discontinuity) this.discontinuitySequence++;
    }
    // Parts of older segments are no longer listed; free their bytes (the segment still holds them).
    for (const s of this.segments.slice(0, -SEGMENTS_WITH_PARTS)) for (const p of s.parts) p.bytes = undefined;
  }

  /**
   * Which of this muxer's segments holds presentation time `pts` (output timeline ticks), with its bounds:
   * the one that starts at it or the last one starting before it; undefined when `pts` is older than the window.
   */
  segmentAt(pts: number): { msn: number; start: number; duration: number; programDateTime: number } | undefined {
    const all = this.current ? [...this.segments, this.current] : this.segments;
    for (let i = all.length - 1; i >= 0; i--) {
      const seg = all[i]!;
      if (seg.gap || seg.start > pts) continue;
      return { msn: seg.msn, start: seg.start, duration: seg.duration, programDateTime: seg.programDateTime };
    }
    return undefined;
  }

  /**
   * A rendition starting a segment at `start` takes its leader's number for that stretch of time: when its
   * transcoder restarted, the leader went on cutting segments it has no media for; they are listed as gaps
   * (EXT-X-GAP, RFC 8216bis §4.4.4.7) with the leader's durations, so segment N is the same time everywhere and a
   * player switching renditions by number lands on the same picture.
   */
  private alignWithLeader(start: number): void {
    const leader = this.timelineLeader;
    const target = leader?.segmentAt(start)?.msn;
    if (!leader || target === undefined || target <= this.nextMsn) return;
    for (let msn = this.nextMsn; msn < target; msn++) {
      const theirs = leader.segmentByMsn(msn);
      this.pushSegment({
        msn,
        start: theirs?.start ?? start,
        parts: [],
        duration: theirs?.duration || this.options.segmentTargetMs / 1000,
        programDateTime: theirs?.programDateTime ?? Date.now(),
        discontinuity: false,
        initId: this.initId,
        complete: true,
        bytes: undefined,
        sha256: undefined,
        gap: true,
      });
    }
    this.nextMsn = target;
  }

  /** The leader-side facts of segment `msn`, if it is still in the window. */
  segmentByMsn(msn: number): { start: number; duration: number; programDateTime: number } | undefined {
    const seg = this.segments.find((x) => x.msn === msn) ?? (this.current?.msn === msn ? this.current : undefined);
    return seg && { start: seg.start, duration: seg.duration, programDateTime: seg.programDateTime };
  }

  /** Writes out everything held (the last sample of each track gets its previous duration). */
  private flush(): void {
    for (const t of this.tracks) if (t.held) this.release(t, t.lastDuration);
    this.finishCut();
    this.closePart();
    this.closeSegment();
  }

  private lastProgramDateTimeEnd(): number {
    const last = this.segments[this.segments.length - 1];
    return last ? last.programDateTime + Math.round(last.duration * 1000) : 0;
  }

  /** Where the timeline ends now (ticks): a new session continues from here. */
  private timelineEnd(): number {
    const ends = this.tracks.map((t) => toTimeline(t.endDts, t.track.timescale));
    return Math.max(this.sessionBase, ...ends);
  }

  // ---- serving ----------------------------------------------------------------------------------------------

  /** The init segment by id, if still known. */
  init(id: number): Buffer | undefined {
    return this.inits.get(id);
  }

  /** A complete segment's bytes by media sequence number. */
  segment(msn: number): Buffer | undefined {
    return this.segments.find((s) => s.msn === msn)?.bytes;
  }

  /**
   * SHA-256 (base64) of every complete segment in the window, by its URI as the media playlist lists it
   * (`<epoch>/seg<msn>.m4s`): what a venue-mode player checks a segment from another viewer against.
   */
  segmentHashes(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const s of this.segments) if (s.sha256) out[`${this.epoch}/seg${s.msn}.m4s`] = s.sha256;
    return out;
  }

  /** A part's bytes by its global part number. */
  part(number: number): Buffer | undefined {
    for (const seg of [this.current, ...this.segments.slice(-SEGMENTS_WITH_PARTS - 1)]) {
      const p = seg?.parts.find((x) => x.number === number);
      if (p) return p.bytes;
    }
    return undefined;
  }

  /**
   * Follows part `number` while it is being built (the preload-hinted part, RFC 8216bis §6.2.6): `follower` gets
   * every CMAF chunk written from now on, then `undefined` once the part is complete or never will be (the muxer
   * closed). Returns the chunks written so far and a function that stops following; undefined when `number` is not
   * the part being built (it is complete: use `part()`; or it is further ahead).
   */
  follow(number: number, follower: (chunk: Buffer | undefined) => void): { chunks: readonly Buffer[]; stop: () => void } | undefined {
    if (number !== this.nextPartNumber || this._ended) return undefined;
    const part = this.building;
    part.followers.add(follower);
    return { chunks: [...part.chunks], stop: () => part.followers.delete(follower) };
  }

  /** The number the next part will get (what EXT-X-PRELOAD-HINT names). */
  get nextPart(): number {
    return this.nextPartNumber;
  }

  /** The last part that exists, as (msn, index within its segment); undefined before the first part. */
  lastPart(): { msn: number; index: number } | undefined {
    if (this.current && this.current.parts.length > 0) return { msn: this.current.msn, index: this.current.parts.length - 1 };
    const last = this.segments[this.segments.length - 1];
    return last ? { msn: last.msn, index: last.parts.length - 1 } : undefined;
  }

  /** MSN of the newest segment in the playlist (the one being built, if any). */
  get lastMsn(): number {
    return this.nextMsn - 1;
  }

  /**
   * True when the playlist holds part `part` of segment `msn` or anything later (§6.2.5.2); with `part`
   * undefined, when segment `msn` is complete. A part index past the end of a complete segment means the next
   * segment's first part: any part of a later segment answers it, which the comparison of `msn` below covers.
   */
  has(msn: number, part: number | undefined): boolean {
    if (this._ended) return true;
    if (part === undefined) return msn <= (this.segments[this.segments.length - 1]?.msn ?? -1);
    const last = this.lastPart();
    if (!last) return false;
    return last.msn > msn || (last.msn === msn && last.index >= part);
  }

  /**
   * Resolves true when `ready()` holds, or false after `timeoutMs`, when `signal` aborts or when the muxer
   * closes. Used for blocking playlist reload and preload-hinted parts.
   */
  waitFor(ready: () => boolean, timeoutMs: number, signal?: AbortSignal): Promise<boolean> {
    if (ready()) return Promise.resolve(true);
    if (this._closed || signal?.aborted) return Promise.resolve(false);
    return new Promise((resolve) => {
      const finish = (): void => {
        clearTimeout(waiter.timer);
        this.waiters.delete(waiter);
        resolve(false);
      };
      const waiter: Waiter = { ready, resolve, timer: setTimeout(finish, timeoutMs) };
      this.waiters.add(waiter);
      // A viewer that hangs up stops waiting at once, so abandoned requests do not pile up.
      signal?.addEventListener('abort', finish, { once: true });
    });
  }

  /** Counts changes to the playlist (cached renderings of it are current while it stays the same). */
  get version(): number {
    return this._version;
  }

  private _version = 0;

  private wakeWaiters(): void {
    // Every change to the playlist passes through here.
    this.rendered = {};
    this._version++;
    for (const w of this.waiters) {
      if (w.ready()) {
        clearTimeout(w.timer);
        this.waiters.delete(w);
        w.resolve(true);
      }
    }
  }

  /** Target duration, seconds: the configured target or the longest segment seen, rounded (§4.4.3.1). */
  get targetDuration(): number {
    return Math.max(Math.round(this.options.segmentTargetMs / 1000), Math.round(this.maxSegmentDuration), 1);
  }

  /** The playlist as it stands. */
  snapshot(): MediaPlaylistSnapshot {
    const partTarget = this.options.partTargetMs / 1000;
    const withParts = new Set(this.segments.slice(-SEGMENTS_WITH_PARTS).map((s) => s.msn));
    const toPlaylist = (s: Segment): PlaylistSegment => ({
      msn: s.msn,
      uri: `${this.epoch}/seg${s.msn}.m4s`,
      duration: s.duration,
      programDateTime: s.programDateTime,
      discontinuity: s.discontinuity,
      mapUri: `${this.epoch}/init${s.initId}.mp4`,
      parts:
        !s.complete || withParts.has(s.msn)
          ? s.parts.map((p) => ({ uri: `${this.epoch}/part${p.number}.m4s`, duration: p.duration, independent: p.independent }))
          : undefined,
      complete: s.complete,
      gap: s.gap,
    });
    const segments = this.segments.map(toPlaylist);
    if (this.current) segments.push(toPlaylist(this.current));
    return {
      targetDuration: this.targetDuration,
      partTarget,
      // The least §4.4.3.8 allows: a player starts this far behind the live edge and (hls.js by default) stays there.
      // Parts are announced the moment they are complete and the hinted one streams as it is made, so two parts of
      // buffer are enough on a steady network (bench/glass-to-glass.ts: 1 stall in 5 minutes on a saturated box).
      partHoldBack: partTarget * 2,
      mediaSequence: this.mediaSequence,
      discontinuitySequence: this.discontinuitySequence,
      segments,
      preloadHintUri: this._ended ? undefined : `${this.epoch}/part${this.nextPartNumber}.m4s`,
      ended: this._ended,
    };
  }

  /**
   * The media playlist text as it stands; `skip` renders the delta update, `segmentsOnly` the plain playlist of
   * venue mode (complete segments only). Cached until the next change.
   */
  playlist(skip: boolean, segmentsOnly = false): string {
    const key = segmentsOnly ? 'segments' : skip ? 'delta' : 'full';
    return (this.rendered[key] ??= renderMediaPlaylist(this.snapshot(), { skip, segmentsOnly }));
  }

  /** Peak and average bits/s over the segments written so far (for BANDWIDTH); undefined before any. */
  bandwidth(): { peak: number; average: number } | undefined {
    if (this.secondsWritten <= 0) return undefined;
    const average = (this.bytesWritten * 8) / this.secondsWritten;
    // Before the first complete segment, the parts so far are the best estimate of the peak.
    return { peak: Math.max(this.peakBitrate, average), average };
  }

  /** Frames per second of the driving track so far, for FRAME-RATE; undefined before any segment. */
  frameRate(): number | undefined {
    return this.secondsWritten > 0 && this.driver?.track.kind === 'video' ? this.driverSamples / this.secondsWritten : undefined;
  }

  /** Releases every waiter and frees memory. Idempotent. */
  close(): void {
    if (this._closed) return;
    this._closed = true;
    this._ended = true;
    for (const w of this.waiters) {
      clearTimeout(w.timer);
      w.resolve(false);
    }
    this.waiters.clear();
    for (const follower of this.building.followers) follower(undefined);
    this.building = newBuildingPart();
    this.segments = [];
    this.current = undefined;
  }

  /** Counters for stats. */
  getStats(): { segments: number; lastMsn: number; parts: number; waiters: number; targetDuration: number } {
    return {
      segments: this.segments.length,
      lastMsn: this.lastMsn,
      parts: this.nextPartNumber,
      waiters: this.waiters.size,
      targetDuration: this.targetDuration,
    };
  }
}

function sum(samples: readonly OutSample[]): number {
  let n = 0;
  for (const s of samples) n += s.duration;
  return n;
}

/** Length-prefixes NAL units (4 bytes, ISO/IEC 14496-15 §4.3) or passes an audio frame through. */
function toSampleData(track: Track, au: AccessUnit): Uint8Array[] {
  if (track.kind === 'audio') return au.payload;
  const out: Uint8Array[] = [];
  for (const nal of au.payload) {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(nal.length);
    out.push(len, nal);
  }
  return out;
}

function toFmp4Track(track: Track): Fmp4Track {
  if (track.kind === 'video') {
    const codec = VIDEO_CODECS[track.codec];
    return {
      kind: 'video',
      id: track.id,
      timescale: track.timescale,
      sampleEntry: codec.sampleEntry,
      configBox: codec.configBox,
      config: withFourByteLengths(track.codec, track.config),
      width: track.info.width,
      height: track.info.height,
    };
  }
  return {
    kind: 'audio',
    id: track.id,
    timescale: track.timescale,
    sampleEntry: 'mp4a',
    config: track.config,
    sampleRate: track.info.sampleRate,
    channels: track.info.channels,
  };
}

/**
 * Samples are always written with 4-byte NAL lengths, so the record must say lengthSizeMinusOne = 3
 * (avcC byte 4, ISO/IEC 14496-15 §5.3.3.1; hvcC byte 21, §8.3.3.1).
 */
function withFourByteLengths(codec: Track['codec'], record: Uint8Array): Uint8Array {
  const out = record.slice();
  const index = codec === 'h265' ? 21 : 4;
  out[index] = out[index]! | 0x03;
  return out;
}
