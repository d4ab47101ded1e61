/**
 * A browser WHIP publisher (RFC 9725): sends a MediaStream's tracks send-only, H.264 preferred (packetization-mode
 * 1) with Opus, POSTs the offer with `Authorization: Bearer <stream key>` after ICE gathering, applies the answer,
 * and DELETEs the session when stopped. The video sender keeps its resolution under congestion (frame rate
 * goes first) and is capped at `maxBitrate`.
 */
import { iceGathered } from './whep-client.js';
/** Why a WHIP attempt failed: `status` is the HTTP status when the server answered. */
export class WhipError extends Error {
  override name = 'WhipError';
  constructor(
    readonly status: number | undefined,
    message: string,
  ) {
    super(message);
  }
}

/** A live WHIP publish. */
export interface WhipPublish {
  pc: RTCPeerConnection;
  /** Session URL from the Location header. */
  location: string | undefined;
  /** Ends the publish (DELETE, then closes the connection). Idempotent. */
  stop(): void;
}

/** Options of a publish. */
export interface WhipPublishOptions {
  /** Video bitrate cap, bits/s. Default 2 500 000. */
  maxBitrate?: number;
  /** ICE gathering wait before the offer is sent, ms. Default 1500. */
  gatherTimeoutMs?: number;
}

/** Puts H.264 (packetization-mode=1, constrained baseline first) at the head of the video codec list. */
function preferH264(transceiver: RTCRtpTransceiver): void {
  const caps = typeof RTCRtpSender.getCapabilities === 'function' ? RTCRtpSender.getCapabilities('video') : null;
  if (!caps || typeof transceiver.setCodecPreferences !== 'function') return;
  const rank = (c: RTCRtpCodec): number => {
    if (c.mimeType.toLowerCase() !== 'video/h264') return 2;
    const fmtp = c.sdpFmtpLine ?? '';
    if (!fmtp.includes('packetization-mode=1')) return 2;
    return fmtp.includes('profile-level-id=42e01f') ? 0 : 1;
  };
  const sorted = [...caps.codecs].sort((a, b) => rank(a) - rank(b));
  if (sorted.length > 0 && rank(sorted[0]!) < 2) transceiver.setCodecPreferences(sorted);
}

/**
 * Publishes `media` to the WHIP endpoint `url` with stream key `key`.
 * @throws WhipError with the HTTP status (401 wrong key, 409 already live, 400 …) or without one when the
 *   browser could not make an offer or the server could not be reached.
 */
export async function publishWhip(endpoint: string, key: string, media: MediaStream, options: WhipPublishOptions = {}): Promise<WhipPublish> {
  // A relative endpoint (`/whip/<name>`) is resolved against the page.
  const url = new URL(endpoint, globalThis.location?.href).toString();
  const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
  let location: string | undefined;
  const stop = (): void => {
    // DELETE first: closing the connection first would look like a lost publisher (reconnect grace) to the server.
    const session = location;
    location = undefined;
    if (!session) return pc.close();
    void fetch(session, { method: 'DELETE', keepalive: true })
      .catch(() => undefined)
      .finally(() => pc.close());
  };
  try {
    for (const track of media.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: 'sendonly', streams: [media] });
      if (track.kind === 'video') {
        preferH264(transceiver);
        const params = transceiver.sender.getParameters();
        params.degradationPreference = 'maintain-resolution';
        params.encodings = params.encodings.length > 0 ? params.encodings : [{}];
        params.encodings[0]!.maxBitrate = options.maxBitrate ?? 2_500_000;
        await transceiver.sender.setParameters(params).catch(() => undefined);
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    await iceGathered(pc, options.gatherTimeoutMs ?? 1500);
    let res: Response;
    try {
      res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/sdp', authorization: `Bearer ${key}` }, body: pc.localDescription!.sdp });
    } catch (err) {
      throw new WhipError(undefined, `cannot reach the server: ${(err as Error).message}`);
    }
    if (res.status !== 201) {
      const body = (await res.json().catch(() => undefined)) as { message?: string } | undefined;
      throw new WhipError(res.status, body?.message ?? `WHIP offer answered ${res.status}`);
    }
    const loc = res.headers.get('location');
    location = loc ? new URL(loc, url).toString() : undefined;
    await pc.setRemoteDescription({ type: 'answer', sdp: await res.text() });
    return {
      pc,
      get location() {
        return location;
      },
      stop,
    };
  } catch (err) {
    stop();
    throw err instanceof WhipError ? err : new WhipError(undefined, (err as Error).message);
  }
}
