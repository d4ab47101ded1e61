#!/usr/bin/python3
"""A second, independent WebRTC implementation for interop tests: GStreamer's webrtcbin (Debian 12, 1.22).

  gst-webrtc.py whep URL ORDER SECONDS        play: ORDER is "video,audio" or "audio,video" (m-line order of the
                                              offer; max-bundle makes the second one port 0 + a=bundle-only,
                                              RFC 8843 §7); counts decoded video frames and audio buffers
  gst-webrtc.py whip URL KEY SECONDS          publish a test pattern (x264) and a tone (Opus) for SECONDS

Prints one JSON line on stdout: the offer and answer it exchanged and what it decoded or sent. Exits non-zero
on a signaling error. Promises are waited for on the main thread: PyGObject 3.42 crashes reading a session
description inside a promise callback.
"""
import json
import sys
import threading
import urllib.error
import urllib.request

import gi

gi.require_version('Gst', '1.0')
gi.require_version('GstWebRTC', '1.0')
gi.require_version('GstSdp', '1.0')
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

Gst.init(None)

VIDEO_CAPS = 'application/x-rtp,media=video,encoding-name=H264,payload=102,clock-rate=90000,packetization-mode=(string)1,profile-level-id=(string)42e01f'
AUDIO_CAPS = 'application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000,encoding-params=(string)2'
# What the publisher's payloader may produce (its profile-level-id comes from the encoder's SPS).
VIDEO_SEND_CAPS = 'application/x-rtp,media=video,encoding-name=H264,payload=102'


def wait_promise(emit, read=lambda reply: None):
    """Emits with a new promise, waits for it on this thread, and reads its reply while the promise (its owner) lives."""
    promise = Gst.Promise.new()
    emit(promise)
    promise.wait()
    return read(promise.get_reply())


def description(kind, text):
    """A session description built from text (PyGObject 3.42 loses the SDP of one handed back from a promise)."""
    _, sdp = GstSdp.SDPMessage.new_from_text(text)
    return GstWebRTC.WebRTCSessionDescription.new(kind, sdp)


def with_candidates(text, candidates):
    """`text` with each gathered candidate added to its media section (non-trickle offer, RFC 8839 §5.1)."""
    out, section = [], -1
    lines = text.rstrip('\r\n').split('\r\n')
    for i, line in enumerate(lines):
        out.append(line)
        if line.startswith('m='):
            section += 1
        last_of_section = i + 1 == len(lines) or lines[i + 1].startswith('m=')
        if section >= 0 and last_of_section:
            out.extend('a=' + c for index, c in candidates if index == section)
            out.append('a=end-of-candidates')
    return '\r\n'.join(out) + '\r\n'


def wait_for_ssrcs(webrtc):
    """A sender's offer names its SSRCs (a=ssrc) only once its payloaders negotiated caps: wait for them (bounded).
    Glasscast's WebRTC library routes incoming RTP to tracks by the SSRCs the offer declares."""
    for _ in range(100):
        pads = [p for p in webrtc.sinkpads]
        caps = [p.get_current_caps() for p in pads]
        if pads and all(c is not None and c.get_structure(0).has_field('ssrc') for c in caps):
            return
        GLib.usleep(50_000)


