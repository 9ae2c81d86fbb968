/**
 * Issue 11 item 16 over real sockets: an MQTT 5 UNSUBACK carries one reason code per filter
 * (0x00 removed, 0x11 no subscription existed), and a device's lastAuthError says when and
 * from which source a login under its name was refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import mqtt, { type MqttClient } from 'mqtt';
import { connectRefusal, createDevice, endClient, eventually, listenerUrl, signedConnect, subscribe, type DeviceCredentials } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Dev = DeviceCredentials & { iotId: string };

describe('MQTT 5 UNSUBACK reason codes and lastAuthError detail (issue 11 item 16)', () => {
  let server: TestServer;
  let dev: Dev;

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it('UNSUBACK has one reason code per filter: 0x00 for a held subscription, 0x11 for none', async () => {
    const { url } = listenerUrl(server, 'mqtt');
    const sc = signedConnect(dev);
    const c = await new Promise<MqttClient>((resolve, reject) => {
      const cl = mqtt.connect(url, { clientId: sc.clientId, username: sc.username, password: sc.password, protocolVersion: 5, reconnectPeriod: 0 });
      cl.once('connect', () => resolve(cl));
      cl.once('error', reject);
    });
    try {
      const held = `/sys/${dev.productKey}/${dev.deviceName}/thing/service/property/set`;
      const alsoHeld = `/${dev.productKey}/${dev.deviceName}/user/get`;
      const never = `/${dev.productKey}/${dev.deviceName}/user/never`;
      assert.deepEqual(await subscribe(c, { [held]: { qos: 0 }, [alsoHeld]: { qos: 0 } }), [0, 0]);
      const unsuback = await new Promise<{ reasonCode?: number | number[]; granted?: number[] }>((resolve, reject) =>
        c.unsubscribe([held, never, alsoHeld], (err, packet) => (err && !packet ? reject(err) : resolve(packet as never))),
      );
      const codes = unsuback.granted ?? unsuback.reasonCode;
      assert.deepEqual(codes, [0x00, 0x11, 0x00]);
    } finally {
      await endClient(c);
    }
  });

  it('lastAuthError records the time and the source address of a refused login', async () => {
    const before = Date.now();
    const bad = signedConnect({ ...dev, deviceSecret: 'not-the-secret-0000000000000000' });
    const refused = await connectRefusal(server, 'mqtt', bad);
    assert.ok(refused.code === 4 || refused.code === 5, `refused with ${refused.code}`);
    const rec = await eventually(async () => {
      const r = await server.request('GET', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`);
      return r.body.lastAuthErrorAt ? r.body : undefined;
    }, 10_000);
    assert.match(rec.lastAuthError, /sign/);
    assert.equal(rec.lastAuthErrorSource, 'mqtt/tcp 127.0.0.1');
    const at = Date.parse(rec.lastAuthErrorAt);
    assert.ok(at >= before - 1000 && at <= Date.now() + 1000, `lastAuthErrorAt ${rec.lastAuthErrorAt} is now`);

    // Reset clears all three.
    const reset = await server.request('POST', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}/reset`);
    assert.equal(reset.status, 200);
    assert.equal(reset.body.lastAuthError, null);
    assert.equal(reset.body.lastAuthErrorAt, null);
    assert.equal(reset.body.lastAuthErrorSource, null);
  });
});
