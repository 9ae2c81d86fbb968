/**
 * HTTPS dynamic registration (spec 2) over the real device HTTPS listener, trusting the
 * generated CA: every success path and every refusal, replay setting, rate limit, and the
 * official Node SDK's register().
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { after, before, describe, it } from 'node:test';
import { buildDeviceApp } from '../../src/http/device/server.js';
import { caOf } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { form, httpsPost, postRegister, registerForm, registrationSign } from './registration-helpers.js';

const PS = 'PsRegHttps123456';

describe('HTTPS dynamic registration /auth/register/device', () => {
  let server: TestServer;
  let pk: string;

  before(async () => {
    server = await startTestServer();
    const p = await server.running.ctx.services.registry.createProduct({ productName: 'dynreg https', dynamicRegistration: true, productSecret: PS });
    pk = p.productKey;
    await server.running.ctx.services.registry.createDevices(pk, { deviceNames: ['dev-001', 'dev-002', 'dev-act', 'dev-off', 'dev-race', 'dev-sdk'] });
  });
  after(async () => {
    await server.stop();
  });

  it('answers a correct form request with the compact spec JSON carrying the device secret', async () => {
    const res = await postRegister(server, registerForm(pk, 'dev-001', PS, '8Ygb7ULYh53B6OA'));
    assert.equal(res.status, 200);
    assert.match(res.contentType ?? '', /^application\/json/);
    const { deviceSecret } = await server.running.ctx.services.registry.getDeviceSecret(pk, 'dev-001');
    assert.equal(res.text, `{"code":200,"data":{"productKey":"${pk}","deviceName":"dev-001","deviceSecret":"${deviceSecret}"},"message":"success"}`);
    assert.ok(Buffer.byteLength(res.text) < 250, `reply is ${Buffer.byteLength(res.text)} bytes`);
  });

  it('returns the same secret on every call before activation (different randoms, sign methods, hex case)', async () => {
    const a = await postRegister(server, registerForm(pk, 'dev-002', PS, 'r1', 'hmacsha1'));
    const b = await postRegister(server, registerForm(pk, 'dev-002', PS, 'r2', 'HmacMD5'));
    const upper = registrationSign('sha256', PS, pk, 'dev-002', 'r3').toUpperCase();
    const c = await postRegister(server, form({ signMethod: 'HMACSHA256', sign: upper, random: 'r3', deviceName: 'dev-002', productKey: pk }));
    for (const r of [a, b, c]) assert.equal(r.json.code, 200, r.text);
    assert.equal(a.json.data.deviceSecret, b.json.data.deviceSecret);
    assert.equal(a.json.data.deviceSecret, c.json.data.deviceSecret);
    assert.match(a.json.data.deviceSecret, /^[A-Za-z0-9]{32}$/);
  });

  it('accepts a JSON body too', async () => {
    const sign = registrationSign('sha256', PS, pk, 'dev-002', 'json-r');
    const res = await postRegister(server, JSON.stringify({ productKey: pk, deviceName: 'dev-002', random: 'json-r', sign, signMethod: 'hmacsha256' }), 'application/json');
    assert.equal(res.json.code, 200, res.text);
    assert.equal(res.json.data.deviceName, 'dev-002');
  });

  it('racing requests all get the same secret', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => postRegister(server, registerForm(pk, 'dev-race', PS, `race-${i}`))));
    const secrets = new Set(results.map((r) => (r.json.code === 200 ? r.json.data.deviceSecret : `refused ${r.text}`)));
    assert.equal(secrets.size, 1);
    assert.equal([...secrets][0], (await server.running.ctx.services.registry.getDeviceSecret(pk, 'dev-race')).deviceSecret);
  });

  const refusal = async (body: string, code: number, messagePart: RegExp, contentType?: string) => {
    const res = await postRegister(server, body, contentType);
    assert.equal(res.status, 200, 'errors are answered with HTTP 200 and the code in the body');
    assert.equal(res.json.code, code, res.text);
    assert.equal(res.json.data, null);
    assert.match(res.json.message, messagePart);
    assert.deepEqual(Object.keys(res.json).sort(), ['code', 'data', 'message']);
    return res;
  };

  it('refuses a wrong sign with 6600', async () => {
    await refusal(registerForm(pk, 'dev-001', 'WrongSecret12345', 'x1'), 6600, /sign/);
    // A correct signature over other content is wrong too.
    const sign = registrationSign('sha256', PS, pk, 'dev-001', 'other');
    await refusal(form({ productKey: pk, deviceName: 'dev-001', random: 'x2', sign, signMethod: 'hmacsha256' }), 6600, /sign/);
  });

  it('refuses an unknown product (6250), unknown device (6100), unsupported signMethod (6292)', async () => {
    await refusal(registerForm('a1NoSuchPK9', 'dev-001', PS, 'x'), 6250, /product/);
    await refusal(registerForm(pk, 'dev-unknown', PS, 'x'), 6100, /not found/);
    await refusal(form({ productKey: pk, deviceName: 'dev-001', random: 'x', sign: 'abc', signMethod: 'sha256' }), 6292, /signMethod/);
  });

  it('refuses missing or malformed parameters with 460 naming the field', async () => {
    await refusal(form({ productKey: pk, deviceName: 'dev-001', sign: 'abc', signMethod: 'hmacsha256' }), 460, /random/);
    await refusal(form({ productKey: pk, random: 'x', sign: 'abc', signMethod: 'hmacsha256' }), 460, /deviceName/);
    await refusal(form({ productKey: pk, deviceName: 'a&b', random: 'x', sign: 'abc' }), 460, /deviceName/);
    await refusal('productKey=' + pk + '&productKey=' + pk + '&deviceName=dev-001&random=x&sign=a', 460, /productKey/);
    await refusal('{not json', 460, /could not be read/, 'application/json');
    await refusal('hello', 460, /productKey is required/, 'text/plain');
  });

  it('refuses when the product switch is off (6288)', async () => {
    const off = await server.running.ctx.services.registry.createProduct({ productName: 'dynreg off', productSecret: PS });
    await server.running.ctx.services.registry.createDevices(off.productKey, { deviceNames: ['dev-001'] });
    await refusal(registerForm(off.productKey, 'dev-001', PS, 'x'), 6288, /switched off/);
  });

  it('refuses an activated device (6289) until an operator resets it; the secret survives the reset', async () => {
    const before = await postRegister(server, registerForm(pk, 'dev-act', PS, 'a1'));
    assert.equal(before.json.code, 200);
    const { iotId } = await server.running.ctx.services.registry.getDeviceSecret(pk, 'dev-act');
    // Activation is the first successful login; record it the way the broker does.
    await server.running.ctx.store.markOnline(iotId, new Date().toISOString());
    await server.running.ctx.store.markOffline([iotId], new Date().toISOString());
    await refusal(registerForm(pk, 'dev-act', PS, 'a2'), 6289, /activated/);
    await server.running.ctx.services.registry.resetDevice(pk, 'dev-act');
    const again = await postRegister(server, registerForm(pk, 'dev-act', PS, 'a3'));
    assert.equal(again.json.code, 200);
    assert.equal(again.json.data.deviceSecret, before.json.data.deviceSecret);
  });

  it('refuses a disabled device (6204)', async () => {
    await server.running.ctx.services.registry.setEnabled(pk, 'dev-off', false);
    await refusal(registerForm(pk, 'dev-off', PS, 'x'), 6204, /disabled/);
  });

  it('the product is cached, the device is not: a switch turned off refuses the very next request, a rotated secret is answered at once', async () => {
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'dynreg cached', dynamicRegistration: true, productSecret: PS });
    await reg.createDevices(p.productKey, { deviceNames: ['dev-c1'] });
    const first = await postRegister(server, registerForm(p.productKey, 'dev-c1', PS, 'c1'));
    assert.equal(first.json.code, 200);
    await reg.updateProduct(p.productKey, { dynamicRegistration: false });
    await refusal(registerForm(p.productKey, 'dev-c1', PS, 'c2'), 6288, /switched off/);
    await reg.updateProduct(p.productKey, { dynamicRegistration: true });
    assert.equal((await postRegister(server, registerForm(p.productKey, 'dev-c1', PS, 'c3'))).json.code, 200);
    const rotated = await reg.rotateDeviceSecret(p.productKey, 'dev-c1', { graceSeconds: 0 });
    const after = await postRegister(server, registerForm(p.productKey, 'dev-c1', PS, 'c4'));
    assert.equal(after.json.code, 200);
    assert.equal(after.json.data.deviceSecret, rotated.device.deviceSecret);
    assert.notEqual(after.json.data.deviceSecret, first.json.data.deviceSecret);
  });

  it('with replay protection on, a random is single-use per device; with it off, reuse is accepted', async () => {
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'dynreg replay', dynamicRegistration: true, replayProtection: true, productSecret: PS });
    await reg.createDevices(p.productKey, { deviceNames: ['dev-r1', 'dev-r2'] });
    assert.equal((await postRegister(server, registerForm(p.productKey, 'dev-r1', PS, 'same-random'))).json.code, 200);
    await refusal(registerForm(p.productKey, 'dev-r1', PS, 'same-random'), 460, /random was already used/);
    // Per device: the same random for another device is fresh.
    assert.equal((await postRegister(server, registerForm(p.productKey, 'dev-r2', PS, 'same-random'))).json.code, 200);
    assert.equal((await postRegister(server, registerForm(p.productKey, 'dev-r1', PS, 'fresh-random'))).json.code, 200);
    // Default (off): iotkit's constant random keeps working.
    for (let i = 0; i < 2; i++) assert.equal((await postRegister(server, registerForm(pk, 'dev-001', PS, '8Ygb7ULYh53B6OA'))).json.code, 200);
  });

  it('refuses registration over plain HTTP (transport decided by the socket, not the request)', async () => {
    const app = await buildDeviceApp(server.running.ctx, false);
    await app.listen({ host: '127.0.0.1', port: 0 });
    try {
      const addr = app.server.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      const res = await fetch(`http://127.0.0.1:${port}/auth/register/device`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: registerForm(pk, 'dev-001', PS, 'plain'),
      });
      const body = (await res.json()) as any;
      assert.equal(body.code, 460);
      assert.match(body.message, /TLS/);
      assert.equal(body.data, null);
    } finally {
      await app.close();
    }
  });

  it('never writes secrets or signatures to the logs', async () => {
    const { deviceSecret } = await server.running.ctx.services.registry.getDeviceSecret(pk, 'dev-001');
    const sign = registrationSign('sha256', PS, pk, 'dev-001', 'leak-check');
    await postRegister(server, registerForm(pk, 'dev-001', PS, 'leak-check'));
    const all = server.logs.join('');
    assert.ok(all.includes('dynamic registration'), 'registrations are logged');
    for (const secret of [deviceSecret, PS, sign]) assert.ok(!all.includes(secret), 'a secret leaked into the logs');
  });

  it("works with the official Node SDK's iot.register()", async () => {
    const sdkPath = createRequire(import.meta.url).resolve('alibabacloud-iot-device-sdk');
    const port = server.running.listeners['device-https']!.port;
    // The SDK posts with axios' default agent; the child process trusts our CA via NODE_EXTRA_CA_CERTS.
    const script = `
      const iot = require(${JSON.stringify(sdkPath)});
      iot.register({ productKey: ${JSON.stringify(pk)}, productSecret: ${JSON.stringify(PS)}, deviceName: 'dev-sdk',
        registerURL: 'https://localhost:${port}/auth/register/device' }, (res) => {
        process.stdout.write(JSON.stringify(res && res.code !== undefined ? res : { error: String(res && res.message) }));
      });`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: server.running.ctx.tls.caPath! }, timeout: 20_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stderr}`)) : resolve(stdout),
      );
    });
    const res = JSON.parse(out);
    assert.equal(res.code, 200, out);
    assert.equal(res.data.deviceSecret, (await server.running.ctx.services.registry.getDeviceSecret(pk, 'dev-sdk')).deviceSecret);
    assert.ok(caOf(server).includes('BEGIN CERTIFICATE'));
  });
});

describe('HTTPS dynamic registration rate limit', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer({ registrationRatePerSecond: '1' });
  });
  after(async () => {
    await server.stop();
  });

  it('refuses beyond the per-product rate with 429 and leaves other products unaffected', async () => {
    const reg = server.running.ctx.services.registry;
    const a = await reg.createProduct({ productName: 'rate a', dynamicRegistration: true, productSecret: PS });
    const b = await reg.createProduct({ productName: 'rate b', dynamicRegistration: true, productSecret: PS });
    await reg.createDevices(a.productKey, { deviceNames: ['dev-001'] });
    await reg.createDevices(b.productKey, { deviceNames: ['dev-001'] });
    // Burst is 2 at 1/s: of 20 simultaneous requests nearly all must be refused.
    const results = await Promise.all(Array.from({ length: 20 }, (_, i) => postRegister(server, registerForm(a.productKey, 'dev-001', PS, `r${i}`))));
    const codes = results.map((r) => r.json.code);
    assert.ok(codes.includes(200), `some succeed: ${codes}`);
    assert.ok(codes.filter((c) => c === 429).length >= 10, `most are refused with 429: ${codes}`);
    assert.ok(codes.every((c) => c === 200 || c === 429), `only 200 or 429: ${codes}`);
    const limited = results.find((r) => r.json.code === 429)!;
    assert.match(limited.json.message, /too many/);
    const other = await postRegister(server, registerForm(b.productKey, 'dev-001', PS, 'b1'));
    assert.equal(other.json.code, 200);
  });

  it('plain HTTPS client helper sanity: the listener serves only over TLS', async () => {
    // A request without trusting the CA must fail the handshake: proves the tests above verified the certificate.
    const port = server.running.listeners['device-https']!.port;
    await assert.rejects(fetch(`https://127.0.0.1:${port}/auth/register/device`, { method: 'POST' }));
    void httpsPost;
  });
});
