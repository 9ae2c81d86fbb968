/**
 * Builds the operator console into dist/console/ (served by the management listener at /,
 * src/http/management/console-static.ts). Everything is bundled: no CDN, works offline.
 * No inline script or style is emitted, so the page runs under a CSP without 'unsafe-inline'.
 */
import preact from '@preact/preset-vite';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));

export default defineConfig({
  root: here,
  base: '/',
  plugins: [preact({ prerender: { enabled: false } })],
  build: {
    outDir: fileURLToPath(new URL('../dist/console/', import.meta.url)),
    emptyOutDir: true,
    assetsDir: 'assets',
    // A module preload polyfill would be an extra script; every browser we support has modulepreload.
    modulePreload: { polyfill: false },
    // Small images become files, never data: URLs in scripts.
    assetsInlineLimit: 0,
    sourcemap: false,
    target: 'es2022',
    reportCompressedSize: false,
  },
  server: { port: 5173, strictPort: false },
});
