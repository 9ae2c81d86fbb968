/**
 * Issue 11 item 10: a pre-registration-free product (preRegistrationFree, which requires
 * dynamicRegistration) offers its devices ClientID + DeviceToken through `authType=regnwl`
 * only. Asking for a DeviceSecret with pre-registration (`POST /auth/register/device`, MQTT
 * `authType=register`) is refused like a product whose pre-registration is off: HTTPS code
 * 6288, CONNACK 4, nothing pushed, no secret anywhere in the answer. Over real HTTPS and MQTTS.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { connectClient, endClient, eventually } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { mqttRegistration, postRegister, registerForm, registrationConnect } from './registration-helpers.js';

const PS = 'PsRegnwlOnly1234';

describe('a pre-registration-free product registers with regnwl only', () => {
  let server: TestServer;
  let nwlPk: string;
  let prePk: string;

  before(async () => {
    server = await startTestServer();
    const reg = server.running.ctx.services.registry;
    nwlPk = (await reg.createProduct({ productName: 'regnwl only', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS })).productKey;
    prePk = (await reg.createProduct({ productName: 'pre-registration', dynamicRegistration: true, productSecret: PS })).productKey;
    // Created by the operator (as an import or the console would): the device exists, so
    // only the product's mode stands between a ProductSecret holder and its DeviceSecret.
    await reg.createDevices(nwlPk, { deviceNames: ['nwl-dev-01', 'nwl-dev-02'] });
    await reg.createDevices(prePk, { deviceNames: ['pre-dev-01'] });
  });
  after(async () => {
    await server.stop();
  });

  const secretOf = async (pk: string, dn: string) => (await server.running.ctx.services.registry.getDeviceSecret(pk, dn)).deviceSecret;

  it('HTTPS /auth/register/device: 6288 with a message naming regnwl, data null, no DeviceSecret', async () => {
    const secret = await secretOf(nwlPk, 'nwl-dev-01');
    const res = await postRegister(server, registerForm(nwlPk, 'nwl-dev-01', PS, 'nwl-https-1'));
    assert.equal(res.status, 200);
    assert.equal(res.json.code, 6288, res.text);
    assert.equal(res.json.data, null);
    assert.match(res.json.message, /pre-registration-free.*regnwl/);
    assert.ok(!res.text.includes(secret), 'the DeviceSecret is not in the answer');
    // Also for a name that does not exist: the product's mode answers, not the device lookup.
    assert.equal((await postRegister(server, registerForm(nwlPk, 'nwl-unknown', PS, 'nwl-https-2'))).json.code, 6288);
    // A wrong sign is still a wrong sign (the mode is only told to a ProductSecret holder).
    assert.equal((await postRegister(server, registerForm(nwlPk, 'nwl-dev-01', 'WrongProductSec1', 'nwl-https-3'))).json.code, 6600);
  });

  it('MQTT authType=register: CONNACK 4, nothing pushed; the same device then registers with regnwl and logs in with connwl', async () => {
    const secret = await secretOf(nwlPk, 'nwl-dev-02');
    for (const securemode of ['2', '-2']) {
      const r = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: nwlPk, productSecret: PS, deviceName: 'nwl-dev-02', authType: 'register', securemode }));
      assert.deepEqual([r.accepted, r.code, r.messages.length], [false, 4, 0]);
      assert.ok(!JSON.stringify(r).includes(secret));
    }
    // The way the product does offer still works for the very same device.
    const nwl = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: nwlPk, productSecret: PS, deviceName: 'nwl-dev-02', authType: 'regnwl', securemode: '-2' }));
    assert.equal(nwl.messages[0]?.topic, '/ext/regnwl');
    const cred = JSON.parse(nwl.messages[0]!.payload) as { clientId: string; deviceToken: string };
    assert.ok(!nwl.messages[0]!.payload.includes(secret), 'regnwl never carries the DeviceSecret');
    const client = await connectClient(server, 'mqtts', { clientId: `${cred.clientId}|securemode=-2,authType=connwl|`, username: `nwl-dev-02&${nwlPk}`, password: cred.deviceToken });
    try {
      await eventually(async () => (await server.request('GET', `/api/v1/products/${nwlPk}/devices/nwl-dev-02`)).body.status === 'ONLINE');
    } finally {
      await endClient(client);
    }
  });

  it('the refusals are audited as denied with the reason', async () => {
    await eventually(async () => {
      await server.running.ctx.services.audit.flush();
      const r = await server.request('GET', `/api/v1/audit?productKey=${nwlPk}&deviceName=nwl-dev-01`);
      return r.body.items?.some((e: { action: string; result: string; reason: string }) => e.action === 'register.https' && e.result === 'deny' && /regnwl/.test(e.reason));
    });
  });

  it('a product with pre-registration only still hands out the DeviceSecret (HTTPS and MQTT)', async () => {
    const secret = await secretOf(prePk, 'pre-dev-01');
    const res = await postRegister(server, registerForm(prePk, 'pre-dev-01', PS, 'pre-https-1'));
    assert.equal(res.json.code, 200, res.text);
    assert.equal(res.json.data.deviceSecret, secret);
    const r = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: prePk, productSecret: PS, deviceName: 'pre-dev-01', authType: 'register' }));
    assert.deepEqual(JSON.parse(r.messages[0]!.payload), { productKey: prePk, deviceName: 'pre-dev-01', deviceSecret: secret });
  });

  it('switching preRegistrationFree off (PATCH) opens pre-registration again; switching it on closes it', async () => {
    assert.equal((await server.request('PATCH', `/api/v1/products/${nwlPk}`, { preRegistrationFree: false })).status, 200);
    assert.equal((await postRegister(server, registerForm(nwlPk, 'nwl-dev-01', PS, 'nwl-toggle-1'))).json.code, 200);
    assert.equal((await server.request('PATCH', `/api/v1/products/${nwlPk}`, { preRegistrationFree: true })).status, 200);
    assert.equal((await postRegister(server, registerForm(nwlPk, 'nwl-dev-01', PS, 'nwl-toggle-2'))).json.code, 6288);
  });
});
