/**
 * Automatic rendition choice for one WebRTC viewer (issue 5, "WebRTC ABR"), from what its receiver reports:
 * the fraction of packets lost (RTCP RR, RFC 3550 §6.4.2), the share of sent packets it NACKs (RFC 4585
 * §6.2.1; counted by the caller over short windows: it reacts within a round trip, where RRs come about once a
 * second) and the receiver's bandwidth estimate (REMB, draft-alvestrand-rmcat-remb-03). Pure: reports and a
 * clock in, a wanted rendition out.
 *
 * - Down at once when loss stays high (two RRs or two NACK windows over 10 %, or one over 25 %) or the estimate
 *   falls below what the current rendition needs; the target is the best rendition that fits the estimate with headroom.
 * - While a switch is on its way (it lands at the new rendition's next keyframe) and for a settle time after it
 *   lands, reports are only recorded: loss of the old rendition must not push the new one further down.
 * - Up one rendition at a time after a quiet period (no loss, estimate not below the current rendition). A receiver's
 *   REMB is capped near 1.5× what it receives, so it cannot prove room for a rendition twice as big: going up is a
 *   probe, and a probe that fails (a down switch soon after) doubles the quiet period before the next one.
 * - REMB is ignored for the first seconds of a viewer: the browser's estimator starts from a fixed guess.
 * - A REMB far below what the viewer receives without loss is not believed: a link that carried only that much
 *   would lose most of what is sent. Without a send-time header extension the browser estimates delay from RTP
 *   timestamps, and a busy sender (or transcoder) whose frames leave unevenly makes it collapse to tens of kb/s
 *   on a perfect network (seen here on loopback). With loss in the last seconds it is believed again.
 */

/** A rendition as the policy sees it: its bitrate, bits/s. Renditions are ordered best (highest bitrate) first. */
export interface PolicyRendition {
  bitrate: number;
}

/** Tuning, with defaults. */
export interface RenditionPolicyOptions {
  /** Loss fraction above which a report counts as lossy (default 0.10). */
  lossyFraction?: number;
  /** Loss fraction that switches down on a single report (default 0.25). */
  severeFraction?: number;
  /** REMB below this share of the current rendition's bitrate switches down (default 0.8). */
  rembDownRatio?: number;
  /** A rendition fits when its bitrate × this ≤ the estimate (default 1.15). */
  headroom?: number;
  /** REMB is ignored this long after the viewer starts, ms (default 6 000). */
  rembWarmupMs?: number;
  /**
   * A REMB below this share of the current rendition's bitrate needs loss (RR or NACKs) in the last
   * `lossEvidenceMs` to be believed (default 0.4).
   */
  rembCredibleRatio?: number;
  /** How recent loss must be to confirm a very low REMB, ms (default 3 000). */
  lossEvidenceMs?: number;
  /** Quiet time before the first probe up, ms (default 8 000); doubles after a failed probe, up to 64 000. */
  upAfterMs?: number;
  /** No decision this long after the viewer starts, ms (default 2 500). */
  startMs?: number;
  /** After a switch is decided, and again after it lands, reports are only recorded this long, ms (default 1 500). */
  settleMs?: number;
}

/** Decides rendition changes for one viewer. */
export class RenditionPolicy {
  private readonly o: Required<RenditionPolicyOptions>;
  private readonly startedAt: number;
  private lastSwitchAt: number;
  private lastUpAt = -Infinity;
  private upWaitMs: number;
  private lossyReports = 0;
  private lossyNackWindows = 0;
  private lastLossAt = -Infinity;
  /** Last report that showed any loss at all (RR or NACKs), ms. */
  private lastAnyLossAt = -Infinity;
  private remb: number | undefined;

  constructor(now: number, options: RenditionPolicyOptions = {}) {
    this.o = {
      lossyFraction: options.lossyFraction ?? 0.1,
      severeFraction: options.severeFraction ?? 0.25,
      rembDownRatio: options.rembDownRatio ?? 0.8,
      rembCredibleRatio: options.rembCredibleRatio ?? 0.4,
      lossEvidenceMs: options.lossEvidenceMs ?? 3_000,
      headroom: options.headroom ?? 1.15,
      rembWarmupMs: options.rembWarmupMs ?? 6_000,
      upAfterMs: options.upAfterMs ?? 8_000,
      startMs: options.startMs ?? 2_500,
      settleMs: options.settleMs ?? 1_500,
    };
    this.startedAt = now;
    this.lastSwitchAt = now;
    this.upWaitMs = this.o.upAfterMs;
  }

