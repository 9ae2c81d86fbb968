/**
 * The console's static files on the management listener (src/http/management/console-static.ts)
 * over real HTTP: index.html at / and at every client route, the built assets with their
 * content types, the security headers, no token needed (public list) yet nothing else opened,
 * and no path outside the built files reachable by any spelling.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { CONSOLE_CSP, CONSOLE_PAGES } from '../../src/http/management/console-static.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const consoleDir = fileURLToPath(new URL('../../console/', import.meta.url));

/** A request with the exact target given (fetch would normalise `..`). */
function raw(port: number, target: string): Promise<{ status: number; headers: string; body: string }> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1', () => sock.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
    let data = '';
    sock.setEncoding('latin1');
    sock.on('data', (d) => (data += d));
    sock.on('end', () => {
      const [head = '', ...rest] = data.split('\r\n\r\n');
      resolve({ status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body: rest.join('\r\n\r\n') });
    });
    sock.on('error', reject);
  });
}

describe('console static files', () => {
  let s: TestServer;
  let port: number;
  before(async () => {
    s = await startTestServer();
    port = s.running.listeners['management-http']!.port;
  });
  after(async () => s?.stop());

  it('is built: dist/console has index.html and assets (npm run build)', () => {
    assert.ok(fs.existsSync(path.join(consoleDir, 'index.html')), 'run npm run build (tsc + vite)');
    assert.ok(fs.readdirSync(path.join(consoleDir, 'assets')).some((n) => n.endsWith('.js')));
  });

  it('answers index.html at / and every client route, without a token, with the security headers', async () => {
    const index = fs.readFileSync(path.join(consoleDir, 'index.html'), 'utf8');
    assert.doesNotMatch(index, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script in index.html');
    for (const pattern of CONSOLE_PAGES) {
      const url = pattern.replace(/:\w+/g, 'x1');
      const res = await fetch(s.api + url);
      assert.equal(res.status, 200, url);
      assert.match(res.headers.get('content-type') ?? '', /^text\/html/);
      assert.equal(res.headers.get('content-security-policy'), CONSOLE_CSP);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('x-frame-options'), 'DENY');
      assert.equal(await res.text(), index);
    }
    assert.match(CONSOLE_CSP, /default-src 'self'/);
    assert.match(CONSOLE_CSP, /frame-ancestors 'none'/);
    assert.doesNotMatch(CONSOLE_CSP, /unsafe-inline|unsafe-eval/);
  });

  it('serves each built asset with its content type; an unknown name is 404', async () => {
    const names = fs.readdirSync(path.join(consoleDir, 'assets'));
    for (const n of names) {
      const res = await fetch(`${s.api}/assets/${n}`);
      assert.equal(res.status, 200, n);
      const type = res.headers.get('content-type') ?? '';
      if (n.endsWith('.js')) assert.match(type, /^text\/javascript/);
      if (n.endsWith('.css')) assert.match(type, /^text\/css/);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.deepEqual(Buffer.from(await res.arrayBuffer()), fs.readFileSync(path.join(consoleDir, 'assets', n)));
    }
    assert.equal((await fetch(`${s.api}/assets/nope.js`)).status, 404);
  });

  it('reaches nothing outside the built files, by any spelling', async () => {
    const secretish = s.adminToken;
    for (const target of [
      '/assets/../index.html',
      '/assets/..%2findex.html',
      '/assets/..%2f..%2fpackage.json',
      '/assets/%2e%2e/%2e%2e/package.json',
      '/assets/..\\..\\package.json',
      '/assets/',
      '/assets',
      '/assets/.',
      '/assets/__proto__',
      '/assets/constructor',
      `/assets/..%2f..%2f..%2f..%2f..%2f..%2f${encodeURIComponent(s.dataDir.slice(1))}%2fadmin-token`,
      '/index.html',
      '/package.json',
      '/console/index.html',
      '/products/x/y/z',
      '/devices/a',
    ]) {
      const res = await raw(port, target);
      assert.ok([400, 401, 404].includes(res.status), `${target}: HTTP ${res.status}`);
      assert.ok(!res.body.includes(secretish), `${target} leaked the admin token`);
      assert.ok(!res.body.includes('"name": "thingauth"'), `${target} served package.json`);
    }
  });

  it('the API is still closed: the console pages being public opens no /api route', async () => {
    for (const p of ['/api/v1/products', '/api/v1/whoami', '/products/../api/v1/products', '/products/..%2fapi%2fv1%2fproducts/x']) {
      const res = await raw(port, p);
      assert.ok([400, 401].includes(res.status), `${p}: HTTP ${res.status}`);
    }
  });
});
