/** Debian's headless Chromium, driven by playwright-core (never a downloaded browser). */
import { chromium, type Browser } from 'playwright-core';

/** Path of the system Chromium; CHROMIUM_PATH overrides. */
export const CHROMIUM_PATH = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

/**
 * Launches headless Chromium with the flags this machine needs (closed network, root, no GPU). `extraArgs` add
 * flags, e.g. `--webrtc-ip-handling-policy=disable_non_proxied_udp` to block WebRTC over UDP as a strict
 * corporate network does. `options.executablePath` runs it through a wrapper (e.g. inside a test's network
 * namespace: netns.ts), which must exec Debian's Chromium.
 */
export async function launchChromium(extraArgs: string[] = [], options: { executablePath?: string } = {}): Promise<Browser> {
  return chromium.launch({
    executablePath: options.executablePath ?? CHROMIUM_PATH,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--autoplay-policy=no-user-gesture-required',
      // WebRTC on loopback (tests run in a network namespace whose only interface is lo; DESIGN.md).
      '--allow-loopback-in-peer-connection',
      '--disable-features=WebRtcHideLocalIpsWithMdns',
      ...extraArgs,
    ],
  });
}
