/**
 * HTTP bodies of the wrong type and size on EVERY route: the management API's routes are
 * read from its own /openapi.json (so a new route is covered without editing this test), the
 * device HTTPS routes are listed. Each answer is a clear refusal (management: 4xx with JSON
 * {code, message}; device channel: HTTP 200 with the protocol's error code), never a 5xx,
 * nothing is written, and the server keeps serving.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { deviceHttpsPost as deviceHttps } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connectClient, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';

const BIG = 2 * 1024 * 1024;

const BODIES: { name: string; type: string; body: string }[] = [
  { name: 'malformed JSON', type: 'application/json', body: '{"productName": ' },
  { name: 'JSON array', type: 'application/json', body: '[1,2,3]' },
  { name: 'JSON string', type: 'application/json', body: '"just a string"' },
  { name: 'JSON number', type: 'application/json', body: '12345' },
  { name: 'JSON null', type: 'application/json', body: 'null' },
  { name: 'fields of the wrong type', type: 'application/json', body: JSON.stringify({ productName: 7, deviceNames: 'x', deviceName: { a: 1 }, nodeType: 'TOASTER', count: 'many', subDevices: 'all', name: [], scope: 'god', productKeys: 'x', timestampWindowSeconds: 'soon', enabled: 'yes' }) },
  { name: 'unknown fields only', type: 'application/json', body: JSON.stringify({ __proto__x: 1, constructor: { prototype: { polluted: true } } }) },
  { name: 'XML', type: 'application/xml', body: '<product><name>x</name></product>' },
  { name: `a ${BIG / 1024 / 1024} MB JSON body`, type: 'application/json', body: JSON.stringify({ productName: 'x'.repeat(BIG) }) },
  { name: 'invalid UTF-8 in JSON', type: 'application/json', body: Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0xfe, 0x22, 0x7d]).toString('latin1') },
];

describe('hostile HTTP bodies on every route', () => {
  let server: TestServer;
  let pk: string;
  let dev: DeviceCredentials;
  let routes: { method: string; path: string; takesBody: boolean }[] = [];

  before(async () => {
    server = await startTestServer();
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'hostile http', dynamicRegistration: true, nodeType: 'GATEWAY' });
    pk = p.productKey;
    const [d] = await reg.createDevices(pk, { deviceNames: ['http-dev'] });
    dev = { productKey: pk, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret };
    const spec = (await (await fetch(`${server.api}/openapi.json`)).json()) as { paths: Record<string, Record<string, { requestBody?: unknown }>> };
    for (const [p, methods] of Object.entries(spec.paths)) {
      // Import routes stream their body (no JSON schema in the spec) but read one all the same.
      for (const [m, op] of Object.entries(methods)) routes.push({ method: m.toUpperCase(), path: p, takesBody: op.requestBody !== undefined || (m === 'post' && p.includes('/import/')) });
    }
  });
  after(async () => {
    await server.stop();
  });

  /** Fills path parameters with the real product and device, so refusals are about the body. */
  function concrete(path: string): string {
    return path
      .replace(/\{productKey\}|:productKey/g, pk)
      .replace(/\{deviceName\}|:deviceName/g, 'http-dev')
      .replace(/\{subProductKey\}|:subProductKey/g, pk)
      .replace(/\{subDeviceName\}|:subDeviceName/g, 'http-dev')
      .replace(/\{[^}]+\}|:[A-Za-z]+/g, 'x0000000');
  }

  async function state() {
    const s = server.running.ctx.store;
    return {
      products: (await s.listProducts(0, 1000)).total,
      devices: await s.countDevices(pk),
      apps: (await s.listApplications()).length,
      tokens: (await s.listManagementTokens()).length,
      product: JSON.stringify(await s.getProduct(pk)),
      device: JSON.stringify(await s.getDevice(pk, 'http-dev')),
      audit: (await server.running.ctx.services.audit.query({ limit: 100_000 })).filter((e) => e.result === 'ok' && e.action.startsWith('api.')).length,
    };
  }

  it('the management API lists a reasonable number of routes (the test below covers each)', () => {
    assert.ok(routes.length >= 20, `only ${routes.length} routes in /openapi.json`);
    assert.ok(routes.some((r) => r.method === 'POST' && r.path.includes('import')));
  });

  // Routes that take no body (GET, DELETE of one resource, POST actions such as disable)
  // ignore one, as HTTP allows; every route that reads a body must refuse a hostile one.
  it('management API: every route that takes a body refuses every hostile body with 4xx JSON {code, message}; nothing is written', async () => {
    const before = await state();
    let checked = 0;
    for (const r of routes) {
      if (!r.takesBody) continue;
      for (const b of BODIES) {
        const res = await fetch(server.api + concrete(r.path), {
          method: r.method,
          headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': b.type },
          body: b.body,
        });
        const text = await res.text();
        const where = `${r.method} ${r.path} with ${b.name}`;
        assert.ok(res.status >= 400 && res.status < 500, `${where}: HTTP ${res.status} ${text.slice(0, 200)}`);
        const j = JSON.parse(text);
        assert.equal(typeof j.code, 'string', where);
        assert.equal(typeof j.message, 'string', where);
        assert.ok(text.length < 4_096, `${where}: the refusal echoes the body (${text.length} bytes)`);
        checked++;
      }
    }
    assert.ok(checked >= 8 * BODIES.length, `only ${checked / BODIES.length} routes take a body`);
    console.log(`# ${checked / BODIES.length} management routes take a body; each refused ${BODIES.length} hostile bodies`);
    assert.deepEqual(await state(), before);
  });

  it('management API: hostile query strings and path parameters on GET routes are refused with 4xx or answered, never 5xx', async () => {
    for (const r of routes) {
      if (r.method !== 'GET') continue;
      for (const q of ['?limit=abc', '?offset=-1', '?limit=100000', '?since=%ZZ', '?status=EXPLODED', `?name=${'n'.repeat(10_000)}`]) {
        const res = await fetch(server.api + concrete(r.path) + q, { headers: { authorization: `Bearer ${server.adminToken}` } });
        assert.ok(res.status < 500, `GET ${r.path}${q.slice(0, 30)}: HTTP ${res.status}`);
        if (res.headers.get('content-type')?.startsWith('text/event-stream')) await res.body?.cancel();
        else await res.arrayBuffer();
      }
      const longParam = r.path.replace(/\{[^}]+\}|:[A-Za-z]+/g, 'z'.repeat(5_000));
      const res = await fetch(server.api + longParam, { headers: { authorization: `Bearer ${server.adminToken}` } });
      assert.ok(res.status < 500, `GET ${longParam.slice(0, 60)}: HTTP ${res.status}`);
      // GET /events/stream (Server-Sent Events) never ends its body: read none of it.
      if (res.headers.get('content-type')?.startsWith('text/event-stream')) await res.body?.cancel();
      else await res.arrayBuffer();
    }
  });

  it('device HTTPS (/auth, /auth/register/device, /topic/...): hostile bodies get the protocol error code, nothing written', async () => {
    const before = await state();
    const cases: { path: string; headers: Record<string, string>; body: string | Buffer; okCodes: number[] }[] = [];
    for (const b of BODIES) {
      cases.push({ path: '/auth', headers: { 'content-type': b.type }, body: b.body, okCodes: [10001, 20000] });
      cases.push({ path: '/auth/register/device', headers: { 'content-type': b.type }, body: b.body, okCodes: [460] });
      cases.push({ path: `/topic/sys/${pk}/http-dev/thing/event/property/post`, headers: { 'content-type': b.type, password: 'not-a-token' }, body: b.body, okCodes: [10001, 20003] });
    }
    cases.push({ path: '/auth', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ productKey: pk, deviceName: 'x'.repeat(300 * 1024) }), okCodes: [10001] });
    cases.push({ path: '/auth/register/device', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'productKey=' + 'k'.repeat(300 * 1024), okCodes: [460] });
    cases.push({ path: '/auth/register/device', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `productKey=${pk}&deviceName=http-dev&random=1&sign[]=a&sign[]=b`, okCodes: [460] });
    cases.push({ path: '/auth/register/device', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: `productKey=${pk}&deviceName=%FF%FE&random=1&sign=00`, okCodes: [460] });
    for (const c of cases) {
      const r = await deviceHttps(server, c.path, c.body, c.headers);
      const where = `${c.path} ${c.headers['content-type']} ${String(c.body).slice(0, 40)}`;
      assert.equal(r.status, 200, `${where}: HTTP ${r.status} ${r.text.slice(0, 200)}`);
      assert.ok(r.json, `${where}: not JSON: ${r.text.slice(0, 100)}`);
      assert.ok(c.okCodes.includes(r.json.code), `${where}: code ${r.json.code} ${r.json.message}`);
      assert.equal(typeof r.json.message, 'string');
      assert.ok(r.text.length < 4_096, `${where}: the refusal echoes the body`);
    }
    assert.deepEqual(await state(), before);

    // Still serving: /auth answers a good request, the device connects over MQTT.
    const clientId = `${pk}.http-dev`;
    const sign = createHmac('sha1', dev.deviceSecret).update(`clientId${clientId}deviceNamehttp-devproductKey${pk}`).digest('hex');
    const good = await deviceHttps(server, '/auth', JSON.stringify({ productKey: pk, deviceName: 'http-dev', clientId, sign, signmethod: 'hmacsha1' }), { 'content-type': 'application/json' });
    assert.equal(good.json.code, 0);
    (await connectClient(server, 'mqtt', signedConnect(dev))).end(true);
  });
});
