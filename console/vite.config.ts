/**
 * Builds the operator console into dist/console/ (served by the management listener at /,
 * src/http/management/console-static.ts). Everything is bundled: no CDN, works offline.
 * No inline script or style is emitted, so the page runs under a CSP without 'unsafe-inline'.
 */
import preact from '@preact/preset-vite';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = fileURLToPath(new URL('.', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

export default defineConfig({
  root: here,
  base: '/',
  plugins: [preact({ prerender: { enabled: false } })],
  // The console ships in the same package as the server: its version is the server's.
  define: { __THINGAUTH_VERSION__: JSON.stringify(pkg.version) },
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
