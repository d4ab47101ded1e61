#!/usr/bin/env bash
# Installs what Glasscast needs from Debian's packages when it is missing. `runtime` (used by npm start): ffmpeg,
# for the derived renditions (ladder, B-frame-free video for WebRTC, AAC <-> Opus). Otherwise (npm test) also
# chromium (end-to-end tests, driven by playwright-core), unshare/ip (tests run in a loopback-only network
# namespace), srt-tools (srt-live-transmit, an SRT caller besides ffmpeg), nftables (tests that block UDP/TCP), nginx (the LL-HLS cache tier's test) and GStreamer's webrtcbin with Python bindings (the second WebRTC implementation of the interop
# tests). Needs root for apt-get; without root it says what to install (and fails for the tests, warns for the
# server).
set -euo pipefail
mode="${1:-test}"
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if [ "$mode" != runtime ]; then
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
  # libsrt's own tools: srt-live-transmit is the second, independent SRT caller of the SRT tests.
  command -v srt-live-transmit >/dev/null 2>&1 || missing+=(srt-tools)
  # nft: tests really drop UDP (or TCP) between a browser and the server inside their own network namespaces.
  command -v nft >/dev/null 2>&1 || missing+=(nftables)
  # nginx: the documented LL-HLS cache tier (deploy/nginx) is tested in front of the server.
  [ -x "${NGINX_PATH:-/usr/sbin/nginx}" ] || missing+=(nginx)
  # webrtcbin, libnice, x264enc, avdec_h264 and the Python GObject bindings with GStreamer's overrides.
  if ! /usr/bin/python3 -c "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstWebRTC', '1.0'); from gi.repository import Gst, GstWebRTC; Gst.init(None); import sys; sys.exit(0 if all(Gst.ElementFactory.find(e) for e in ('webrtcbin', 'nicesrc', 'x264enc', 'avdec_h264', 'opusenc', 'rtph264pay', 'decodebin')) else 1)" >/dev/null 2>&1; then
    missing+=(python3 python3-gi python3-gst-1.0 gir1.2-gst-plugins-bad-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-nice gstreamer1.0-libav)
  fi
fi
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "glasscast: needs these Debian packages: ${pkgs}— run: sudo apt-get install -y ${pkgs}" >&2
  if [ "$mode" = runtime ]; then exit 0; fi
  exit 1
fi
echo "glasscast: installing ${pkgs}from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages with a service (nginx) must not start it: the tests run their own, on private ports. policy-rc.d
# (Debian's policy layer, read by invoke-rc.d and deb-systemd-invoke) says no while we install, if none is there.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends ${pkgs} >/dev/null
# ...nor start it at the next boot.
case " ${pkgs}" in *" nginx "*) if command -v systemctl >/dev/null 2>&1; then systemctl disable nginx >/dev/null 2>&1 || true; fi ;; esac
