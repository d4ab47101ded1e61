/**
 * The admission hook: an operator's URL asked synchronously before every publish and every play (separate from
 * webhooks, which only report). Request: `POST <url>` with JSON
 * `{"action": "publish"|"play", "protocol", "stream", "clientAddress", "claims"}` (`claims`: the playback
 * token's, or null). Answer: `2xx {"allow": true}` admits; `2xx {"allow": false, "reason": "..."}` or `403`
 * denies (the reason is shown to the peer). A timeout, a network error, another status or a body that is not
 * that JSON is a *failure*, decided by the fail mode: `open` admits, `closed` refuses with
 * `ADMISSION_UNAVAILABLE`.
 */
import { GlasscastError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';

/** What the hook is asked. */
export interface AdmissionRequest {
  action: 'publish' | 'play';
  protocol: 'rtmp' | 'whip' | 'srt' | 'whep' | 'llhls' | 'vod' | 'thumbnail';
  stream: string;
  clientAddress: string;
  claims: Record<string, unknown> | null;
}

/** Options of the hook. */
export interface AdmissionOptions {
  /** The hook's URL; undefined turns admission off (everything allowed). */
  url: string | undefined;
  /** How long to wait for the answer, ms. */
  timeoutMs: number;
  /** What a failure means: `open` admits, `closed` refuses. */
  failMode: 'open' | 'closed';
}

/** Longest answer read, bytes. */
const MAX_ANSWER_BYTES = 16 * 1024;

/** Asks the admission hook. */
export class AdmissionHook {
  /** Answers by outcome, for metrics. */
  readonly counts = { allowed: 0, denied: 0, failed: 0 };

  constructor(
    private readonly options: AdmissionOptions,
    private readonly log: Logger,
  ) {}

  /** True when a URL is configured. */
  get enabled(): boolean {
    return this.options.url !== undefined;
  }

  /**
   * Resolves when `request` is admitted.
   * @throws GlasscastError `ADMISSION_DENIED` (with the hook's reason) or, failing closed, `ADMISSION_UNAVAILABLE`.
   */
  async check(request: AdmissionRequest): Promise<void> {
    const url = this.options.url;
    if (!url) return;
    let verdict: { allow: boolean; reason: string | undefined } | string;
    try {
      const res = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(request),
        signal: AbortSignal.timeout(this.options.timeoutMs),
        redirect: 'error',
      });
      const text = (await res.text()).slice(0, MAX_ANSWER_BYTES);
      if (res.status === 403) {
        verdict = { allow: false, reason: reasonOf(text) };
      } else if (res.ok) {
        const body = JSON.parse(text) as { allow?: unknown; reason?: unknown };
        verdict = typeof body.allow === 'boolean' ? { allow: body.allow, reason: typeof body.reason === 'string' ? body.reason.slice(0, 200) : undefined } : 'answer has no boolean "allow"';
      } else {
        verdict = `answered ${res.status}`;
      }
    } catch (err) {
      verdict = (err as Error).name === 'TimeoutError' ? `no answer within ${this.options.timeoutMs} ms` : `unreachable (${(err as Error).message})`;
    }
    if (typeof verdict === 'string') {
      this.counts.failed++;
      this.log.warn({ action: request.action, stream: request.stream, failMode: this.options.failMode }, `admission hook failed: ${verdict}`);
      if (this.options.failMode === 'open') return;
      throw new GlasscastError('ADMISSION_UNAVAILABLE', 'the admission service did not answer; try again later');
    }
    if (verdict.allow) {
      this.counts.allowed++;
      return;
    }
    this.counts.denied++;
    this.log.info({ action: request.action, protocol: request.protocol, stream: request.stream, client: request.clientAddress, reason: verdict.reason }, 'admission denied');
    throw new GlasscastError('ADMISSION_DENIED', verdict.reason ? `denied: ${verdict.reason}` : 'denied by the admission hook');
  }
}

function reasonOf(text: string): string | undefined {
  try {
    const body = JSON.parse(text) as { reason?: unknown };
    return typeof body.reason === 'string' ? body.reason.slice(0, 200) : undefined;
  } catch {
    return undefined;
  }
}