def negotiate(pipe, webrtc, url, headers):
    candidates = []
    webrtc.connect('on-ice-candidate', lambda _w, index, candidate: candidates.append((index, candidate)))
    pipe.set_state(Gst.State.PLAYING)
    if webrtc.sinkpads:
        wait_for_ssrcs(webrtc)
    offer_text = wait_promise(lambda p: webrtc.emit('create-offer', None, p), lambda reply: reply.get_value('offer').sdp.as_text())
    wait_promise(lambda p: webrtc.emit('set-local-description', description(GstWebRTC.WebRTCSDPType.OFFER, offer_text), p))
    # Non-trickle: wait until every candidate is gathered (bounded), then put them in the offer.
    for _ in range(100):
        if webrtc.get_property('ice-gathering-state') == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            break
        GLib.usleep(50_000)
    local = with_candidates(offer_text, list(candidates))
    request = urllib.request.Request(url, data=local.encode(), method='POST', headers={'content-type': 'application/sdp', **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer_text = response.read().decode()
            location = response.headers.get('location')
    except urllib.error.HTTPError as err:
        print(json.dumps({'error': err.code, 'body': err.read().decode(), 'offer': local}))
        sys.exit(2)
    wait_promise(lambda p: webrtc.emit('set-remote-description', description(GstWebRTC.WebRTCSDPType.ANSWER, answer_text), p))
    return local, answer_text, location


def run_for(seconds):
    loop = GLib.MainLoop()
    GLib.timeout_add(int(seconds * 1000), loop.quit)
    loop.run()


def whep(url, order, seconds):
    pipe = Gst.Pipeline.new()
    webrtc = Gst.ElementFactory.make('webrtcbin', 'webrtc')
    webrtc.set_property('bundle-policy', GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
    pipe.add(webrtc)
    for kind in order.split(','):
        webrtc.emit('add-transceiver', GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY, Gst.Caps.from_string(VIDEO_CAPS if kind == 'video' else AUDIO_CAPS))
    counts = {'videoFrames': 0, 'audioBuffers': 0, 'width': 0, 'height': 0}
    lock = threading.Lock()

    def count(kind):
        def probe(pad, info):
            with lock:
                counts['videoFrames' if kind == 'video' else 'audioBuffers'] += 1
                if kind == 'video' and counts['width'] == 0:
                    caps = pad.get_current_caps()
                    if caps:
                        s = caps.get_structure(0)
                        counts['width'] = s.get_value('width') or 0
                        counts['height'] = s.get_value('height') or 0
            return Gst.PadProbeReturn.OK
        return probe

    def on_decoded(_decodebin, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = 'video' if caps.to_string().startswith('video') else 'audio'
        sink = Gst.ElementFactory.make('fakesink', None)
        sink.set_property('sync', False)
        pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad('sink'))
        pad.add_probe(Gst.PadProbeType.BUFFER, count(kind))

    def on_pad(_webrtc, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        decodebin = Gst.ElementFactory.make('decodebin', None)
        decodebin.connect('pad-added', on_decoded)
        pipe.add(decodebin)
        decodebin.sync_state_with_parent()
        pad.link(decodebin.get_static_pad('sink'))

    webrtc.connect('pad-added', on_pad)
    offer, answer, location = negotiate(pipe, webrtc, url, {})
    run_for(seconds)
    with lock:
        result = dict(counts)
    result['connectionState'] = webrtc.get_property('connection-state').value_nick
    pipe.set_state(Gst.State.NULL)
    if location:
        base = url.split('/whep/')[0]
        try:
            urllib.request.urlopen(urllib.request.Request(base + location, method='DELETE'), timeout=5).read()
        except urllib.error.URLError:
            pass
    print(json.dumps({**result, 'offer': offer, 'answer': answer}))


def whip(url, key, seconds):
    pipe = Gst.parse_launch(
        'webrtcbin name=webrtc bundle-policy=max-bundle '
        'videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 ! videoconvert ! '
        'x264enc tune=zerolatency speed-preset=ultrafast bitrate=1000 key-int-max=30 ! video/x-h264,profile=constrained-baseline ! '
        'rtph264pay config-interval=-1 aggregate-mode=zero-latency ! ' + VIDEO_SEND_CAPS + ' ! webrtc. '
        'audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! opusenc ! rtpopuspay ! ' + AUDIO_CAPS + ' ! webrtc.'
    )
    webrtc = pipe.get_by_name('webrtc')
    offer, answer, location = negotiate(pipe, webrtc, url, {'authorization': f'Bearer {key}'})
    run_for(seconds)
    pipe.set_state(Gst.State.NULL)
    print(json.dumps({'offer': offer, 'answer': answer, 'location': location}))


if __name__ == '__main__':
    mode = sys.argv[1]
    if mode == 'whep':
        whep(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    elif mode == 'whip':
        whip(sys.argv[2], sys.argv[3], float(sys.argv[4]))
    else:
        sys.exit(f'unknown mode {mode}')
