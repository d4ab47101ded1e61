import react from '@vitejs/plugin-react';
import { defineConfig } from 'vite';

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
  },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // hls.js (light) alone is ~370 kB minified (~115 kB gzip).
    chunkSizeWarningLimit: 800,
  },
});
