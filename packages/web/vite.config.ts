import { resolve } from 'node:path';
import { defineConfig } from 'vite';

// Multi-page build: each page is an HTML entry; the server maps /watch/<name> to watch.html.
export default defineConfig({
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    // hls.js alone is ~500 kB minified.
    chunkSizeWarningLimit: 800,
    rollupOptions: { input: { watch: resolve(import.meta.dirname, 'watch.html'), broadcast: resolve(import.meta.dirname, 'broadcast.html') } },
  },
});