  /** The estimate currently trusted (REMB after the warm-up), bits/s. */
  get estimate(): number | undefined {
    return this.remb;
  }

  /**
   * Takes one receiver report: `fractionLost` 0–1 from an RR block for the viewer's video SSRC, `nackFraction`
   * 0–1 (sequence numbers NACKed for the first time ÷ video packets sent, over one short window) and/or a REMB in
   * bits/s. `switching`: a switch is decided but has not landed yet. Returns the index into `renditions` to switch
   * to, or undefined to stay on `current`.
   */
  onReport(now: number, report: { fractionLost?: number; nackFraction?: number; remb?: number }, renditions: readonly PolicyRendition[], current: number, switching = false): number | undefined {
    if (report.remb !== undefined && now - this.startedAt >= this.o.rembWarmupMs) this.remb = report.remb;
    let severe = false;
    if ((report.fractionLost ?? 0) > 0 || (report.nackFraction ?? 0) > 0) this.lastAnyLossAt = now;
    if (report.fractionLost !== undefined) {
      if (report.fractionLost > this.o.lossyFraction) {
        this.lossyReports++;
        this.lastLossAt = now;
        severe = report.fractionLost > this.o.severeFraction;
      } else {
        this.lossyReports = 0;
        if (report.fractionLost > 0.02) this.lastLossAt = now;
      }
    }
    if (report.nackFraction !== undefined) {
      if (report.nackFraction > this.o.lossyFraction) {
        this.lossyNackWindows++;
        this.lastLossAt = now;
        severe ||= report.nackFraction > this.o.severeFraction;
      } else {
        this.lossyNackWindows = 0;
        if (report.nackFraction > 0.02) this.lastLossAt = now;
      }
    }
    const here = renditions[current];
    if (!here || switching || now - this.startedAt < this.o.startMs || now - this.lastSwitchAt < this.o.settleMs) return undefined;
    const lossy = severe || this.lossyReports >= 2 || this.lossyNackWindows >= 2;
    const credible = this.remb !== undefined && (this.remb >= here.bitrate * this.o.rembCredibleRatio || now - this.lastAnyLossAt <= this.o.lossEvidenceMs);
    const starved = credible && this.remb! < here.bitrate * this.o.rembDownRatio;
    if ((lossy || starved) && current < renditions.length - 1) {
      // Fit the estimate; with loss and no usable estimate, at most 60 % of what does not get through now.
      let budget = credible ? this.remb! : Infinity;
      if (lossy) budget = Math.min(budget, here.bitrate * 0.6);
      let target = renditions.findIndex((l, i) => i > current && l.bitrate * this.o.headroom <= budget);
      if (target < 0) target = renditions.length - 1;
      this.switched(now, 'down');
      return target;
    }
    const quiet = now - Math.max(this.lastSwitchAt, this.lastLossAt) >= this.upWaitMs;
    const roomy = this.remb === undefined || this.remb >= here.bitrate || !credible;
    if (current > 0 && quiet && roomy) {
      this.switched(now, 'up');
      return current - 1;
    }
    return undefined;
  }

  /** Records a switch the viewer asked for itself (the quiet period starts again). */
  manualSwitch(now: number): void {
    this.lastSwitchAt = now;
    this.resetLoss();
  }

  /** A switch landed (the new rendition's keyframe went out): the settle time starts again from here. */
  switchLanded(now: number): void {
    this.lastSwitchAt = now;
    this.resetLoss();
  }

  private resetLoss(): void {
    this.lossyReports = 0;
    this.lossyNackWindows = 0;
  }

  private switched(now: number, direction: 'up' | 'down'): void {
    if (direction === 'down' && now - this.lastUpAt < this.upWaitMs) {
      this.upWaitMs = Math.min(this.upWaitMs * 2, 64_000); // the last probe up failed: wait longer next time
    } else if (direction === 'down') {
      this.upWaitMs = this.o.upAfterMs;
    }
    if (direction === 'up') this.lastUpAt = now;
    this.lastSwitchAt = now;
    this.resetLoss();
  }
}
