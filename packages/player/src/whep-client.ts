/**
 * A WHEP client (draft-ietf-wish-whep): offers receive-only audio and video, POSTs the offer (non-trickle: after
 * ICE gathering), applies the answer, and DELETEs the session when stopped.
 */

/** One rendition a WHEP session can receive (`src` = the stream as published). */
export interface WhepLayer {
  id: string;
  width: number;
  height: number;
  /** Target bits/s (renditions) or measured (source), if known. */
  bitrate: number | undefined;
}

/** Which rendition a WHEP session receives, from the server's layer endpoint. */
export interface WhepLayerState {
  mode: 'auto' | 'manual';
  /** Layer id received now. */
  current: string;
  /** Layer id a switch waits for (it lands at that rendition's next keyframe). */
  pending: string | undefined;
  layers: WhepLayer[];
}

/** A playing WHEP session. */
export interface WhepConnection {
  pc: RTCPeerConnection;
  stream: MediaStream;
  /** Session URL from the Location header. */
  location: string | undefined;
  /** The layer endpoint (Link rel="urn:ietf:params:whep:ext:core:layer"), when the server offers renditions. */
  layerUrl: string | undefined;
  /** Reads the layer state. @throws WhepError when the server has no layer endpoint or refuses. */
  getLayers(): Promise<WhepLayerState>;
  /** Chooses a layer by id, or `auto`. @throws WhepError for an unknown layer. */
  selectLayer(id: string): Promise<WhepLayerState>;
  close(): void;
}

/** The URL of the link with relation `rel` in a Link header, resolved against `base`. */
function linkWithRel(link: string | null, rel: string, base: string): string | undefined {
  for (const part of (link ?? '').split(/,(?=\s*<)/)) {
    const m = /<([^>]+)>(.*)/.exec(part.trim());
    if (m && (m[2]!.includes(`rel="${rel}"`) || m[2]!.includes(`rel=${rel}`))) return new URL(m[1]!, base).toString();
  }
  return undefined;
}

/** Why a WHEP attempt failed. */
export class WhepError extends Error {
  override name = 'WhepError';
  constructor(
    readonly status: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Resolves when `pc` has gathered its ICE candidates, or after `timeoutMs` with what it has (WHIP/WHEP offers are
 * sent whole, without trickle).
 */
export async function iceGathered(pc: RTCPeerConnection, timeoutMs: number): Promise<void> {
  await new Promise<void>((resolve) => {
    if (pc.iceGatheringState === 'complete') return resolve();
    const timer = setTimeout(resolve, timeoutMs);
    pc.addEventListener('icegatheringstatechange', () => {
      if (pc.iceGatheringState === 'complete') {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

/** Reads `<url>; rel="ice-server"` entries of a Link header (draft-ietf-wish-whep §4.4). */
export function iceServersFromLink(link: string | null): RTCIceServer[] {
  if (!link) return [];
  return link
    .split(/,(?=\s*<)/)
    .map((part) => /<([^>]+)>;.*rel="ice-server"/.exec(part)?.[1])
    .filter((url): url is string => !!url)
    .map((urls) => ({ urls }));
}

/**
 * Connects to `url` and resolves once the answer is applied (media may still be on its way).
 * @throws WhepError on an HTTP error or when the browser cannot make an offer.
 */
export async function connectWhep(url: string, gatherTimeoutMs = 1500, token?: string): Promise<WhepConnection> {
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  const stream = new MediaStream();
  pc.ontrack = (event) => stream.addTrack(event.track);
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.addTransceiver('audio', { direction: 'recvonly' });
  let location: string | undefined;
  const close = (): void => {
    pc.close();
    if (location) void fetch(location, { method: 'DELETE' }).catch(() => undefined);
    location = undefined;
  };
  try {
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, gatherTimeoutMs);
    const headers: Record<string, string> = { 'content-type': 'application/sdp' };
    if (token) headers['authorization'] = `Bearer ${token}`;
    const res = await fetch(url, { method: 'POST', headers, body: pc.localDescription!.sdp });
    if (res.status !== 201) throw new WhepError(res.status, `WHEP offer answered ${res.status}`);
    const loc = res.headers.get('location');
    location = loc ? new URL(loc, url).toString() : undefined;
    const layerUrl = linkWithRel(res.headers.get('link'), 'urn:ietf:params:whep:ext:core:layer', url);
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    const layerRequest = async (init?: RequestInit): Promise<WhepLayerState> => {
      if (!layerUrl) throw new WhepError(undefined, 'this server offers no renditions');
      const r = await fetch(layerUrl, { cache: 'no-store', ...init });
      if (!r.ok) throw new WhepError(r.status, `layer request answered ${r.status}`);
      return (await r.json()) as WhepLayerState;
    };
    return {
      pc,
      stream,
      get location() {
        return location;
      },
      layerUrl,
      getLayers: () => layerRequest(),
      selectLayer: (id) => layerRequest({ method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ encodingId: id }) }),
      close,
    };
  } catch (err) {
    close();
    throw err instanceof WhepError ? err : new WhepError(undefined, (err as Error).message);
  }
}
