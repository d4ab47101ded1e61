/**
 * The parts of an SDP offer (RFC 8866, RFC 8829 JSEP) that choosing codecs needs: media sections with their mid,
 * direction and payload formats (rtpmap, fmtp, rtcp-fb). Transport lines (ICE, DTLS) are left to the WebRTC
 * library. Size-limited: an offer is a few kB; a hostile one is refused, not parsed.
 */
import { MediaParseError } from '../errors.js';

/** Largest SDP accepted, bytes. */
export const MAX_SDP_SIZE = 64 * 1024;
/** Most media sections accepted. */
export const MAX_MEDIA_SECTIONS = 16;

/** One payload format of a media section. */
export interface SdpFormat {
  payloadType: number;
  /** Encoding name as written (`H264`, `opus`, `VP8` …). */
  name: string;
  /** Hz. */
  clockRate: number;
  channels: number | undefined;
  /** fmtp parameters, keys lower-cased. */
  parameters: Map<string, string>;
  feedback: string[];
}

/** One m= section. */
export interface SdpMediaSection {
  kind: string;
  mid: string | undefined;
  direction: 'sendrecv' | 'sendonly' | 'recvonly' | 'inactive';
  formats: SdpFormat[];
  /**
   * The offerer rejected or disabled the section: port 0 without `a=bundle-only` (RFC 8866 §5.14). A port-0
   * section with `a=bundle-only` is live media on the BUNDLE transport (RFC 8843 §6, §7.5: max-bundle offers
   * from GStreamer and others).
   */
  rejected: boolean;
  /** `a=bundle-only` was present (RFC 8843 §6). */
  bundleOnly: boolean;
}

/** A parsed session description. */
export interface SdpDescription {
  media: SdpMediaSection[];
}

/**
 * Parses the media sections of an SDP.
 * @throws MediaParseError `SDP_INVALID` for an oversized or malformed description.
 */
export function parseSdp(text: string): SdpDescription {
  if (text.length > MAX_SDP_SIZE) throw new MediaParseError('SDP_INVALID', `SDP larger than ${MAX_SDP_SIZE} bytes`);
  const lines = text.split(/\r?\n/).filter((l) => l.length > 0);
  if (!lines[0]?.startsWith('v=0')) throw new MediaParseError('SDP_INVALID', 'SDP must start with v=0');
  const media: SdpMediaSection[] = [];
  let current: SdpMediaSection | undefined;
  const format = (pt: number): SdpFormat | undefined => current?.formats.find((f) => f.payloadType === pt);
  for (const line of lines) {
    if (line.length > 4096) throw new MediaParseError('SDP_INVALID', 'SDP line longer than 4096 characters');
    if (line.startsWith('m=')) {
      const [kind, port, , ...fmts] = line.slice(2).split(' ');
      if (!kind || port === undefined) throw new MediaParseError('SDP_INVALID', `malformed media line "${line.slice(0, 80)}"`);
      if (media.length >= MAX_MEDIA_SECTIONS) throw new MediaParseError('SDP_INVALID', `more than ${MAX_MEDIA_SECTIONS} media sections`);
      current = {
        kind,
        mid: undefined,
        direction: 'sendrecv',
        rejected: port === '0',
        bundleOnly: false,
        formats: fmts.filter((f) => /^\d{1,3}$/.test(f)).map((f) => ({ payloadType: Number(f), name: '', clockRate: 0, channels: undefined, parameters: new Map(), feedback: [] })),
      };
      media.push(current);
      continue;
    }
    if (!current) continue;
    if (line.startsWith('a=mid:')) current.mid = line.slice(6).trim();
    else if (line === 'a=bundle-only') current.bundleOnly = true;
    else if (/^a=(sendrecv|sendonly|recvonly|inactive)$/.test(line)) current.direction = line.slice(2) as SdpMediaSection['direction'];
    else if (line.startsWith('a=rtpmap:')) {
      const m = /^a=rtpmap:(\d+) ([^/]+)\/(\d+)(?:\/(\d+))?/.exec(line);
      const f = m && format(Number(m[1]));
      if (m && f) {
        f.name = m[2]!;
        f.clockRate = Number(m[3]);
        f.channels = m[4] ? Number(m[4]) : undefined;
      }
    } else if (line.startsWith('a=fmtp:')) {
      const m = /^a=fmtp:(\d+) (.*)$/.exec(line);
      const f = m && format(Number(m[1]));
      if (m && f) {
        for (const kv of m[2]!.split(';')) {
          const [k, v] = kv.split('=');
          if (k) f.parameters.set(k.trim().toLowerCase(), (v ?? '').trim());
        }
      }
    } else if (line.startsWith('a=rtcp-fb:')) {
      const m = /^a=rtcp-fb:(\d+|\*) (.*)$/.exec(line);
      if (m) for (const f of m[1] === '*' ? current.formats : [format(Number(m[1]))].filter((x): x is SdpFormat => !!x)) f.feedback.push(m[2]!);
    }
  }
  // Port 0 rejects a section unless it is bundle-only (the attribute follows the m= line, hence afterwards).
  for (const m of media) if (m.bundleOnly) m.rejected = false;
  return { media };
}

/**
 * Picks the H.264 format to send (RFC 6184 §8.1): packetization-mode=1, preferring the offered profile-level-id
 * whose profile_idc equals the stream's, then constrained baseline (every WebRTC decoder takes it; the level is
 * ours to exceed with level-asymmetry-allowed). Undefined when the section offers no H.264 in mode 1.
 */
export function chooseH264Format(section: SdpMediaSection, profileIdc: number): SdpFormat | undefined {
  const h264 = section.formats.filter((f) => f.name.toUpperCase() === 'H264' && f.parameters.get('packetization-mode') === '1');
  const profile = (f: SdpFormat): number => parseInt((f.parameters.get('profile-level-id') ?? '42e01f').slice(0, 2), 16);
  return h264.find((f) => profile(f) === profileIdc) ?? h264.find((f) => f.parameters.get('profile-level-id')?.toLowerCase().startsWith('42e0')) ?? h264[0];
}

/**
 * Picks Opus (RFC 7587 §7: `opus/48000/2`, the encoding name case-insensitive as every SDP encoding name is,
 * RFC 8866 §6.6; the channel count is always 2 on the wire whatever the offer wrote).
 */
export function chooseOpusFormat(section: SdpMediaSection): SdpFormat | undefined {
  return section.formats.find((f) => f.name.toLowerCase() === 'opus' && f.clockRate === 48000);
}
