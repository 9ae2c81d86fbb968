/**
 * Issue 11 item 1: the management API must not be reachable without a token by spelling a path
 * differently. Before the fix the token check looked at the raw URL (`/api/` prefix,
 * `/metrics`) while the router matched the decoded path, so `GET /%61pi/v1/products/<pk>/secret`
 * answered the ProductSecret and `POST /%61pi/v1/tokens` minted an admin token, unaudited.
 *
 * Every registered route (read from the app's own route table, so a new route is covered
 * without editing this test) gets a table of spellings over a raw socket (http.request sends
 * the path verbatim; fetch/URL would normalise dot segments and case of escapes): percent-
 * encoding of each character (upper and lower hex), double slashes, dot segments, trailing
 * slash, upper case, `;` parameters, `?`/`#` tricks, absolute-form URLs, OPTIONS/TRACE. Without
 * a token none may answer 2xx/3xx or carry a secret; with a token the normal spelling works;
 * every audited request is recorded under the matched route pattern.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { buildManagementApp } from '../../src/http/management/server.js';
import type { ManagementRoute } from '../../src/http/management/caller-auth.js';
import { CONSOLE_ROUTES } from '../../src/http/management/console-static.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

interface RawAnswer {
  status: number;
  text: string;
}

/**
 * One request on its own connection with the path on the wire exactly as given (no keep-alive:
 * node's HTTP server answers a request line it cannot parse with 400 and closes, which must not
 * be mistaken for the next request's answer).
 */
