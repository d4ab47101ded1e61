import react from '@vitejs/plugin-react';
import { defaultClientConditions, defineConfig } from 'vite';

// One page (index.html) for every route; the server answers /, /watch/*, /broadcast and /admin with it.
// The admin pages and the broadcast page are separate chunks, loaded when visited: the watch page carries
// React, the player (hls.js) and nothing else.
export default defineConfig({
  base: '/',
  plugins: [react()],
  resolve: {
    // hls.js's light build: everything LL-HLS needs, without alternate audio, subtitles, DRM, CMCD and content
    // steering (none of which Glasscast serves): −65 kB gzip on every watch page.
    alias: [{ find: /^hls\.js$/, replacement: 'hls.js/dist/hls.light.mjs' }],
    // p2p-media-loader's core as its authors bundle it for browsers (bittorrent-tracker's client and its Node
    // shims inside): its source build reads Node's `process`, which a page does not have.
    conditions: ['p2pml:core-as-bundle', ...defaultClientConditions],
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // hls.js (light) alone is ~370 kB minified (~115 kB gzip).
    chunkSizeWarningLimit: 800,
  },
});
