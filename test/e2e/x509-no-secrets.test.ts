/**
 * X.509 products hand out no DeviceSecrets (issue 16, the gaps closed after the first build):
 * dynamic registration cannot be switched on later (product update and product import), the
 * devices' stored secret never leaves (create, batch, /secret, secret rotation, the credentials
 * CSV, the JSON-lines export), and an import of devices with secrets into an x509 product is
 * refused row by row with a pointer to `x509 batch-issue`, writing nothing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { endClient } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { JSONL, CSV, importFile, jsonl } from './import-helpers.js';
import { certConnect, x509Device, x509Product } from './x509-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const S = (n: number) => `Secret${String(n).padStart(26, '0')}`;

describe('X.509 products hand out no DeviceSecrets', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  async function storedSecret(pk: string, dn: string): Promise<string> {
    return (await server.running.ctx.store.getDevice(pk, dn))!.deviceSecret;
  }

  it('refuses switching dynamic registration on (or SUB_DEVICE) for an x509 product: 409 naming the reason, nothing changed', async () => {
    const pk = await x509Product(server);
    const r = await server.request('PATCH', `/api/v1/products/${pk}`, { dynamicRegistration: true });
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.equal(r.body.field, 'dynamicRegistration');
    assert.match(r.body.message, /X\.509 certificates.*dynamic registration would hand out DeviceSecrets/);
    const sub = await server.request('PATCH', `/api/v1/products/${pk}`, { nodeType: 'SUB_DEVICE' });
    assert.equal(sub.status, 409, JSON.stringify(sub.body));
    assert.match(sub.body.message, /SUB_DEVICE/);
    const now = await server.request('GET', `/api/v1/products/${pk}`);
    assert.equal(now.body.dynamicRegistration, false);
    assert.equal(now.body.nodeType, 'DEVICE');
    // Other settings still change; a secret product still switches registration on.
    assert.equal((await server.request('PATCH', `/api/v1/products/${pk}`, { productName: 'renamed x509' })).status, 200);
    const plain = await server.request('POST', '/api/v1/products', { productName: 'plain' });
    assert.equal((await server.request('PATCH', `/api/v1/products/${plain.body.productKey}`, { dynamicRegistration: true })).body.dynamicRegistration, true);
  });

  it('refuses the same through a product import with overwrite (and its dry run): the row is invalid, the product unchanged', async () => {
    const pk = await x509Product(server);
    const p = (await server.request('GET', '/api/v1/export/products')).status; // admin export reachable
    assert.equal(p, 200);
    const secret = (await server.running.ctx.store.getProduct(pk))!.productSecret;
    const row = { productKey: pk, productSecret: secret, productName: 'x509 product', dynamicRegistration: true };
    for (const query of [{ overwrite: "true", dryRun: "true" }, { overwrite: "true" }] as Record<string, string>[]) {
      const r = await importFile(server, 'products', jsonl([row]), { contentType: JSONL, query });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.equal(r.body.overwritten, 0, JSON.stringify(r.body));
      assert.equal(r.body.invalid.length, 1);
      assert.match(r.body.invalid[0]!.message, /X\.509 certificates.*dynamic registration/);
    }
    assert.equal((await server.request('GET', `/api/v1/products/${pk}`)).body.dynamicRegistration, false);
  });

  it('never shows the stored DeviceSecret of an x509 device: create, batch, /secret, rotate-secret, credentials CSV, export', async () => {
    const pk = await x509Product(server);
    const c = await server.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'nosecret-01' });
    assert.equal(c.status, 201);
    assert.equal(c.body.deviceSecret, undefined);
    assert.match(c.body.certificateSerial, /^[0-9a-f]+$/);
    assert.ok(c.body.certificateNotAfter);
    const secret = await storedSecret(pk, 'nosecret-01');
    assert.ok(!JSON.stringify(c.body).includes(secret));

    const b = await server.request('POST', `/api/v1/products/${pk}/devices/batch`, { deviceNames: ['nosecret-02', 'nosecret-03'] });
    assert.equal(b.status, 201);
    for (const d of b.body.devices) {
      assert.equal(d.deviceSecret, undefined);
      assert.match(d.certificateSerial, /^[0-9a-f]+$/);
      assert.ok(!JSON.stringify(b.body).includes(await storedSecret(pk, d.deviceName)));
    }

    const s = await server.request('GET', `/api/v1/products/${pk}/devices/nosecret-01/secret`);
    assert.equal(s.status, 409);
    assert.match(s.body.message, /authenticates with an X\.509 certificate and has no DeviceSecret/);
    assert.ok(!JSON.stringify(s.body).includes(secret));
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices/no-such-dev/secret`)).status, 404);

    const rot = await server.request('POST', `/api/v1/products/${pk}/devices/nosecret-01/secret/rotate`, {});
    assert.equal(rot.status, 409);
    assert.equal(await storedSecret(pk, 'nosecret-01'), secret, 'rotation changed nothing');

    const csv = await fetch(`${server.api}/api/v1/products/${pk}/device-credentials`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    assert.equal(csv.status, 200);
    const text = await csv.text();
    assert.equal(text.split('\n').filter(Boolean).length, 4);
    assert.ok(text.includes(`${pk},nosecret-01,\n`), text);
    assert.ok(!text.includes(secret));

    const ex = await fetch(`${server.api}/api/v1/export/products/${pk}/devices?format=jsonl`, { headers: { authorization: `Bearer ${server.adminToken}` } });
    assert.equal(ex.status, 409);
    const exText = await ex.text();
    assert.match(exText, /x509\/credentials/);
    assert.ok(!exText.includes(secret));

    // The certificate still logs in; a secret product's device still gets its secret.
    const d = await x509Device(server, pk, 'nosecret-04');
    await endClient(await certConnect(server, 'mqtts', { cert: d.cert, key: d.key }));
    const plain = await server.request('POST', '/api/v1/products', { productName: 'plain secrets' });
    const pd = await server.request('POST', `/api/v1/products/${plain.body.productKey}/devices`, { deviceName: 'plain-01' });
    assert.equal(pd.body.deviceSecret, await storedSecret(plain.body.productKey, 'plain-01'));
    assert.equal((await server.request('GET', `/api/v1/products/${plain.body.productKey}/devices/plain-01/secret`)).body.deviceSecret, pd.body.deviceSecret);
  });

  it('refuses an import of devices (API, CSV and JSON lines) into an x509 product row by row, pointing at x509 batch-issue; nothing written, other products import', async () => {
    const pk = await x509Product(server);
    const plain = (await server.request('POST', '/api/v1/products', { productName: 'plain import' })).body.productKey as string;
    const csv = `ProductKey,DeviceName,DeviceSecret\n${pk},imp-01,${S(1)}\n${plain},imp-02,${S(2)}\n${pk},imp-03,${S(3)}\n`;
    for (const query of [{ dryRun: "true" }, {}] as Record<string, string>[]) {
      const r = await importFile(server, 'devices', csv, { contentType: CSV, query });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.invalid.map((i) => i.line), [2, 4]);
      assert.match(r.body.invalid[0]!.message, /X\.509 certificates: imported DeviceSecrets could never log in.*thingauth x509 batch-issue/);
      assert.equal(r.body.created, 1, 'the secret product row imports (dry run: would)');
    }
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices`)).body.total, 0, 'nothing written to the x509 product');
    assert.equal((await server.request('GET', `/api/v1/products/${plain}/devices`)).body.total, 1);
    const j = await importFile(server, 'devices', jsonl([{ productKey: pk, deviceName: 'imp-05', deviceSecret: S(5) }]), { contentType: JSONL });
    assert.equal(j.body.invalid.length, 1);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices`)).body.total, 0);

    // The CLI (`thingauth import devices`) says the same.
    const dir = makeTempDir('thingauth-x509-import-');
    try {
      const file = path.join(dir, 'devices.csv');
      fs.writeFileSync(file, `ProductKey,DeviceName,DeviceSecret\n${pk},imp-06,${S(6)}\n`);
      const env: Record<string, string> = {};
      for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
      const out = await new Promise<{ stdout: string; stderr: string }>((resolve) =>
        execFile(process.execPath, [CLI, 'import', 'devices', '--file', file, '--json', '--url', server.api, '--token', server.adminToken], { env }, (_e, stdout, stderr) => resolve({ stdout, stderr })),
      );
      assert.match(out.stdout + out.stderr, /x509 batch-issue/);
      assert.equal((await server.request('GET', `/api/v1/products/${pk}/devices`)).body.total, 0);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