function raw(port: number, method: string, path: string, opts: { token?: string; body?: string; headOnly?: boolean } = {}): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = {};
    if (opts.token) headers.authorization = `Bearer ${opts.token}`;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(opts.body));
    }
    const req = http.request({ host: '127.0.0.1', port, method, path, headers, agent: false }, (res) => {
      // A stream that never ends by itself (GET /api/v1/events/stream): its status is the answer.
      if (opts.headOnly) {
        resolve({ status: res.statusCode ?? 0, text: '' });
        res.destroy();
        return;
      }
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function hex(c: string): string[] {
  const h = Buffer.from(c, 'utf8').toString('hex');
  const pairs = (s: string) => s.replace(/(..)/g, '%$1');
  const lower = pairs(h.toLowerCase());
  const upper = pairs(h.toUpperCase());
  return lower === upper ? [upper] : [upper, lower];
}

/** Other spellings of `path` a lenient router or proxy might take for the same route. */
export function spellingsOf(path: string, absoluteBase: string): string[] {
  const out = new Set<string>();
  // Percent-encoding of every single character, upper and lower hex.
  for (let i = 0; i < path.length; i++) {
    for (const e of hex(path[i]!)) out.add(path.slice(0, i) + e + path.slice(i + 1));
  }
  // Every character of the first two segments encoded at once (`/%61%70%69/...`).
  const firstTwo = path.split('/').slice(0, 3).join('/');
  out.add(firstTwo.replace(/[^/]/g, (c) => hex(c)[0]!) + path.slice(firstTwo.length));
  const slashes = [...path].flatMap((c, i) => (c === '/' ? [i] : []));
  for (const i of slashes) {
    const head = path.slice(0, i);
    const tail = path.slice(i);
    out.add(`${head}/${tail}`); // double slash
    out.add(`${head}//${tail}`); // triple slash
    out.add(`${head}/.${tail}`); // dot segment
    out.add(`${head}/%2e${tail}`);
    out.add(`${head}/x/..${tail}`); // dot-dot segment
    out.add(`${head}/x/%2e%2e${tail}`);
    out.add(`${head}/x%2f..${tail}`);
    out.add(`${head}\\${tail.slice(1)}`); // backslash for slash
    if (i > 0) out.add(`${head};x=1${tail}`); // `;` parameter on a segment
    if (i > 0) out.add(`${head};${tail}`);
  }
  for (const end of ['/', '//', '/.', '/%2e', '%2f', '%2F', ';', ';x=1', '?', '??', '?/healthz', '?x=/openapi.json', '#', '#/healthz', '%3f', '%23', '%00', '%20', '.', '..', '/x/..', '.json']) out.add(path + end);
  // Letter case: all, each segment, the first letter.
  out.add(path.toUpperCase());
  const segments = path.split('/');
  for (let i = 1; i < segments.length; i++) {
    const s = segments.slice();
    s[i] = s[i]!.toUpperCase();
    out.add(s.join('/'));
  }
  out.add(path.replace(/[a-z]/, (c) => c.toUpperCase()));
  // Public routes as a prefix: `/healthz/../api/...` (`/healthz?/api/...` is a request for
  // /healthz and answers it, so it is not in the table).
  for (const pub of ['/healthz', '/openapi.json']) {
    out.add(`${pub}/..${path}`);
    out.add(`${pub}/%2e%2e${path}`);
    out.add(`${pub}%2f..${path}`);
    out.add(`${pub};${path}`);
    out.add(`${pub}%3f${path}`);
    out.add(`${pub}%23${path}`);
  }
  out.add(`/.${path}`);
  out.add(`/./${path.slice(1)}`);
  out.add(`/x/..${path}`);
  out.add(`/%2e%2e${path}`);
  // Absolute-form request targets.
  out.add(absoluteBase + path);
  out.add(absoluteBase.toUpperCase() + path);
  out.delete(path);
  return [...out];
}

/** Runs `fn` over `items` with at most `n` in flight. */
async function pool<T>(items: T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

describe('management API: deny by default, decided on the matched route (issue 11 item 1)', () => {
  let srv: TestServer;
  let port: number;
  let routes: ManagementRoute[] = [];
  let pk: string;
  let productSecret: string;
  let gatewayDn: string;
  let deviceSecret: string;
  let appKey: string;
  let appSecret: string;
  /** A secret-mode product and device: the DeviceSecret routes answer 409 for an X.509 one. */
  let secretPk: string;
  let secretDn: string;
  const secrets: string[] = [];

  before(async () => {
    srv = await startTestServer();
    port = Number(new URL(srv.api).port);
    const { registry, applications } = srv.running.ctx.services;
    const p = await registry.createProduct({ productName: 'bypass gateway', nodeType: 'GATEWAY' });
    pk = p.productKey;
    productSecret = p.productSecret;
    // An X.509 gateway with a certificate, so the X.509 GET routes (CA, CRL, bundle) have something to answer.
    await srv.running.ctx.services.x509.setSettings(pk, { authMode: 'x509' });
    const [d] = await registry.createDevices(pk, { deviceNames: ['bypass-gw'] });
    gatewayDn = d!.deviceName;
    deviceSecret = d!.deviceSecret;
    const cert = await srv.running.ctx.services.x509.issue(pk, gatewayDn);
    secrets.push(...cert.privateKey!.split('\n').filter((l) => l.length >= 32 && !l.startsWith('-----')));
    const sp = await registry.createProduct({ productName: 'bypass secret product' });
    secretPk = sp.productKey;
    const [sd] = await registry.createDevices(secretPk, { deviceNames: ['bypass-dev'] });
    secretDn = sd!.deviceName;
    secrets.push(sp.productSecret, sd!.deviceSecret);
    const a = await applications.create({ name: 'bypass-app', productKeys: [pk] });
    appKey = a.appKey;
    appSecret = a.appSecret;
    secrets.push(productSecret, deviceSecret, appSecret, srv.adminToken);
    // The route table of an app built exactly as the listener's (same builder, same context).
    const app = await buildManagementApp(srv.running.ctx);
    await app.ready();
    routes = app.routeTable.slice();
    await app.close();
  });
  after(async () => {
    await srv.stop();
  });

  /** One file the console build produced (the asset route answers only those). */
  const builtAsset = fs.readdirSync(new URL('../../console/assets/', import.meta.url)).find((n) => n.endsWith('.js')) ?? 'index.js';

  function concrete(pattern: string): string {
    // The DeviceSecret routes have nothing to show for an X.509 device (409): a secret-mode device there.
    if (/\/devices\/:deviceName\/secret$|^\/api\/v1\/export\/products\/:productKey\/devices$/.test(pattern)) {
      return pattern.replace(/:productKey\b/g, secretPk).replace(/:deviceName\b/g, secretDn);
    }
    return pattern
      .replace(/:productKey\b/g, pk)
      .replace(/:deviceName\b/g, gatewayDn)
      .replace(/:subProductKey\b/g, pk)
      .replace(/:subDeviceName\b/g, 'bypass-none')
      .replace(/:appKey\b/g, appKey)
      .replace(/^\/assets\/:file$/, `/assets/${builtAsset}`)
      .replace(/:[A-Za-z]+/g, 'x0000000');
  }

  /** Bodies an honest admin would send, so a bypass would really act (mint, create). */
  function bodyFor(route: ManagementRoute): string | undefined {
    if (route.method === 'GET' || route.method === 'HEAD' || route.method === 'DELETE') return undefined;
    if (route.url === '/api/v1/tokens') return JSON.stringify({ name: 'minted-by-bypass', scope: 'admin' });
    if (route.url === '/api/v1/products') return JSON.stringify({ productName: 'created-by-bypass' });
    if (route.url === '/api/v1/products/:productKey/devices') return JSON.stringify({ deviceName: 'created-by-bypass' });
    return '{}';
  }

  function leaked(text: string): string | undefined {
    return secrets.find((s) => text.includes(s));
  }

  it('the route table holds every route: public ones are exactly /healthz, /openapi.json and the console pages and assets (GET/HEAD)', () => {
    assert.ok(routes.length >= 40, `only ${routes.length} routes`);
    assert.deepEqual(
      routes.filter((r) => r.public).map((r) => `${r.method} ${r.url}`).sort(),
      ['/healthz', '/openapi.json', ...CONSOLE_ROUTES].flatMap((u) => [`GET ${u}`, `HEAD ${u}`]).sort(),
    );
    assert.ok(CONSOLE_ROUTES.every((u) => !u.startsWith('/api') && u !== '/metrics'), 'no console route under /api or /metrics');
    for (const must of ['GET /metrics', 'GET /api/v1/health', 'GET /api/v1/products/:productKey/secret', 'POST /api/v1/tokens', 'POST /api/v1/keys/rotate']) {
      assert.ok(routes.some((r) => `${r.method} ${r.url}` === must), `${must} is in the table`);
    }
  });

  it('the reported attacks: /%61pi/.../secret, POST /%61pi/v1/tokens and /%6detrics get 401, reveal nothing, mint nothing', async () => {
    const tokensBefore = (await srv.running.ctx.store.listManagementTokens()).length;
    const secret = await raw(port, 'GET', `/%61pi/v1/products/${pk}/secret`);
    assert.equal(secret.status, 401, secret.text);
    assert.equal(leaked(secret.text), undefined);
    const mint = await raw(port, 'POST', '/%61pi/v1/tokens', { body: JSON.stringify({ name: 'evil', scope: 'admin' }) });
    assert.equal(mint.status, 401, mint.text);
    assert.equal((await srv.running.ctx.store.listManagementTokens()).length, tokensBefore, 'no token was minted');
    const metrics = await raw(port, 'GET', '/%6detrics');
    assert.equal(metrics.status, 401, metrics.text);
    assert.ok(!metrics.text.includes('thingauth_'), 'no metrics served');
    assert.equal(JSON.parse(metrics.text).code, 'UNAUTHENTICATED');
  });

  it('every route, every spelling, every method: without a token nothing answers 2xx/3xx or carries a secret', async () => {
    const before = {
      tokens: (await srv.running.ctx.store.listManagementTokens()).length,
      products: (await srv.running.ctx.store.listProducts(0, 1000)).total,
      devices: await srv.running.ctx.store.countDevices(pk),
    };
    const cases: { method: string; path: string; body?: string }[] = [];
    const base = `http://127.0.0.1:${port}`;
    for (const r of routes) {
      const path = concrete(r.url);
      const body = bodyFor(r);
      if (r.public) continue;
      cases.push({ method: r.method, path, body });
      for (const s of spellingsOf(path, base)) cases.push({ method: r.method, path: s, body });
      for (const m of ['OPTIONS', 'TRACE']) cases.push({ method: m, path });
    }
    // The same path with another method than the route's own (and the lower-case method name
    // http-parser refuses): never an answer either.
    cases.push({ method: 'PUT', path: `/api/v1/products/${pk}`, body: '{}' });
    const failures: string[] = [];
    let n = 0;
    let refusedByParser = 0;
    await pool(cases, 8, async (c) => {
      // node's HTTP parser refuses some request lines (no leading slash) with a bare 400 and a
      // close, which the client may see as a parse error for HEAD: a refusal too.
      const res = await raw(port, c.method, c.path, { body: c.body }).catch((e: Error) => ({ status: 400, text: `no answer: ${e.message}` }));
      if (res.text.startsWith('no answer')) refusedByParser++;
      n++;
      if (res.status < 400 || res.status >= 500) failures.push(`${c.method} ${c.path}: HTTP ${res.status} ${res.text.slice(0, 80)}`);
      const s = leaked(res.text);
      if (s) failures.push(`${c.method} ${c.path}: answer carries a secret`);
      if (res.status === 404 && c.method !== 'HEAD') failures.push(`${c.method} ${c.path}: 404 without a token (must be 401, says nothing about routes)`);
    });
    console.log(`# ${n} requests without a token over ${routes.length} routes (${refusedByParser} refused by the HTTP parser)`);
    assert.deepEqual(failures.slice(0, 30), [], `${failures.length} spellings got through`);
    assert.deepEqual(
      {
        tokens: (await srv.running.ctx.store.listManagementTokens()).length,
        products: (await srv.running.ctx.store.listProducts(0, 1000)).total,
        devices: await srv.running.ctx.store.countDevices(pk),
      },
      before,
      'nothing was written',
    );
  });

  it('public routes answer without a token; an unknown path answers 401 without a token and 404 with one', async () => {
    for (const p of ['/healthz', '/openapi.json']) {
      assert.equal((await raw(port, 'GET', p)).status, 200, p);
      assert.equal((await raw(port, 'HEAD', p)).status, 200, `HEAD ${p}`);
    }
    for (const p of ['/nope', '/api/v2/products', '/favicon.ico', '/healthz/..', '/api/v1']) {
      const anon = await raw(port, 'GET', p);
      assert.equal(anon.status, 401, `${p}: ${anon.text}`);
      assert.equal(JSON.parse(anon.text).code, 'UNAUTHENTICATED');
      const withToken = await raw(port, 'GET', p, { token: srv.adminToken });
      assert.equal(withToken.status, 404, p);
    }
  });

  it('with a valid token the normal spelling of every route is let through (GET/HEAD answer 2xx)', async () => {
    const failures: string[] = [];
    for (const r of routes) {
      if (r.method !== 'GET' && r.method !== 'HEAD') continue;
      const res = await raw(port, r.method, concrete(r.url), { token: srv.adminToken, headOnly: r.url === '/api/v1/events/stream' });
      if (res.status < 200 || res.status >= 300) failures.push(`${r.method} ${r.url}: HTTP ${res.status} ${res.text.slice(0, 100)}`);
    }
    // Writes: the token check passes (the route answers with its own refusal of this
    // nonexistent target or empty body, never 401/403 and never "no route").
    for (const r of routes) {
      if (r.method === 'GET' || r.method === 'HEAD' || r.url === '/api/v1/keys/rotate') continue;
      const path = r.url.replace(/:[A-Za-z]+/g, 'zznone00000');
      const res = await raw(port, r.method, path, { token: srv.adminToken, body: r.method === 'DELETE' ? undefined : '{}' });
      if (res.status === 401 || res.status === 403 || /no route/.test(res.text)) failures.push(`${r.method} ${r.url}: HTTP ${res.status} ${res.text.slice(0, 100)}`);
    }
    assert.deepEqual(failures, []);
  });

  it('the audit records requests under the matched route pattern, whatever the spelling', async () => {
    const encodedCreate = await raw(port, 'POST', '/%61pi/v1/products', { token: srv.adminToken, body: JSON.stringify({ productName: 'encoded spelling' }) });
    assert.equal(encodedCreate.status, 201, encodedCreate.text);
    const createdPk = JSON.parse(encodedCreate.text).productKey as string;
    assert.equal((await raw(port, 'GET', `/%61pi/v1/products/${pk}/secret`)).status, 401);
    assert.equal((await raw(port, 'GET', '/%6Detrics')).status, 401);
    await srv.running.ctx.services.audit.flush();
    const entries = await srv.running.ctx.services.audit.query({ limit: 100_000 });
    const api = entries.filter((e) => e.action.startsWith('api.'));
    assert.ok(
      api.some((e) => e.action === 'api.post /products' && e.result === 'ok' && e.actor.startsWith('token:') && e.reason === 'HTTP 201'),
      'the change made through /%61pi/... is audited as api.post /products',
    );
    assert.ok(
      api.some((e) => e.action === 'api.get /products/:productKey/secret' && e.result === 'deny' && e.productKey === pk && e.actor === 'anonymous'),
      'the refused secret read is audited under its route with the product',
    );
    assert.ok(api.some((e) => e.action === 'api.get /metrics' && e.result === 'deny'), 'the refused metrics read is audited');
    const patterns = new Set(routes.map((r) => `api.${r.method.toLowerCase()} ${r.url.replace(/^\/api\/v1/, '')}`));
    const strays = api.filter((e) => !patterns.has(e.action) && !/^api\.[a-z]+ \(no route\)$/.test(e.action)).map((e) => e.action);
    assert.deepEqual([...new Set(strays)].slice(0, 10), [], 'every audited action names a route pattern (never a raw path)');
    assert.ok(createdPk.length > 0);
  });
});
