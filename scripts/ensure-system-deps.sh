#!/usr/bin/env bash
# Installs what Glasscast needs from Debian's packages when it is missing. `runtime` (used by npm start): ffmpeg,
# for AAC → Opus and B-frame removal on the WebRTC path. Otherwise (npm test) also chromium (end-to-end tests,
# driven by playwright-core) and unshare/ip (tests run in a loopback-only network namespace). Needs root for
# apt-get; without root it says what to install (and fails for the tests, warns for the server).
set -euo pipefail
mode="${1:-test}"
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
if [ "$mode" != runtime ]; then
  [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
  command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
  command -v ip >/dev/null 2>&1 || missing+=(iproute2)
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
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends ${pkgs} >/dev/null
