/**
 * X.509 on the device HTTPS channel (issue 16): POST /auth with a client certificate gets a
 * token for the certificate's device (no sign needed; a body naming another device is
 * refused); the token publishes; revoking the certificate ends the token; a secret /auth for
 * an x509 product is refused; secret devices without certificates keep working.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import https from 'node:https';
import { caOf } from '../helpers/mqtt.js';
import { deviceHttpsPort, type HttpsAnswer } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { x509Device, x509Product } from './x509-helpers.js';

function post(server: TestServer, path: string, body: unknown, headers: Record<string, string>, cert?: { cert: string; key: string }): Promise<HttpsAnswer> {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = https.request(
      { host: '127.0.0.1', port: deviceHttpsPort(server), path, method: 'POST', ca: caOf(server), servername: 'localhost', agent: false, ...(cert ? { cert: cert.cert, key: cert.key } : {}), headers: { ...headers, 'content-length': String(Buffer.byteLength(text)) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const t = Buffer.concat(chunks).toString('utf8');
          let json: any;
          try {
            json = JSON.parse(t);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, contentType: res.headers['content-type'], text: t, json });
        });
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

describe('X.509 on device HTTPS', () => {
  let server: TestServer;
  let pk: string;

  before(async () => {
    server = await startTestServer({ loginFailThreshold: '0' });
    pk = await x509Product(server);
  });
  after(async () => {
    await server.stop();
  });

  it('/auth with a client certificate answers a token that publishes; revoking the certificate ends the token', async () => {
    const d = await x509Device(server, pk, 'https-x509-01');
    const json = { 'content-type': 'application/json' };
    const auth = await post(server, '/auth', {}, json, d);
    assert.equal(auth.json.code, 0, auth.text);
    const token = auth.json.info.token as string;
    const pub = await post(server, `/topic/${pk}/${d.deviceName}/user/update`, 'hello', { password: token, 'content-type': 'application/octet-stream' });
    assert.equal(pub.json.code, 0, pub.text);
    const other = await post(server, '/auth', { productKey: pk, deviceName: 'someone-else' }, json, d);
    assert.equal(other.json.code, 20000);
    await server.request('POST', `/api/v1/products/${pk}/devices/${d.deviceName}/certificates/${d.serial}/revoke`, {});
    const after = await post(server, `/topic/${pk}/${d.deviceName}/user/update`, 'hello', { password: token, 'content-type': 'application/octet-stream' });
    assert.equal(after.json.code, 20003);
    const again = await post(server, '/auth', {}, json, d);
    assert.equal(again.json.code, 20000);
    await server.settle();
    const audit = await server.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=${d.deviceName}&action=http.auth.x509&limit=1`);
    assert.match(audit.body.items[0].reason, /revoked/);
  });

  it('refuses a secret /auth for an x509 product; secret devices without certificates still get tokens', async () => {
    const d = await x509Device(server, pk, 'https-x509-02');
    const rec = (await server.running.ctx.store.getDevice(pk, d.deviceName))!;
    const { createHmac } = await import('node:crypto');
    const sign = createHmac('md5', rec.deviceSecret).update(`clientIdc1deviceName${d.deviceName}productKey${pk}`).digest('hex');
    const r = await post(server, '/auth', { productKey: pk, deviceName: d.deviceName, clientId: 'c1', sign }, { 'content-type': 'application/json' });
    assert.equal(r.json.code, 20000);
    const registry = server.running.ctx.services.registry;
    const sp = await registry.createProduct({ productName: 'secret product' });
    const [sd] = await registry.createDevices(sp.productKey, { count: 1 });
    const ssign = createHmac('md5', sd!.deviceSecret).update(`clientIdc1deviceName${sd!.deviceName}productKey${sp.productKey}`).digest('hex');
    const ok = await post(server, '/auth', { productKey: sp.productKey, deviceName: sd!.deviceName, clientId: 'c1', sign: ssign }, { 'content-type': 'application/json' });
    assert.equal(ok.json.code, 0, ok.text);
  });
});
