/**
 * POST /api/v1/import/{products,devices} and GET /api/v1/export/... over real HTTP against a
 * real server: CSV edge cases with line numbers, dry run writes nothing, conflicts are
 * reported and never overwritten unless asked, re-runs are idempotent, the device limit
 * holds, export -> import round trips unchanged, and bad requests are refused cleanly.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import { connectClient, connectRefusal, endClient, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { CSV, JSONL, deviceSnapshot, exportDevices, exportProducts, importFile, jsonl } from './import-helpers.js';
import { postRegister, registerForm } from './registration-helpers.js';

const S = (n: number) => `Secret${String(n).padStart(26, '0')}`;

async function newProduct(server: TestServer, productKey: string, extra: Record<string, unknown> = {}) {
  const r = await importFile(server, 'products', jsonl([{ productKey, productSecret: `PS${productKey}0000`, productName: `product ${productKey}`, ...extra }]), { contentType: JSONL });
  assert.equal(r.body.created, 1, JSON.stringify(r.body));
}

describe('import API', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it('reads the console CSV with any column order and case, BOM, CRLF, quotes and blank lines; bad rows are reported with their line numbers', async () => {
    await newProduct(server, 'a1CsvEdge01');
    const csv =
      '\ufeffdevicename,DEVICESECRET,Nickname,ProductKey\r\n' +
      `dev-001,${S(1)},"hall, ""main"" lamp",a1CsvEdge01\r\n` +
      '\r\n' +
      `dev-002,${S(2)},"two\r\nlines",a1CsvEdge01\r\n` + // quoted CRLF: the record spans lines 4-5
      `x,${S(3)},,a1CsvEdge01\r\n` + // line 6: name too short
      `dev-004,short,,a1CsvEdge01\r\n` + // line 7: secret too short
      `dev-005,${S(5)},,a1NoSuchPK1\r\n` + // line 8: unknown product
      `dev-001,${S(6)},,a1CsvEdge01\r\n` + // line 9: duplicate in the file
      `dev-010,${S(10)},,a1CsvEdge01`; // line 10, no final newline
    const r = await importFile(server, 'devices', csv);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.rows, 7);
    assert.equal(r.body.created, 3);
    assert.deepEqual(
      r.body.invalid.map((e) => e.line),
      [6, 7, 8, 9],
    );
    assert.match(r.body.invalid[0]!.message, /deviceName must be 4-32/);
    assert.match(r.body.invalid[1]!.message, /deviceSecret must be 8-64 alphanumerics/);
    assert.match(r.body.invalid[2]!.message, /product a1NoSuchPK1 does not exist/);
    assert.equal(r.body.invalid[3]!.message, 'device a1CsvEdge01/dev-001 already appears on line 2');
    const snap = await deviceSnapshot(server, 'a1CsvEdge01');
    assert.deepEqual(
      snap.map((d) => [d.deviceName, d.deviceSecret, d.nickname]),
      [
        ['dev-001', S(1), 'hall, "main" lamp'],
        ['dev-002', S(2), 'two\r\nlines'],
        ['dev-010', S(10), null],
      ],
    );
  });

  it('refuses a file without the header row with 400 naming line 1, and writes nothing', async () => {
    await newProduct(server, 'a1NoHeader1');
    const r = await importFile(server, 'devices', `a1NoHeader1,dev-001,${S(1)}\n`);
    assert.equal(r.status, 400);
    assert.equal(r.body.code, 'INVALID_ARGUMENT');
    assert.equal(r.body.field, 'body');
    assert.match(r.body.message!, /^line 1: the first row must be a header naming the columns ProductKey, DeviceName, DeviceSecret/);
    assert.equal(await server.running.ctx.store.countDevices('a1NoHeader1'), 0);
  });

  it('a dry run classifies every row exactly as the real run then does, and writes nothing', async () => {
    await newProduct(server, 'a1DryRun001');
    await importFile(server, 'devices', `ProductKey,DeviceName,DeviceSecret\na1DryRun001,dev-001,${S(1)}\na1DryRun001,dev-002,${S(2)}\n`);
    const before = await deviceSnapshot(server, 'a1DryRun001');
    const file = `ProductKey,DeviceName,DeviceSecret\na1DryRun001,dev-001,${S(1)}\na1DryRun001,dev-002,${S(99)}\na1DryRun001,dev-003,${S(3)}\na1DryRun001,bad name,${S(4)}\n`;
    const dry = await importFile(server, 'devices', file, { query: { dryRun: 'true' } });
    assert.equal(dry.status, 200);
    assert.equal(dry.body.dryRun, true);
    assert.deepEqual(await deviceSnapshot(server, 'a1DryRun001'), before, 'the dry run changed nothing');
    assert.equal(await server.running.ctx.store.countDevices('a1DryRun001'), 2);
    const real = await importFile(server, 'devices', file);
    assert.deepEqual({ ...dry.body, dryRun: false }, real.body);
    assert.deepEqual([real.body.created, real.body.identical, real.body.conflictCount, real.body.invalidCount], [1, 1, 1, 1]);

    // Products too: a dry run creates no product.
    const p = await importFile(server, 'products', jsonl([{ productKey: 'a1DryRunPK2', productSecret: 'DryRunProductSecret1', productName: 'dry run product' }]), {
      contentType: JSONL,
      query: { dryRun: 'true' },
    });
    assert.equal(p.body.created, 1);
    assert.equal(await server.running.ctx.store.getProduct('a1DryRunPK2'), undefined);
  });

  it('a different secret is a conflict and is not written; overwrite=true replaces it and logins follow at once', async () => {
    await newProduct(server, 'a1Conflict1');
    const store = server.running.ctx.store;
    await importFile(server, 'devices', `ProductKey,DeviceName,DeviceSecret\na1Conflict1,dev-001,${S(1)}\n`);
    const dev = { productKey: 'a1Conflict1', deviceName: 'dev-001' };
    // A login first, so any cache in the broker holds the old secret.
    await endClient(await connectClient(server, 'mqtt', signedConnect({ ...dev, deviceSecret: S(1) })));

    const changed = `ProductKey,DeviceName,DeviceSecret\n\na1Conflict1,dev-001,${S(2)}\n`;
    const c = await importFile(server, 'devices', changed);
    assert.equal(c.status, 200);
    assert.deepEqual(c.body.conflicts, [{ line: 3, productKey: 'a1Conflict1', deviceName: 'dev-001', message: 'deviceSecret differs from the existing device (use overwrite to replace it)' }]);
    assert.equal(c.body.overwritten, 0);
    assert.equal((await store.getDevice('a1Conflict1', 'dev-001'))!.deviceSecret, S(1));
    assert.ok(!JSON.stringify(c.body).includes(S(2)) && !JSON.stringify(c.body).includes(S(1)), 'no secret in the summary');

    const o = await importFile(server, 'devices', changed, { query: { overwrite: 'true' } });
    assert.deepEqual([o.body.overwritten, o.body.conflictCount, o.body.created], [1, 0, 0]);
    assert.equal((await store.getDevice('a1Conflict1', 'dev-001'))!.deviceSecret, S(2));
    await endClient(await connectClient(server, 'mqtt', signedConnect({ ...dev, deviceSecret: S(2) })));
    const old = await connectRefusal(server, 'mqtt', signedConnect({ ...dev, deviceSecret: S(1) }));
    assert.notEqual(old.code, 0, 'the replaced secret no longer logs in');
  });

  it('re-running an import is idempotent: everything identical, nothing changes (iotIds included)', async () => {
    await newProduct(server, 'a1ReRun0001');
    const file = `ProductKey,DeviceName,DeviceSecret\n${Array.from({ length: 50 }, (_, i) => `a1ReRun0001,dev-${i},${S(i)}`).join('\n')}\n`;
    const first = await importFile(server, 'devices', file);
    assert.equal(first.body.created, 50);
    const snap = await deviceSnapshot(server, 'a1ReRun0001');
    const second = await importFile(server, 'devices', file);
    assert.deepEqual([second.body.created, second.body.identical, second.body.conflictCount, second.body.invalidCount], [0, 50, 0, 0]);
    assert.deepEqual(await deviceSnapshot(server, 'a1ReRun0001'), snap);
  });

  it('respects the product device limit: rows beyond it are invalid with their line numbers, the rest land', async () => {
    await newProduct(server, 'a1Limited01', { deviceLimit: 3 });
    await importFile(server, 'devices', `ProductKey,DeviceName,DeviceSecret\na1Limited01,dev-000,${S(0)}\n`);
    const file = `ProductKey,DeviceName,DeviceSecret\n${Array.from({ length: 5 }, (_, i) => `a1Limited01,dev-00${i},${S(i)}`).join('\n')}\n`;
    const dry = await importFile(server, 'devices', file, { query: { dryRun: 'true' } });
    const r = await importFile(server, 'devices', file);
    assert.deepEqual([r.body.identical, r.body.created, r.body.invalidCount], [1, 2, 2]);
    assert.deepEqual(
      r.body.invalid.map((e) => e.line),
      [5, 6],
    );
    assert.match(r.body.invalid[0]!.message, /device limit reached: product a1Limited01 may hold at most 3 devices/);
    assert.equal(await server.running.ctx.store.countDevices('a1Limited01'), 3);
    assert.deepEqual({ ...dry.body, dryRun: false }, r.body, 'the dry run predicted the limit');
  });

  it('an iotId already used by another device refuses only that row', async () => {
    await newProduct(server, 'a1IotIdDup1');
    const rows = [
      { productKey: 'a1IotIdDup1', deviceName: 'dev-001', deviceSecret: S(1), iotId: 'IotIdTaken0000000000000000001' },
    ];
    await importFile(server, 'devices', jsonl(rows), { contentType: JSONL });
    const second = [
      { productKey: 'a1IotIdDup1', deviceName: 'dev-002', deviceSecret: S(2) },
      { productKey: 'a1IotIdDup1', deviceName: 'dev-003', deviceSecret: S(3), iotId: 'IotIdTaken0000000000000000001' },
      { productKey: 'a1IotIdDup1', deviceName: 'dev-004', deviceSecret: S(4) },
    ];
    const r = await importFile(server, 'devices', jsonl(second), { contentType: JSONL });
    assert.equal(r.body.created, 2);
    assert.deepEqual(r.body.invalid, [{ line: 2, message: 'iotId IotIdTaken0000000000000000001 is already used by another device' }]);
    assert.equal(await server.running.ctx.store.getDevice('a1IotIdDup1', 'dev-003'), undefined);
  });

  it('products: identical is skipped, a different secret or setting is a conflict; overwrite applies it and registration follows', async () => {
    const base = { productKey: 'a1ProdImp01', productSecret: 'OriginalPSecret01', productName: 'imported product', nodeType: 'DEVICE', dynamicRegistration: true };
    const first = await importFile(server, 'products', jsonl([base]), { contentType: JSONL });
    assert.equal(first.body.created, 1);
    const again = await importFile(server, 'products', jsonl([base]), { contentType: JSONL });
    assert.deepEqual([again.body.created, again.body.identical], [0, 1]);

    const changed = { ...base, productSecret: 'ReplacedPSecret02', productName: 'renamed product' };
    const c = await importFile(server, 'products', jsonl([changed]), { contentType: JSONL });
    assert.deepEqual(c.body.conflicts, [{ line: 1, productKey: 'a1ProdImp01', message: 'productSecret, productName differ from the existing product (use overwrite to replace)' }]);
    assert.equal((await server.running.ctx.store.getProduct('a1ProdImp01'))!.productSecret, 'OriginalPSecret01');

    const o = await importFile(server, 'products', jsonl([changed]), { contentType: JSONL, query: { overwrite: 'true' } });
    assert.equal(o.body.overwritten, 1);
    const p = (await server.running.ctx.store.getProduct('a1ProdImp01'))!;
    assert.deepEqual([p.productSecret, p.productName], ['ReplacedPSecret02', 'renamed product']);
    await importFile(server, 'devices', `ProductKey,DeviceName,DeviceSecret\na1ProdImp01,dev-001,${S(1)}\n`);
    const reg = await postRegister(server, registerForm('a1ProdImp01', 'dev-001', 'ReplacedPSecret02', 'r-1'));
    assert.equal(reg.json.code, 200, reg.text);
    assert.equal(reg.json.data.deviceSecret, S(1));
    const old = await postRegister(server, registerForm('a1ProdImp01', 'dev-001', 'OriginalPSecret01', 'r-2'));
    assert.notEqual(old.json.code, 200);

    // nodeType cannot change under devices, even with overwrite: the row is invalid, nothing changes.
    const gw = await importFile(server, 'products', jsonl([{ ...changed, nodeType: 'GATEWAY' }]), { contentType: JSONL, query: { overwrite: 'true' } });
    assert.equal(gw.body.invalidCount, 1);
    assert.match(gw.body.invalid[0]!.message, /nodeType of product a1ProdImp01 cannot change while it has devices/);
    assert.equal((await server.running.ctx.store.getProduct('a1ProdImp01'))!.nodeType, 'DEVICE');
  });

  it('products: timestampWindowSeconds is compared when given, a different one is a conflict, overwrite sets or clears it', async () => {
    const base = { productKey: 'a1Window001', productSecret: 'WindowPSecret001', productName: 'window product' };
    const window = async () => (await server.running.ctx.store.getProduct('a1Window001'))!.timestampWindowSeconds;
    assert.equal((await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: 300 }]), { contentType: JSONL })).body.created, 1);
    assert.equal(await window(), 300);
    // Absent: not compared.
    assert.equal((await importFile(server, 'products', jsonl([base]), { contentType: JSONL })).body.identical, 1);
    assert.equal((await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: 300 }]), { contentType: JSONL })).body.identical, 1);

    for (const other of [60, null]) {
      const c = await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: other }]), { contentType: JSONL });
      assert.deepEqual(c.body.conflicts, [{ line: 1, productKey: 'a1Window001', message: 'timestampWindowSeconds differs from the existing product (use overwrite to replace)' }]);
      assert.equal(await window(), 300, 'a conflict changes nothing');
    }
    const o = await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: 60 }]), { contentType: JSONL, query: { overwrite: 'true' } });
    assert.equal(o.body.overwritten, 1);
    assert.equal(await window(), 60);
    const off = await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: null }]), { contentType: JSONL, query: { overwrite: 'true' } });
    assert.equal(off.body.overwritten, 1);
    assert.equal(await window(), undefined);
    assert.equal((await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: 0 }]), { contentType: JSONL })).body.identical, 1);

    const bad = await importFile(server, 'products', jsonl([{ ...base, timestampWindowSeconds: -5 }]), { contentType: JSONL, query: { overwrite: 'true' } });
    assert.equal(bad.body.invalidCount, 1);
    assert.match(bad.body.invalid[0]!.message, /timestampWindowSeconds must be a whole number/);
    assert.equal(await window(), undefined);
  });

  it('export -> import into a fresh server -> export gives the same bytes, and every key and iotId survives', async () => {
    const src = server;
    const rows = [
      { productKey: 'a1RoundTrip', deviceName: 'dev-imported', deviceSecret: S(7), iotId: 'RoundTripIotId000000000000001', nickname: '温度计 1', activatedAt: '2023-05-01T10:00:00.000Z' },
      { productKey: 'a1RoundTrip', deviceName: 'dev:with@odd.chars', deviceSecret: S(8) },
    ];
    await newProduct(src, 'a1RoundTrip', { nodeType: 'GATEWAY', dynamicRegistration: true, preRegistrationFree: true, deviceLimit: 1000, timestampWindowSeconds: 300, description: 'round trip' });
    await importFile(src, 'devices', jsonl(rows), { contentType: JSONL });
    const created = await src.request('POST', '/api/v1/products/a1RoundTrip/devices/batch', { count: 3 });
    assert.ok(created.status < 300, JSON.stringify(created.body));

    const products = await exportProducts(src);
    const exported = products.text.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(exported.find((p) => p.productKey === 'a1RoundTrip')?.timestampWindowSeconds, 300);
    assert.ok(exported.every((p) => 'timestampWindowSeconds' in p), 'every exported product says its window (null = off)');
    const devices = await exportDevices(src, 'a1RoundTrip');
    assert.equal(devices.status, 200);
    assert.match(devices.contentType ?? '', /^application\/x-ndjson/);
    assert.equal(devices.text.trim().split('\n').length, 5);

    const dst = await startTestServer();
    try {
      const p = await importFile(dst, 'products', products.text, { contentType: JSONL });
      assert.equal(p.body.invalidCount, 0, JSON.stringify(p.body));
      const d = await importFile(dst, 'devices', devices.text, { contentType: JSONL });
      assert.deepEqual([d.body.created, d.body.invalidCount, d.body.conflictCount], [5, 0, 0]);
      assert.equal((await exportDevices(dst, 'a1RoundTrip')).text, devices.text);
      assert.equal((await exportProducts(dst)).text, products.text);
      assert.equal((await dst.running.ctx.store.getProduct('a1RoundTrip'))!.timestampWindowSeconds, 300);
      assert.deepEqual(await deviceSnapshot(dst, 'a1RoundTrip'), await deviceSnapshot(src, 'a1RoundTrip'));
    } finally {
      await dst.stop();
    }
    // And back into the source: all identical.
    const back = await importFile(src, 'devices', devices.text, { contentType: JSONL });
    assert.deepEqual([back.body.identical, back.body.created], [5, 0]);
  });

  it('a file that becomes unreadable part-way keeps the rows before and says where it stopped', async () => {
    await newProduct(server, 'a1Aborted01');
    const quote = await importFile(server, 'devices', `ProductKey,DeviceName,DeviceSecret\na1Aborted01,dev-001,${S(1)}\na1Aborted01,"dev-002,${S(2)}\n`);
    assert.equal(quote.status, 200);
    assert.equal(quote.body.created, 1);
    assert.deepEqual(quote.body.aborted, { line: 3, message: 'line 3: quoted field is never closed (a " is missing)' });
    const bytes = Buffer.concat([Buffer.from(`ProductKey,DeviceName,DeviceSecret\na1Aborted01,dev-003,${S(3)}\n`), Buffer.from([0xff, 0xfe, 0x0a])]);
    const utf = await importFile(server, 'devices', bytes);
    assert.equal(utf.body.created, 1);
    assert.match(utf.body.aborted!.message, /not valid UTF-8/);
    assert.deepEqual((await deviceSnapshot(server, 'a1Aborted01')).map((d) => d.deviceName), ['dev-001', 'dev-003']);
    const nothingRead = await importFile(server, 'devices', Buffer.from([0xff, 0xfe, 0x0a]));
    assert.equal(nothingRead.status, 400);
    assert.match(nothingRead.body.message!, /not valid UTF-8/);
  });

  it('refuses what is not an import file, cleanly and with the field named', async () => {
    const json = await fetch(`${server.api}/api/v1/import/devices`, {
      method: 'POST',
      headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': 'application/json' },
      body: '{"productKey":"x"}',
    });
    assert.equal(json.status, 400);
    assert.equal(((await json.json()) as { field: string }).field, 'content-type');

    const plain = await importFile(server, 'devices', 'ProductKey,DeviceName,DeviceSecret\n', { contentType: 'text/plain' });
    assert.equal(plain.status, 400);
    assert.equal(plain.body.field, 'format');
    const plainCsv = await importFile(server, 'devices', 'ProductKey,DeviceName,DeviceSecret\n', { contentType: 'text/plain', query: { format: 'csv' } });
    assert.equal(plainCsv.status, 200);

    const badQuery = await importFile(server, 'devices', 'x', { query: { format: 'xml' } });
    assert.equal(badQuery.status, 400);
    assert.equal(badQuery.body.code, 'INVALID_ARGUMENT');

    const noToken = await fetch(`${server.api}/api/v1/import/devices`, { method: 'POST', headers: { 'content-type': CSV }, body: 'x' });
    assert.equal(noToken.status, 401);

    // Exports hold every secret: a read-scope token may not fetch them, nor import.
    const { body: reader } = await server.request('POST', '/api/v1/tokens', { name: 'import-reader', scope: 'read' });
    for (const [method, p] of [['GET', '/api/v1/export/products'], ['GET', '/api/v1/export/products/a1RoundTrip/devices'], ['POST', '/api/v1/import/devices']]) {
      const res = await fetch(`${server.api}${p}`, { method, headers: { authorization: `Bearer ${reader.token}`, 'content-type': CSV }, body: method === 'POST' ? 'x' : undefined });
      assert.equal(res.status, 403, `${method} ${p}`);
    }

    const missing = await exportDevices(server, 'a1NotThere1');
    assert.equal(missing.status, 404);
    assert.equal(JSON.parse(missing.text).code, 'PRODUCT_NOT_FOUND');
  });

  it('refuses an upload that declares more than 200 MB with 413 before reading it', async () => {
    const url = new URL(`${server.api}/api/v1/import/devices`);
    const res = await new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
      const req = http.request(
        { host: url.hostname, port: url.port, path: url.pathname, method: 'POST', headers: { authorization: `Bearer ${server.adminToken}`, 'content-type': CSV, 'content-length': String(201 * 1024 * 1024) } },
        (r) => {
          let body = '';
          r.on('data', (c) => (body += c));
          r.on('end', () => resolve({ status: r.statusCode!, body, connection: r.headers.connection }));
        },
      );
      req.on('error', reject);
      req.write('ProductKey,DeviceName,DeviceSecret\n');
      // The rest never comes: the server must answer from the declared length alone.
    });
    assert.equal(res.status, 413);
    assert.equal(JSON.parse(res.body).code, 'PAYLOAD_TOO_LARGE');
    // The server hangs up rather than wait for 201 MB (and a lingering socket would hold up its shutdown).
    assert.equal(res.connection, 'close');
  });

  it('no imported secret reaches the server log', () => {
    const logs = server.logs.join('');
    for (const secret of [S(1), S(2), S(7), S(8), 'ReplacedPSecret02', 'OriginalPSecret01']) assert.ok(!logs.includes(secret), `secret in logs`);
  });
});
