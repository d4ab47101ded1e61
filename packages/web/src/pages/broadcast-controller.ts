/**
 * The go-live controller behind `/broadcast` (pages/broadcast.tsx renders its form): pick a camera + microphone or a screen, preview it, and go live over WHIP
 * with the stream key (`?stream=<name>&key=<key>` fills the form, e.g. from the admin page). Shows the live
 * state and the sent bitrate, frame rate and resolution; explains denied permissions, a wrong key and a lost
 * connection, and retries a lost connection by itself.
 */
import { publishWhip, WhipError, type WhipPublish } from '@glasscast/player';

/** Video bitrate per quality, bits/s (the ladder's rungs). */
const BITRATES: Record<string, number> = { '1920x1080': 4_500_000, '1280x720': 2_500_000, '854x480': 1_200_000 };
/** Retry delays after a lost connection, ms. */
const RETRY_DELAYS = [1000, 2000, 5000, 10_000];

/**
 * Wires the form inside `root` (elements by id: preview, overlay, hint, badge, form, source, quality, stream,
 * key, preview-button, go, stop, status, stats, watch-link). Returns the teardown: stops the publish, the camera
 * and the timers.
 */
export function mountBroadcast(root: HTMLElement): () => void {
  const $ = <T extends HTMLElement>(id: string): T => root.querySelector(`#${id}`) as T;
  const preview = $<HTMLVideoElement>('preview');
  const overlay = $<HTMLDivElement>('overlay');
  const hint = $<HTMLParagraphElement>('hint');
  const badge = $<HTMLSpanElement>('badge');
  const form = $<HTMLFormElement>('form');
  const sourceSelect = $<HTMLSelectElement>('source');
  const qualitySelect = $<HTMLSelectElement>('quality');
  const streamInput = $<HTMLInputElement>('stream');
  const keyInput = $<HTMLInputElement>('key');
  const previewButton = $<HTMLButtonElement>('preview-button');
  const goButton = $<HTMLButtonElement>('go');
  const stopButton = $<HTMLButtonElement>('stop');
  const statusLine = $<HTMLParagraphElement>('status');
  const statsLine = $<HTMLSpanElement>('stats');
  const watchLink = $<HTMLAnchorElement>('watch-link');

  const params = new URLSearchParams(window.location.search);
  streamInput.value = params.get('stream') ?? localStorage.getItem('glasscast.stream') ?? 'main';
  keyInput.value = params.get('key') ?? localStorage.getItem('glasscast.key') ?? '';
  watchLink.href = `/watch/${encodeURIComponent(streamInput.value)}`;

  type State = 'offline' | 'connecting' | 'live' | 'retrying';
  let media: MediaStream | undefined;
  let publish: WhipPublish | undefined;
  let wanted = false;
  let retries = 0;
  let retryTimer: number | undefined;

  function setState(state: State, text = '', error = false): void {
    badge.textContent = { offline: 'Offline', connecting: 'Connecting', live: 'Live', retrying: 'Reconnecting' }[state];
    badge.className = `badge ${state === 'live' ? 'live' : state === 'offline' ? 'offline' : 'connecting'}`;
    statusLine.textContent = text;
    statusLine.className = error ? 'status error' : 'status';
    goButton.disabled = state !== 'offline';
    stopButton.disabled = state === 'offline';
    sourceSelect.disabled = qualitySelect.disabled = streamInput.disabled = keyInput.disabled = state !== 'offline';
  }

  function permissionMessage(err: unknown): string {
    const name = (err as DOMException).name;
    if (name === 'NotAllowedError') return 'Permission denied: allow the camera and microphone (or screen sharing) for this site in the browser, then try again.';
    if (name === 'NotFoundError') return 'No camera or microphone found.';
    if (name === 'NotReadableError') return 'The camera or microphone is in use by another application.';
    return `Cannot open the source: ${(err as Error).message}`;
  }

  async function openSource(): Promise<MediaStream> {
    if (media) return media;
    const [width, height] = qualitySelect.value.split('x').map(Number);
    const video = { width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } };
    if (sourceSelect.value === 'screen') {
      media = await navigator.mediaDevices.getDisplayMedia({ video, audio: true });
      if (media.getAudioTracks().length === 0) {
        // Screen audio is not always shareable: add the microphone when there is one.
        const mic = await navigator.mediaDevices.getUserMedia({ audio: true }).catch(() => undefined);
        mic?.getAudioTracks().forEach((t) => media!.addTrack(t));
      }
    } else {
      media = await navigator.mediaDevices.getUserMedia({ video, audio: { echoCancellation: false, noiseSuppression: false } });
    }
    for (const track of media.getTracks()) {
      track.addEventListener('ended', () => {
        // The user stopped screen sharing from the browser's own bar.
        if (wanted) void stop('The source was stopped.');
      });
    }
    preview.srcObject = media;
    overlay.hidden = true;
    return media;
  }

  function closeSource(): void {
    media?.getTracks().forEach((t) => t.stop());
    media = undefined;
    preview.srcObject = null;
    overlay.hidden = false;
    hint.textContent = 'Pick a source to see a preview.';
  }

  async function goLive(): Promise<void> {
    const name = streamInput.value.trim();
    const key = keyInput.value.trim();
    localStorage.setItem('glasscast.stream', name);
    localStorage.setItem('glasscast.key', key);
    watchLink.href = `/watch/${encodeURIComponent(name)}`;
    wanted = true;
    setState('connecting', 'Connecting…');
    let source: MediaStream;
    try {
      source = await openSource();
    } catch (err) {
      wanted = false;
      setState('offline', permissionMessage(err), true);
      return;
    }
    try {
      publish = await publishWhip(`/whip/${encodeURIComponent(name)}`, key, source, { maxBitrate: BITRATES[qualitySelect.value] });
    } catch (err) {
      const status = err instanceof WhipError ? err.status : undefined;
      if (status === 401) return void stop('Wrong stream key for this stream: check the key (it is printed when the server first starts, and shown on the admin page).', true);
      // After a lost connection our own old session may linger for a few seconds: keep retrying then.
      if (status === 409 && retries > 0) return scheduleRetry('Waiting for the previous connection to time out.');
      if (status === 409) return void stop('This stream is already live from another encoder. Stop that one first.', true);
      if (status !== undefined && status < 500) return void stop(`The server refused the stream: ${(err as Error).message}`, true);
      return scheduleRetry(`Cannot reach the server (${(err as Error).message}).`);
    }
    const pc = publish.pc;
    pc.addEventListener('connectionstatechange', () => {
      if (!wanted || publish?.pc !== pc) return;
      if (pc.connectionState === 'connected') {
        retries = 0;
        setState('live', `Live: viewers can watch at ${new URL(watchLink.href, window.location.href).href}`);
      } else if (pc.connectionState === 'failed' || pc.connectionState === 'disconnected') {
        scheduleRetry('Connection lost.');
      }
    });
  }

  function scheduleRetry(reason: string): void {
    publish?.stop();
    publish = undefined;
    if (!wanted) return;
    const delay = RETRY_DELAYS[Math.min(retries, RETRY_DELAYS.length - 1)]!;
    retries++;
    setState('retrying', `${reason} Retrying in ${Math.round(delay / 1000)} s…`, true);
    window.clearTimeout(retryTimer);
    retryTimer = window.setTimeout(() => {
      if (!wanted) return;
      setState('offline');
      void goLive();
    }, delay);
  }

  async function stop(message = '', error = false): Promise<void> {
    wanted = false;
    window.clearTimeout(retryTimer);
    publish?.stop();
    publish = undefined;
    setState('offline', message, error);
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault();
    void goLive();
  });
  stopButton.addEventListener('click', () => void stop('Stopped.'));
  previewButton.addEventListener('click', () => {
    closeSource();
    openSource().catch((err: unknown) => setState('offline', permissionMessage(err), true));
  });
  sourceSelect.addEventListener('change', closeSource);
  qualitySelect.addEventListener('change', closeSource);
  const onPageHide = (): void => publish?.stop();
  window.addEventListener('pagehide', onPageHide);

  /** Sent video bitrate, frame rate and resolution, from the sender's outbound-rtp stats. */
  let last: { bytes: number; at: number } | undefined;
  const statsTimer = setInterval(() => {
    const pc = publish?.pc;
    if (!pc || pc.connectionState !== 'connected') {
      statsLine.textContent = '';
      last = undefined;
      return;
    }
    void pc.getStats().then((report) => {
      report.forEach((s: { type: string; kind?: string; bytesSent?: number; targetBitrate?: number; framesPerSecond?: number; frameWidth?: number; frameHeight?: number; timestamp: number }) => {
        if (s.type !== 'outbound-rtp' || s.kind !== 'video') return;
        const bytes = s.bytesSent ?? 0;
        const kbps = last ? ((bytes - last.bytes) * 8) / (s.timestamp - last.at) : 0;
        last = { bytes, at: s.timestamp };
        // The target is what congestion control allows the encoder; simple pictures need less than it.
        const target = (s.targetBitrate ?? 0) / 1000;
        statsLine.textContent = `sending ${(kbps / 1000).toFixed(2)} Mb/s (target ${(target / 1000).toFixed(2)}) · ${s.framesPerSecond ?? 0} fps · ${s.frameWidth ?? 0}x${s.frameHeight ?? 0}`;
        statsLine.dataset['kbps'] = String(Math.round(kbps));
        statsLine.dataset['targetKbps'] = String(Math.round(target));
      });
    });
  }, 1000);

  setState('offline');

  /** For tests and the curious: the current publish (its RTCPeerConnection and session URL). */
  (window as unknown as { glasscastBroadcast: { readonly publish: WhipPublish | undefined } }).glasscastBroadcast = {
    get publish() {
      return publish;
    },
  };

  return () => {
    clearInterval(statsTimer);
    window.removeEventListener('pagehide', onPageHide);
    void stop();
    closeSource();
  };
}
