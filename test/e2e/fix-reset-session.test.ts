/**
 * Resetting a connected device (POST .../devices/{dn}/reset) ends its live session, and a
 * login's online write still waiting in the presence batch (written ~100 ms after CONNACK)
 * does not re-activate the device after the reset. Real sockets, state read through the API.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connectClient, connectRefusal, createDevice, endClient, eventually, signedConnect, waitForClose } from '../helpers/mqtt.js';
import { apiDevice } from '../helpers/api.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { mqttRegistration, registrationConnect } from './registration-helpers.js';


describe('reset ends the live session and leaves the device UNACTIVE', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  async function reset(pk: string, dn: string): Promise<any> {
    const r = await server.request('POST', `/api/v1/products/${pk}/devices/${dn}/reset`);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  }

  it('an ONLINE device: reset closes its connection; it is UNACTIVE and stays so', async () => {
    const d = await createDevice(server);
    const c = await connectClient(server, 'mqtt', signedConnect(d));
    try {
      await eventually(async () => (await apiDevice(server, d.productKey, d.deviceName)).status === 'ONLINE');
      const closed = waitForClose(c);
      const body = await reset(d.productKey, d.deviceName);
      assert.equal(body.status, 'UNACTIVE');
      await closed;
      // Whatever the presence batch holds is written: nothing in it brings the device back.
      await server.settle();
      const after = await apiDevice(server, d.productKey, d.deviceName);
      assert.equal(after.status, 'UNACTIVE');
      assert.equal(after.activatedAt, null);
      const rec = await server.running.ctx.store.getDevice(d.productKey, d.deviceName);
      assert.equal(rec!.online, false);
    } finally {
      await endClient(c);
    }
    // The secret is kept: the device may log in again, and that login activates it again.
    const again = await connectClient(server, 'mqtt', signedConnect(d));
    await eventually(async () => (await apiDevice(server, d.productKey, d.deviceName)).status === 'ONLINE');
    await endClient(again);
  });

  it('reset right after CONNACK: the queued online write does not re-activate the device', async () => {
    // The online write is queued at CONNACK and written ~100 ms later. A reset landing in that
    // window used to be undone by it. Whether the reset landed inside the window shows in the
    // record: lastOnlineAt stays null only if the queued write was dropped (reset does not
    // touch lastOnlineAt, the offline write only touches online rows). Try a few devices so
    // a slow machine still gets a reset into the window at least once.
    let hitWindow = 0;
    for (let attempt = 0; attempt < 6 && hitWindow < 2; attempt++) {
      const d = await createDevice(server);
      const c = await connectClient(server, 'mqtt', signedConnect(d));
      const closed = waitForClose(c);
      await reset(d.productKey, d.deviceName);
      await closed;
      await endClient(c);
      await server.settle();
      const rec = await apiDevice(server, d.productKey, d.deviceName);
      assert.equal(rec.status, 'UNACTIVE', `attempt ${attempt}: ${JSON.stringify(rec)}`);
      assert.equal(rec.activatedAt, null);
      if (rec.lastOnlineAt === null) hitWindow++;
    }
    assert.ok(hitWindow > 0, 'no reset landed before the presence write; the race was not exercised');
  });

  it('a connwl device: reset closes the session on the old DeviceToken, which is refused afterwards; regnwl issues a new one', async () => {
    const PS = 'PsFixReset12345678';
    const registry = server.running.ctx.services.registry;
    const pk = (await registry.createProduct({ productName: 'fix reset nwl', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS })).productKey;
    const dn = 'nwl-reset-01';
    const regnwl = async () => {
      const r = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: pk, productSecret: PS, deviceName: dn, authType: 'regnwl', securemode: '-2' }));
      assert.equal(r.messages[0]?.topic, '/ext/regnwl', JSON.stringify(r));
      return JSON.parse(r.messages[0]!.payload) as { clientId: string; deviceToken: string };
    };
    const connwl = (cred: { clientId: string; deviceToken: string }) => ({
      clientId: `${cred.clientId}|securemode=-2,authType=connwl|`,
      username: `${dn}&${pk}`,
      password: cred.deviceToken,
    });
    const cred = await regnwl();
    const c = await connectClient(server, 'mqtts', connwl(cred));
    try {
      await eventually(async () => (await apiDevice(server, pk, dn)).status === 'ONLINE');
      const closed = waitForClose(c);
      await reset(pk, dn);
      await closed;
    } finally {
      await endClient(c);
    }
    await server.settle();
    assert.equal((await apiDevice(server, pk, dn)).status, 'UNACTIVE');
    assert.equal((await connectRefusal(server, 'mqtts', connwl(cred))).code, 5);
    const cred2 = await regnwl();
    assert.notEqual(cred2.deviceToken, cred.deviceToken);
    const c2 = await connectClient(server, 'mqtts', connwl(cred2));
    await eventually(async () => (await apiDevice(server, pk, dn)).status === 'ONLINE');
    await endClient(c2);
  });
});
