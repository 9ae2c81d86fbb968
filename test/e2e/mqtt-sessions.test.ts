/**
 * Presence, activation, takeover and kicks over real sockets; state read back through the
 * management API like an operator would.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connectClient, connectRefusal, createDevice, endClient, eventually, signedConnect, waitForClose } from '../helpers/mqtt.js';
import { apiDevice } from '../helpers/api.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

describe('MQTT sessions: presence, activation, takeover, kicks', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it('first good login activates (UNACTIVE -> ONLINE, activatedAt set); disconnect makes it OFFLINE', async () => {
    const d = await createDevice(server);
    const before = await apiDevice(server, d.productKey, d.deviceName);
    assert.equal(before.status, 'UNACTIVE');
    assert.equal(before.activatedAt, null);

    const c = await connectClient(server, 'mqtt', signedConnect(d));
    const online = await eventually(async () => {
      const x = await apiDevice(server, d.productKey, d.deviceName);
      return x.status === 'ONLINE' ? x : undefined;
    });
    assert.ok(online.activatedAt, 'activatedAt is set');
    assert.ok(online.lastOnlineAt);

    await endClient(c);
    const offline = await eventually(async () => {
      const x = await apiDevice(server, d.productKey, d.deviceName);
      return x.status === 'OFFLINE' ? x : undefined;
    });
    assert.equal(offline.activatedAt, online.activatedAt, 'activation time does not move');
  });

  it('a refused login does not activate', async () => {
    const d = await createDevice(server);
    await connectRefusal(server, 'mqtt', signedConnect({ ...d, deviceSecret: 'NotTheSecret00000000000000000000' }));
    await server.settle();
    assert.equal((await apiDevice(server, d.productKey, d.deviceName)).status, 'UNACTIVE');
  });

  it('a second login with the same identity takes over: the older connection is closed, the device stays ONLINE', async () => {
    const d = await createDevice(server);
    // Different raw ClientIds (as SDKs send with changing timestamps): still one session per device.
    const first = await connectClient(server, 'mqtt', signedConnect({ ...d, timestamp: '1700000000000' }));
    const firstClosed = waitForClose(first);
    const second = await connectClient(server, 'mqtt-ws', signedConnect({ ...d, timestamp: '1700000000001' }));
    await firstClosed;
    assert.ok(second.connected, 'the newer connection survives');
    await eventually(async () => (await apiDevice(server, d.productKey, d.deviceName)).status === 'ONLINE');
    // Any late presence write of the old connection lands: the device must still be ONLINE.
    await server.settle();
    assert.ok(second.connected);
    assert.equal((await apiDevice(server, d.productKey, d.deviceName)).status, 'ONLINE');
    await endClient(first);
    await endClient(second);
    await eventually(async () => (await apiDevice(server, d.productKey, d.deviceName)).status === 'OFFLINE');
  });

  it('disabling a device through the API closes its live connection at once and refuses it afterwards', async () => {
    const d = await createDevice(server);
    const c = await connectClient(server, 'mqtt', signedConnect(d));
    const closed = waitForClose(c);
    const r = await server.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/disable`);
    assert.ok(r.status === 200 || r.status === 204, `disable answered ${r.status} ${JSON.stringify(r.body)}`);
    await closed;
    await endClient(c);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(d))).code, 5);
    assert.equal((await apiDevice(server, d.productKey, d.deviceName)).status, 'DISABLE');
    const rec = await server.running.ctx.store.getDevice(d.productKey, d.deviceName);
    assert.equal(rec!.online, false);
  });

  it('deleting a device closes its live connection and refuses it afterwards', async () => {
    const d = await createDevice(server);
    const c = await connectClient(server, 'mqtt', signedConnect(d));
    const closed = waitForClose(c);
    const r = await server.request('DELETE', `/api/v1/products/${d.productKey}/devices/${d.deviceName}`);
    assert.ok(r.status === 200 || r.status === 204, `delete answered ${r.status}`);
    await closed;
    await endClient(c);
    assert.equal((await connectRefusal(server, 'mqtt', signedConnect(d))).code, 5);
  });

  it('stopping the server closes live connections instead of waiting for devices to leave', async () => {
    const own = await startTestServer();
    try {
      const d = await createDevice(own);
      const c = await connectClient(own, 'mqtt', signedConnect(d));
      await eventually(async () => (await own.running.ctx.store.getDevice(d.productKey, d.deviceName))?.online);
      const closed = waitForClose(c);
      await own.stop();
      await closed;
      await endClient(c);
    } finally {
      await own.stop();
    }
  });
});
