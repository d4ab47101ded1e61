#!/usr/bin/env bash
# Installs what the test suite needs from Debian's packages when it is missing: ffmpeg (publishers, probes)
# and chromium (end-to-end tests, driven by playwright-core). Needs root for apt-get; without root it says
# what to install and fails.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
[ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=(chromium)
# unshare (util-linux) and ip (iproute2) put the tests in a loopback-only network namespace.
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "glasscast: the tests need these Debian packages: ${pkgs}— run: sudo apt-get install -y ${pkgs}" >&2
  exit 1
fi
echo "glasscast: installing ${pkgs}from Debian's packages" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends ${pkgs} >/dev/null
