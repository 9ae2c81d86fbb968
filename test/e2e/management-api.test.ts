/**
 * The management API over real HTTP against a real server with a real SQLite file: every
 * route, every refusal (and that refusals write nothing), concurrency, and secret hygiene.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { startTestServer, type TestServer } from '../helpers/server.js';

let s: TestServer;

before(async () => {
  s = await startTestServer({ deviceLimit: '1000' });
});
after(async () => {
  await s?.stop();
});

async function newProduct(extra: Record<string, unknown> = {}): Promise<{ productKey: string; productSecret: string }> {
  const r = await s.request('POST', '/api/v1/products', { productName: 'Test product', ...extra });
  assert.equal(r.status, 201, JSON.stringify(r.body));
  return r.body;
}

async function deviceCount(pk: string): Promise<number> {
  const r = await s.request('GET', `/api/v1/products/${pk}/devices?limit=1`);
  assert.equal(r.status, 200);
  return r.body.total;
}

async function productCount(): Promise<number> {
  const r = await s.request('GET', '/api/v1/products?limit=1');
  assert.equal(r.status, 200);
  return r.body.total;
}

function assertError(r: { status: number; body: any }, status: number, code: string, field?: string) {
  assert.equal(r.status, status, JSON.stringify(r.body));
  assert.equal(r.body.code, code, JSON.stringify(r.body));
  assert.equal(typeof r.body.message, 'string');
  if (field !== undefined) {
    assert.equal(r.body.field, field, JSON.stringify(r.body));
    assert.match(r.body.message, new RegExp(field.replace(/[[\]]/g, '\\$&')));
  }
}

describe('auth and documents', () => {
  it('/healthz and /openapi.json need no token; every /api route does', async () => {
    assert.equal((await s.request('GET', '/healthz', undefined, null)).status, 200);
    const doc = await s.request('GET', '/openapi.json', undefined, null);
    assert.equal(doc.status, 200);
    assert.equal(doc.body.openapi, '3.0.3');
    for (const p of [
      '/api/v1/products',
      '/api/v1/products/{productKey}',
      '/api/v1/products/{productKey}/secret',
      '/api/v1/products/{productKey}/devices',
      '/api/v1/products/{productKey}/devices/batch',
      '/api/v1/products/{productKey}/device-credentials',
      '/api/v1/products/{productKey}/devices/{deviceName}',
      '/api/v1/products/{productKey}/devices/{deviceName}/secret',
      '/api/v1/products/{productKey}/devices/{deviceName}/enable',
      '/api/v1/products/{productKey}/devices/{deviceName}/disable',
      '/api/v1/products/{productKey}/devices/{deviceName}/reset',
      '/api/v1/health',
    ]) {
      assert.ok(doc.body.paths[p], `openapi documents ${p}`);
    }
    // Request schemas are in the document, unknown fields refused there too.
    assert.equal(doc.body.paths['/api/v1/products'].post.requestBody.content['application/json'].schema.additionalProperties, false);

    const { productKey } = await newProduct();
    const routes: [string, string][] = [
      ['GET', '/api/v1/products'],
      ['GET', '/api/v1/health'],
      ['POST', '/api/v1/products'],
      ['GET', `/api/v1/products/${productKey}`],
      ['PATCH', `/api/v1/products/${productKey}`],
      ['DELETE', `/api/v1/products/${productKey}`],
      ['GET', `/api/v1/products/${productKey}/secret`],
      ['GET', `/api/v1/products/${productKey}/devices`],
      ['POST', `/api/v1/products/${productKey}/devices`],
      ['POST', `/api/v1/products/${productKey}/devices/batch`],
      ['GET', `/api/v1/products/${productKey}/device-credentials`],
      ['GET', `/api/v1/products/${productKey}/devices/dev-0001`],
      ['DELETE', `/api/v1/products/${productKey}/devices/dev-0001`],
      ['GET', `/api/v1/products/${productKey}/devices/dev-0001/secret`],
      ['POST', `/api/v1/products/${productKey}/devices/dev-0001/enable`],
      ['POST', `/api/v1/products/${productKey}/devices/dev-0001/disable`],
      ['POST', `/api/v1/products/${productKey}/devices/dev-0001/reset`],
    ];
    const before = await productCount();
    for (const [method, path] of routes) {
      const body = method === 'POST' || method === 'PATCH' ? { productName: 'Sneaky product', deviceName: 'dev-0001' } : undefined;
      assertError(await s.request(method, path, body, null), 401, 'UNAUTHENTICATED');
      assertError(await s.request(method, path, body, 'wrong-token-wrong-token'), 401, 'UNAUTHENTICATED');
    }
    assert.equal(await productCount(), before, 'nothing was written without a token');
    assert.equal(await deviceCount(productKey), 0);
    assert.ok((await s.request('GET', `/api/v1/products/${productKey}`)).status === 200, 'the unauthenticated DELETE did not delete');
  });

  it('a read-scope token may list and get, but not read secrets or change anything', async () => {
    const { productKey } = await newProduct();
    await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'read-dev' });
    const made = await s.request('POST', '/api/v1/tokens', { name: 'reader', scope: 'read' });
    assert.equal(made.status, 201, JSON.stringify(made.body));
    const read = made.body.token as string;
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}`, undefined, read)).status, 200);
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}/devices/read-dev`, undefined, read)).status, 200);
    for (const path of [`/api/v1/products/${productKey}/secret`, `/api/v1/products/${productKey}/devices/read-dev/secret`, `/api/v1/products/${productKey}/device-credentials`]) {
      assertError(await s.request('GET', path, undefined, read), 403, 'FORBIDDEN');
    }
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'read-dev-2' }, read), 403, 'FORBIDDEN');
    assert.equal(await deviceCount(productKey), 1);
  });

  it('unknown routes are a JSON 404', async () => {
    assertError(await s.request('GET', '/api/v1/nothing-here'), 404, 'NOT_FOUND');
  });
});

describe('products', () => {
  it('create returns the secret once; get and list never do; the secret endpoint does', async () => {
    const created = await s.request('POST', '/api/v1/products', {
      productName: 'Smart plug 2',
      nodeType: 'GATEWAY',
      dynamicRegistration: true,
      preRegistrationFree: true,
      description: 'plugs',
    });
    assert.equal(created.status, 201);
    const p = created.body;
    assert.match(p.productKey, /^a1[A-Za-z0-9]{9}$/);
    assert.match(p.productSecret, /^[A-Za-z0-9]{16}$/);
    assert.equal(p.nodeType, 'GATEWAY');
    assert.equal(p.dynamicRegistration, true);
    assert.equal(p.preRegistrationFree, true);
    assert.ok(!Number.isNaN(Date.parse(p.createdAt)));

    const got = await s.request('GET', `/api/v1/products/${p.productKey}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.productName, 'Smart plug 2');
    assert.equal(got.body.productSecret, undefined);
    assert.ok(!JSON.stringify(got.body).includes(p.productSecret));

    const list = await s.request('GET', '/api/v1/products?limit=1000');
    assert.equal(list.status, 200);
    assert.ok(list.body.items.some((x: any) => x.productKey === p.productKey));
    assert.ok(!JSON.stringify(list.body).includes(p.productSecret), 'no secret in the list');

    const secret = await s.request('GET', `/api/v1/products/${p.productKey}/secret`);
    assert.deepEqual(secret.body, { productKey: p.productKey, productSecret: p.productSecret });
  });

  it('defaults: DEVICE, both registration switches off', async () => {
    const p = await newProduct();
    const got = await s.request('GET', `/api/v1/products/${p.productKey}`);
    assert.equal(got.body.nodeType, 'DEVICE');
    assert.equal(got.body.dynamicRegistration, false);
    assert.equal(got.body.preRegistrationFree, false);
  });

  it('list pages with offset and limit', async () => {
    for (let i = 0; i < 3; i++) await newProduct();
    const all = await s.request('GET', '/api/v1/products?limit=1000');
    const page = await s.request('GET', '/api/v1/products?offset=1&limit=2');
    assert.equal(page.status, 200);
    assert.equal(page.body.total, all.body.total);
    assert.equal(page.body.offset, 1);
    assert.equal(page.body.limit, 2);
    assert.deepEqual(
      page.body.items.map((x: any) => x.productKey),
      all.body.items.slice(1, 3).map((x: any) => x.productKey),
    );
    assertError(await s.request('GET', '/api/v1/products?limit=0'), 400, 'INVALID_ARGUMENT', 'limit');
    assertError(await s.request('GET', '/api/v1/products?limit=many'), 400, 'INVALID_ARGUMENT', 'limit');
    assertError(await s.request('GET', '/api/v1/products?colour=red'), 400, 'INVALID_ARGUMENT', 'colour');
  });

  it('create refusals name the field and write nothing', async () => {
    const before = await productCount();
    assertError(await s.request('POST', '/api/v1/products', {}), 400, 'INVALID_ARGUMENT', 'productName');
    assertError(await s.request('POST', '/api/v1/products', { productName: 42 }), 400, 'INVALID_ARGUMENT', 'productName');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'ab' }), 400, 'INVALID_ARGUMENT', 'productName');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'bad/name!' }), 400, 'INVALID_ARGUMENT', 'productName');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Good name', colour: 'red' }), 400, 'INVALID_ARGUMENT', 'colour');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Good name', nodeType: 'ROUTER' }), 400, 'INVALID_ARGUMENT', 'nodeType');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Good name', dynamicRegistration: 'yes' }), 400, 'INVALID_ARGUMENT', 'dynamicRegistration');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Good name', preRegistrationFree: true }), 400, 'INVALID_ARGUMENT', 'preRegistrationFree');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Good name', deviceLimit: 0 }), 400, 'INVALID_ARGUMENT', 'deviceLimit');
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Good name', productKey: 'no!' }), 400, 'INVALID_ARGUMENT', 'productKey');
    assertError(await s.request('POST', '/api/v1/products', '{"productName": '), 400, 'INVALID_ARGUMENT');
    assertError(await s.request('POST', '/api/v1/products', '[1,2]'), 400, 'INVALID_ARGUMENT');
    assert.equal(await productCount(), before);
  });

  it('a migrated ProductKey is kept, and a duplicate one is 409', async () => {
    const r = await s.request('POST', '/api/v1/products', { productName: 'Migrated one', productKey: 'a1Migrated7', productSecret: 'MigratedSecret01' });
    assert.equal(r.status, 201);
    assert.equal(r.body.productKey, 'a1Migrated7');
    assert.equal(r.body.productSecret, 'MigratedSecret01');
    const before = await productCount();
    assertError(await s.request('POST', '/api/v1/products', { productName: 'Migrated two', productKey: 'a1Migrated7' }), 409, 'PRODUCT_KEY_TAKEN');
    assert.equal(await productCount(), before);
    assert.equal((await s.request('GET', '/api/v1/products/a1Migrated7')).body.productName, 'Migrated one');
  });

  it('oversized bodies are 413 and write nothing', async () => {
    const before = await productCount();
    const r = await s.request('POST', '/api/v1/products', JSON.stringify({ productName: 'Big one', description: 'x'.repeat(2 * 1024 * 1024) }));
    assertError(r, 413, 'PAYLOAD_TOO_LARGE');
    assert.equal(await productCount(), before);
  });

  it('update changes fields; refusals write nothing', async () => {
    const { productKey } = await newProduct();
    const r = await s.request('PATCH', `/api/v1/products/${productKey}`, { productName: 'Renamed product', dynamicRegistration: true, deviceLimit: 5 });
    assert.equal(r.status, 200);
    assert.equal(r.body.productName, 'Renamed product');
    assert.equal(r.body.deviceLimit, 5);
    assert.equal(r.body.productSecret, undefined);
    const back = await s.request('PATCH', `/api/v1/products/${productKey}`, { deviceLimit: null });
    assert.equal(back.body.deviceLimit, null);

    assertError(await s.request('PATCH', `/api/v1/products/${productKey}`, { productSecret: 'x' }), 400, 'INVALID_ARGUMENT', 'productSecret');
    assertError(await s.request('PATCH', `/api/v1/products/${productKey}`, { productName: 'x' }), 400, 'INVALID_ARGUMENT', 'productName');
    assertError(await s.request('PATCH', `/api/v1/products/${productKey}`, { requireTls: 1 }), 400, 'INVALID_ARGUMENT', 'requireTls');
    assertError(await s.request('PATCH', `/api/v1/products/${productKey}`, {}), 400, 'INVALID_ARGUMENT');
    assertError(await s.request('PATCH', '/api/v1/products/a1NoSuchPK0', { productName: 'Whatever name' }), 404, 'PRODUCT_NOT_FOUND');
    const now = await s.request('GET', `/api/v1/products/${productKey}`);
    assert.equal(now.body.productName, 'Renamed product');
    assert.equal(now.body.requireTls, false);

    // nodeType is fixed once devices exist.
    await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'first-dev' });
    assertError(await s.request('PATCH', `/api/v1/products/${productKey}`, { nodeType: 'GATEWAY' }), 409, 'CONFLICT', 'nodeType');
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}`)).body.nodeType, 'DEVICE');
  });

  it('delete is refused while devices exist, works after, then 404', async () => {
    const { productKey } = await newProduct();
    await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'only-dev' });
    assertError(await s.request('DELETE', `/api/v1/products/${productKey}`), 409, 'PRODUCT_HAS_DEVICES');
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}`)).status, 200);
    assert.equal((await s.request('DELETE', `/api/v1/products/${productKey}/devices/only-dev`)).status, 204);
    assert.equal((await s.request('DELETE', `/api/v1/products/${productKey}`)).status, 204);
    assertError(await s.request('GET', `/api/v1/products/${productKey}`), 404, 'PRODUCT_NOT_FOUND');
    assertError(await s.request('DELETE', `/api/v1/products/${productKey}`), 404, 'PRODUCT_NOT_FOUND');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/secret`), 404, 'PRODUCT_NOT_FOUND');
  });
});

describe('devices', () => {
  it('register one by name: secret in the response, not in get or list', async () => {
    const { productKey } = await newProduct();
    const r = await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'sensor:01@a.b_c-d', nickname: 'Kitchen' });
    assert.equal(r.status, 201);
    assert.equal(r.body.deviceName, 'sensor:01@a.b_c-d');
    assert.equal(r.body.productKey, productKey);
    assert.equal(r.body.status, 'UNACTIVE');
    assert.equal(r.body.nickname, 'Kitchen');
    assert.match(r.body.deviceSecret, /^[A-Za-z0-9]{32}$/);
    assert.match(r.body.iotId, /^[A-Za-z0-9]{30}$/);
    const secret = r.body.deviceSecret as string;

    const got = await s.request('GET', `/api/v1/products/${productKey}/devices/${encodeURIComponent('sensor:01@a.b_c-d')}`);
    assert.equal(got.status, 200);
    assert.equal(got.body.iotId, r.body.iotId);
    assert.equal(got.body.status, 'UNACTIVE');
    assert.equal(got.body.activatedAt, null);
    assert.equal(got.body.lastOnlineAt, null);
    assert.equal(got.body.gateway, null);
    assert.ok(!JSON.stringify(got.body).includes(secret));

    const list = await s.request('GET', `/api/v1/products/${productKey}/devices`);
    assert.equal(list.body.total, 1);
    assert.ok(!JSON.stringify(list.body).includes(secret));

    const sec = await s.request('GET', `/api/v1/products/${productKey}/devices/sensor:01@a.b_c-d/secret`);
    assert.equal(sec.status, 200);
    assert.equal(sec.body.deviceSecret, secret);
    assert.equal(sec.body.iotId, r.body.iotId);

    assert.ok(!s.logs.join('').includes(secret), 'the device secret is not in the server log');
  });

  it('register one with a generated name, also with a bare POST', async () => {
    const { productKey } = await newProduct();
    const a = await s.request('POST', `/api/v1/products/${productKey}/devices`, {});
    const b = await s.request('POST', `/api/v1/products/${productKey}/devices`);
    for (const r of [a, b]) {
      assert.equal(r.status, 201, JSON.stringify(r.body));
      assert.match(r.body.deviceName, /^[A-Za-z0-9\-_@.:]{4,32}$/);
    }
    assert.notEqual(a.body.deviceName, b.body.deviceName);
    assert.equal(await deviceCount(productKey), 2);
  });

  it('register refusals: 404 product, 400 name/types/fields, 409 duplicate; nothing written', async () => {
    const { productKey } = await newProduct();
    await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'taken-name' });
    assertError(await s.request('POST', '/api/v1/products/a1NoSuchPK0/devices', { deviceName: 'dev-0001' }), 404, 'PRODUCT_NOT_FOUND');
    for (const bad of ['abc', 'x'.repeat(33), 'has space', 'slash/no', 'amp&no', 'ünï-code']) {
      assertError(await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: bad }), 400, 'INVALID_ARGUMENT', 'deviceName');
    }
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 1234 }), 400, 'INVALID_ARGUMENT', 'deviceName');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'good-name', secret: 'x' }), 400, 'INVALID_ARGUMENT', 'secret');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'good-name', nickname: 'ab' }), 400, 'INVALID_ARGUMENT', 'nickname');
    const dup = await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'taken-name' });
    assertError(dup, 409, 'DEVICE_NAME_TAKEN');
    assert.match(dup.body.message, /taken-name/);
    assert.equal(await deviceCount(productKey), 1);
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices/good-name`), 404, 'DEVICE_NOT_FOUND');
  });

  it('batch by names and by count returns secrets (or only the count with credentials=false); all or nothing', async () => {
    const { productKey } = await newProduct();
    const names = Array.from({ length: 250 }, (_, i) => `batch-${String(i).padStart(4, '0')}`);
    const r = await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: names });
    assert.equal(r.status, 201);
    assert.equal(r.body.created, 250);
    assert.deepEqual(r.body.devices.map((d: any) => d.deviceName), names);
    for (const d of r.body.devices) assert.match(d.deviceSecret, /^[A-Za-z0-9]{32}$/);
    assert.equal(new Set(r.body.devices.map((d: any) => d.deviceSecret)).size, 250);

    const byCount = await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 7 });
    assert.equal(byCount.status, 201);
    assert.equal(byCount.body.devices.length, 7);
    assert.equal(await deviceCount(productKey), 257);

    // credentials=false (what `device import` sends): the count only; the devices and their secrets exist all the same.
    const quiet = await s.request('POST', `/api/v1/products/${productKey}/devices/batch?credentials=false`, { deviceNames: ['quiet-0001', 'quiet-0002'] });
    assert.equal(quiet.status, 201);
    assert.deepEqual(quiet.body, { created: 2 });
    assert.match((await s.request('GET', `/api/v1/products/${productKey}/devices/quiet-0002/secret`)).body.deviceSecret, /^[A-Za-z0-9]{32}$/);
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch?credentials=maybe`, { count: 1 }), 400, 'INVALID_ARGUMENT', 'credentials');
    assert.equal(await deviceCount(productKey), 259);

    // One taken name or one bad name refuses the whole batch.
    const withTaken = await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: ['fresh-0001', 'batch-0003', 'fresh-0002'] });
    assertError(withTaken, 409, 'DEVICE_NAME_TAKEN');
    assert.deepEqual(withTaken.body.details.names, ['batch-0003']);
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: ['fresh-0001', 'fresh-0001'] }), 409, 'DEVICE_NAME_TAKEN');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: ['fresh-0001', 'no'] }), 400, 'INVALID_ARGUMENT', 'deviceNames[1]');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: ['fresh-0001', 7] }), 400, 'INVALID_ARGUMENT', 'deviceNames[1]');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: [] }), 400, 'INVALID_ARGUMENT', 'deviceNames');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 0 }), 400, 'INVALID_ARGUMENT', 'count');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 10_001 }), 400, 'INVALID_ARGUMENT', 'count');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: '3' }), 400, 'INVALID_ARGUMENT', 'count');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, {}), 400, 'INVALID_ARGUMENT');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 2, deviceNames: ['fresh-0001'] }), 400, 'INVALID_ARGUMENT');
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 2, extra: true }), 400, 'INVALID_ARGUMENT', 'extra');
    const tooMany = Array.from({ length: 10_001 }, (_, i) => `many-${i}`);
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: tooMany }), 400, 'INVALID_ARGUMENT', 'deviceNames');
    assertError(await s.request('POST', '/api/v1/products/a1NoSuchPK0/devices/batch', { count: 2 }), 404, 'PRODUCT_NOT_FOUND');
    assert.equal(await deviceCount(productKey), 259);
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices/fresh-0001`), 404, 'DEVICE_NOT_FOUND');
  });

  it('a full 10,000-name batch is accepted', async () => {
    const { productKey } = await newProduct({ deviceLimit: 10_000 });
    const names = Array.from({ length: 10_000 }, (_, i) => `full-batch-${i}`);
    const r = await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: names });
    assert.equal(r.status, 201);
    assert.equal(r.body.created, 10_000);
    assert.equal(await deviceCount(productKey), 10_000);
    // At the product's limit now: one more is refused, naming the limit.
    const over = await s.request('POST', `/api/v1/products/${productKey}/devices`, {});
    assertError(over, 422, 'DEVICE_LIMIT_REACHED');
    assert.match(over.body.message, /limit/);
    assert.match(over.body.message, /10000/);
  });

  it('list filters by status and name substring, pages, and rejects bad filters', async () => {
    const { productKey } = await newProduct();
    await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { deviceNames: ['lamp-0001', 'lamp-0002', 'lamp-0003', 'fan-0001', 'fan-0002'] });
    await s.request('POST', `/api/v1/products/${productKey}/devices/fan-0002/disable`);

    const lamps = await s.request('GET', `/api/v1/products/${productKey}/devices?name=lamp`);
    assert.deepEqual(lamps.body.items.map((d: any) => d.deviceName), ['lamp-0001', 'lamp-0002', 'lamp-0003']);
    assert.equal(lamps.body.total, 3);
    const disabled = await s.request('GET', `/api/v1/products/${productKey}/devices?status=DISABLE`);
    assert.deepEqual(disabled.body.items.map((d: any) => d.deviceName), ['fan-0002']);
    const unactive = await s.request('GET', `/api/v1/products/${productKey}/devices?status=UNACTIVE&name=fan`);
    assert.deepEqual(unactive.body.items.map((d: any) => d.deviceName), ['fan-0001']);
    const online = await s.request('GET', `/api/v1/products/${productKey}/devices?status=ONLINE`);
    assert.equal(online.body.total, 0);
    const page = await s.request('GET', `/api/v1/products/${productKey}/devices?offset=2&limit=2`);
    assert.deepEqual(page.body.items.map((d: any) => d.deviceName), ['lamp-0003', 'fan-0001']);
    assert.equal(page.body.total, 5);
    for (const d of page.body.items) assert.equal(d.deviceSecret, undefined);

    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?status=ASLEEP`), 400, 'INVALID_ARGUMENT', 'status');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?limit=1001`), 400, 'INVALID_ARGUMENT', 'limit');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?offset=-1`), 400, 'INVALID_ARGUMENT', 'offset');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?sort=name`), 400, 'INVALID_ARGUMENT', 'sort');
    assertError(await s.request('GET', '/api/v1/products/a1NoSuchPK0/devices'), 404, 'PRODUCT_NOT_FOUND');
  });

  it('cursor paging walks DeviceName order with the filters; read scope may, no token may not', async () => {
    const { productKey } = await newProduct();
    // Created out of name order: the cursor walks names, offset paging keeps creation order.
    const names = Array.from({ length: 25 }, (_, i) => `cur-${String((i * 7) % 25).padStart(3, '0')}`);
    assert.equal((await s.request('POST', `/api/v1/products/${productKey}/devices/batch?credentials=false`, { deviceNames: names })).status, 201);
    await s.request('POST', `/api/v1/products/${productKey}/devices/cur-013/disable`);
    const reader = (await s.request('POST', '/api/v1/tokens', { name: 'cursor-reader', scope: 'read' })).body.token as string;
    const walked: string[] = [];
    let cursor = '';
    let pages = 0;
    for (;;) {
      const r = await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=${encodeURIComponent(cursor)}&limit=10`, undefined, reader);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.total, 25, 'the product count without filters');
      assert.equal(r.body.offset, undefined);
      for (const d of r.body.items) assert.equal(d.deviceSecret, undefined);
      walked.push(...r.body.items.map((d: any) => d.deviceName));
      pages++;
      if (r.body.nextCursor === null) break;
      assert.match(r.body.nextCursor, /^[A-Za-z0-9_-]+$/);
      cursor = r.body.nextCursor;
    }
    assert.equal(pages, 3);
    assert.deepEqual(walked, [...names].sort());
    // Filters keep working on the cursor; no total then (it would be a COUNT over the filters).
    const filtered = await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=&status=DISABLE&name=cur-01`);
    assert.deepEqual(filtered.body.items.map((d: any) => d.deviceName), ['cur-013']);
    assert.equal(filtered.body.total, undefined);
    assert.equal(filtered.body.nextCursor, null);
    const named = await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=&name=cur-02&limit=3`);
    assert.deepEqual(named.body.items.map((d: any) => d.deviceName), ['cur-020', 'cur-021', 'cur-022']);
    const rest = await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=${named.body.nextCursor}&name=cur-02&limit=3`);
    assert.deepEqual(rest.body.items.map((d: any) => d.deviceName), ['cur-023', 'cur-024']);
    // Offset paging is unchanged for old clients.
    const old = await s.request('GET', `/api/v1/products/${productKey}/devices?offset=1&limit=2`);
    assert.deepEqual([old.body.items.map((d: any) => d.deviceName), old.body.total, old.body.offset], [names.slice(1, 3), 25, 1]);
    // Refusals.
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=bm90LWEtY3Vyc29y`), 400, 'INVALID_ARGUMENT', 'cursor');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=%2F%2F`), 400, 'INVALID_ARGUMENT', 'cursor');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=&offset=5`), 400, 'INVALID_ARGUMENT', 'offset');
    assertError(await s.request('GET', '/api/v1/products/a1NoSuchPK0/devices?cursor='), 404, 'PRODUCT_NOT_FOUND');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices?cursor=`, undefined, null), 401, 'UNAUTHENTICATED');
  });

  it('disable, enable, reset, delete; unknown device or product is 404', async () => {
    const { productKey } = await newProduct();
    const created = await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'switch-01' });
    const dis = await s.request('POST', `/api/v1/products/${productKey}/devices/switch-01/disable`);
    assert.equal(dis.status, 200);
    assert.equal(dis.body.status, 'DISABLE');
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}/devices/switch-01`)).body.status, 'DISABLE');
    const en = await s.request('POST', `/api/v1/products/${productKey}/devices/switch-01/enable`);
    assert.equal(en.body.status, 'UNACTIVE');

    // An activated device goes back to UNACTIVE on reset and keeps its secret.
    const device = await s.running.ctx.store.getDevice(productKey, 'switch-01');
    await s.running.ctx.store.markOnline(device!.iotId, new Date().toISOString());
    await s.running.ctx.store.markOffline([device!.iotId], new Date().toISOString());
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}/devices/switch-01`)).body.status, 'OFFLINE');
    const reset = await s.request('POST', `/api/v1/products/${productKey}/devices/switch-01/reset`);
    assert.equal(reset.status, 200);
    assert.equal(reset.body.status, 'UNACTIVE');
    assert.equal(reset.body.activatedAt, null);
    assert.equal((await s.request('GET', `/api/v1/products/${productKey}/devices/switch-01/secret`)).body.deviceSecret, created.body.deviceSecret);

    for (const action of ['enable', 'disable', 'reset']) {
      assertError(await s.request('POST', `/api/v1/products/${productKey}/devices/ghost-01/${action}`), 404, 'DEVICE_NOT_FOUND');
      assertError(await s.request('POST', `/api/v1/products/a1NoSuchPK0/devices/switch-01/${action}`), 404, 'PRODUCT_NOT_FOUND');
    }
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices/ghost-01/secret`), 404, 'DEVICE_NOT_FOUND');
    assertError(await s.request('GET', `/api/v1/products/a1NoSuchPK0/devices/switch-01`), 404, 'PRODUCT_NOT_FOUND');
    assertError(await s.request('DELETE', `/api/v1/products/${productKey}/devices/ghost-01`), 404, 'DEVICE_NOT_FOUND');

    assert.equal((await s.request('DELETE', `/api/v1/products/${productKey}/devices/switch-01`)).status, 204);
    assertError(await s.request('GET', `/api/v1/products/${productKey}/devices/switch-01`), 404, 'DEVICE_NOT_FOUND');
    assertError(await s.request('DELETE', `/api/v1/products/${productKey}/devices/switch-01`), 404, 'DEVICE_NOT_FOUND');
    assert.equal(await deviceCount(productKey), 0);
  });

  it('the device limit (per product) is enforced and named; nothing beyond it is written', async () => {
    const { productKey } = await newProduct({ deviceLimit: 3 });
    await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 2 });
    const batch = await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 2 });
    assertError(batch, 422, 'DEVICE_LIMIT_REACHED');
    assert.match(batch.body.message, /limit/);
    assert.match(batch.body.message, /\b3\b/);
    assert.equal(batch.body.details.limit, 3);
    assert.equal(await deviceCount(productKey), 2);
    assert.equal((await s.request('POST', `/api/v1/products/${productKey}/devices`, {})).status, 201);
    assertError(await s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'one-too-many' }), 422, 'DEVICE_LIMIT_REACHED');
    assert.equal(await deviceCount(productKey), 3);
  });

  it('50 parallel creates of the same name give exactly one device', async () => {
    const { productKey } = await newProduct();
    const results = await Promise.all(
      Array.from({ length: 50 }, () => s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: 'race-name' })),
    );
    assert.equal(results.filter((r) => r.status === 201).length, 1);
    assert.equal(results.filter((r) => r.status === 409 && r.body.code === 'DEVICE_NAME_TAKEN').length, 49);
    assert.equal(await deviceCount(productKey), 1);
  });

  it('parallel creates never exceed the limit', async () => {
    const { productKey } = await newProduct({ deviceLimit: 10 });
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => s.request('POST', `/api/v1/products/${productKey}/devices`, { deviceName: `par-${String(i).padStart(3, '0')}` })),
    );
    assert.equal(results.filter((r) => r.status === 201).length, 10);
    assert.equal(results.filter((r) => r.status === 422).length, 30);
    assert.equal(await deviceCount(productKey), 10);
  });

  it('credentials export streams CSV with every device and its secret', async () => {
    const { productKey } = await newProduct({ deviceLimit: 5000 });
    const created = await s.request('POST', `/api/v1/products/${productKey}/devices/batch`, { count: 2500 });
    assert.equal(created.status, 201);
    const res = await fetch(`${s.api}/api/v1/products/${productKey}/device-credentials?format=csv`, { headers: { authorization: `Bearer ${s.adminToken}` } });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /text\/csv/);
    const lines = (await res.text()).trimEnd().split('\n');
    assert.equal(lines[0], 'ProductKey,DeviceName,DeviceSecret');
    assert.equal(lines.length, 2501);
    const expected = new Set(created.body.devices.map((d: any) => `${productKey},${d.deviceName},${d.deviceSecret}`));
    assert.deepEqual(new Set(lines.slice(1)), expected);
    assertError(await s.request('GET', '/api/v1/products/a1NoSuchPK0/device-credentials'), 404, 'PRODUCT_NOT_FOUND');
    assertError(await s.request('GET', `/api/v1/products/${productKey}/device-credentials?format=xml`), 400, 'INVALID_ARGUMENT', 'format');
  });

  it('the server-wide device limit applies when the product sets none', async () => {
    const small = await startTestServer({ deviceLimit: '2' });
    try {
      const p = await small.request('POST', '/api/v1/products', { productName: 'Small server' });
      assert.equal((await small.request('POST', `/api/v1/products/${p.body.productKey}/devices/batch`, { count: 2 })).status, 201);
      const r = await small.request('POST', `/api/v1/products/${p.body.productKey}/devices`, {});
      assertError(r, 422, 'DEVICE_LIMIT_REACHED');
      assert.match(r.body.message, /at most 2 devices/);
    } finally {
      await small.stop();
    }
  });
});

describe('health', () => {
  it('GET /api/v1/health: real listener ports, store, keys, version, cluster; read scope may, no token may not', async () => {
    const reader = (await s.request('POST', '/api/v1/tokens', { name: 'health-reader', scope: 'read' })).body.token as string;
    const r = await s.request('GET', '/api/v1/health', undefined, reader);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const ports = s.running.ctx.listenerPorts!;
    assert.ok(Object.keys(ports).length >= 3, JSON.stringify(ports));
    assert.deepEqual(r.body.listeners.map((l: any) => [l.name, l.port]).sort(), Object.entries(ports).sort());
    const mqtt = r.body.listeners.find((l: any) => l.name === 'mqtt');
    assert.ok(mqtt && mqtt.port > 0 && mqtt.port === ports.mqtt, JSON.stringify(r.body.listeners));
    assert.match(mqtt.url, new RegExp(`^mqtts?://\\S+:${mqtt.port}\\b`));
    const mgmt = r.body.listeners.find((l: any) => l.name === 'management-http');
    assert.equal(new URL(mgmt.url).port, new URL(s.api).port);
    assert.deepEqual(r.body.store, { kind: 'sqlite', reachable: true });
    assert.equal(r.body.keys.state, 'idle');
    assert.equal(r.body.keys.olderKeys, 0);
    assert.equal(JSON.stringify(r.body).includes(s.running.ctx.services.keyRotation.current().currentKeyId), false, 'no key id for a read token');
    assert.match(r.body.version, /^\d+\.\d+\.\d+/);
    assert.deepEqual(r.body.cluster, s.running.ctx.cluster.status());
    assert.equal(r.body.cluster.mode, 'single');
    assert.deepEqual(r.body.nodes.map((n: any) => n.nodeId), [r.body.cluster.nodeId]);
    assertError(await s.request('GET', '/api/v1/health', undefined, null), 401, 'UNAUTHENTICATED');
    assertError(await s.request('GET', '/api/v1/health', undefined, 'not-a-token-at-all-0000000000'), 401, 'UNAUTHENTICATED');
  });
});
