/** SDP offers as other WebRTC stacks write them (RFC 8843 bundle-only, m-line order, encoding-name spelling). */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chooseH264Format, chooseOpusFormat, parseSdp } from '../../src/media/sdp/sdp.js';

/** GStreamer 1.22 webrtcbin's WHEP offer with max-bundle, audio first (golden, candidates trimmed). */
const GSTREAMER_AUDIO_FIRST = [
  'v=0',
  'o=- 4219914631222505206 0 IN IP4 0.0.0.0',
  's=-',
  't=0 0',
  'a=ice-options:trickle',
  'a=group:BUNDLE audio0 video1',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'c=IN IP4 0.0.0.0',
  'a=setup:actpass',
  'a=ice-ufrag:tdVj/Pe9xyqMhE6ckUgybQE8RfytytpE',
  'a=ice-pwd:beBu3m7iv2C7TbCvlABoJYkg2kqIZLra',
  'a=rtcp-mux',
  'a=rtcp-rsize',
  'a=recvonly',
  'a=rtpmap:111 OPUS/48000/2',
  'a=rtcp-fb:111 transport-cc',
  'a=mid:audio0',
  'a=rtcp-mux-only',
  'm=video 0 UDP/TLS/RTP/SAVPF 102',
  'c=IN IP4 0.0.0.0',
  'a=setup:actpass',
  'a=ice-ufrag:tdVj/Pe9xyqMhE6ckUgybQE8RfytytpE',
  'a=ice-pwd:beBu3m7iv2C7TbCvlABoJYkg2kqIZLra',
  'a=bundle-only',
  'a=rtcp-mux',
  'a=rtcp-rsize',
  'a=recvonly',
  'a=rtpmap:102 H264/90000',
  'a=rtcp-fb:102 nack pli',
  'a=fmtp:102 packetization-mode=1;profile-level-id=42e01f',
  'a=mid:video1',
  'a=rtcp-mux-only',
  '',
].join('\r\n');

describe('SDP offers', () => {
  it('reads a port-0 bundle-only section as live media on the BUNDLE transport (RFC 8843 §7), in either m-line order', () => {
    const media = parseSdp(GSTREAMER_AUDIO_FIRST).media;
    assert.deepEqual(media.map((m) => [m.kind, m.mid, m.rejected, m.bundleOnly, m.direction]), [
      ['audio', 'audio0', false, false, 'recvonly'],
      ['video', 'video1', false, true, 'recvonly'],
    ]);
    assert.equal(chooseH264Format(media[1]!, 0x42)?.payloadType, 102);
    assert.equal(chooseOpusFormat(media[0]!)?.payloadType, 111, 'OPUS/48000/2 is Opus (encoding names are case-insensitive)');
  });

  it('still reads a port-0 section without bundle-only as rejected (RFC 8866 §5.14)', () => {
    const rejected = GSTREAMER_AUDIO_FIRST.replace('a=bundle-only\r\n', '');
    assert.equal(parseSdp(rejected).media[1]!.rejected, true);
  });
});
