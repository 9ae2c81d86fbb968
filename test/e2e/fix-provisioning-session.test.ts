/**
 * A dynamic-registration (provisioning) connection for a device that is connected at that
 * moment must not take over the device's session: provisioning sessions are keyed per
 * connection, never by (productKey, deviceName). The device keeps its connection, still gets
 * replies, and goes OFFLINE when it leaves (its IotId entry is not left behind).
 *
 * A device is connected and UNACTIVE (so `register`/`regnwl` are accepted) only until its
 * first presence write, ~100 ms after CONNACK. The registration's TLS session is set up
 * first, so only its CONNECT has to fit in that window; an attempt where the activation
 * won (CONNACK 4) proves nothing and is repeated with a new device.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { IPublishPacket } from 'mqtt-packet';
import { caOf, connectClient, endClient, eventually, signedConnect } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { request } from './gateway-helpers.js';
import { registrationConnect } from './registration-helpers.js';
import { openRawMqtt } from './fix-raw-mqtt.js';

const PS = 'PsFixProv123456789';

describe('provisioning connections never disturb the device session', () => {
  let server: TestServer;
  // A pre-registration-free product registers with regnwl only (issue 11 item 10): one product per kind.
  const pks = { register: '', regnwl: '' };

  before(async () => {
    server = await startTestServer();
    pks.regnwl = (await server.running.ctx.services.registry.createProduct({ productName: 'fix provisioning', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS })).productKey;
    pks.register = (await server.running.ctx.services.registry.createProduct({ productName: 'fix provisioning pre', dynamicRegistration: true, productSecret: PS })).productKey;
  });
  after(async () => {
    await server.stop();
  });

  for (const authType of ['register', 'regnwl'] as const) {
    it(`${authType} while the device is connected: the device keeps its session and goes OFFLINE when it leaves`, async () => {
      const pk = pks[authType];
      const apiDevice = async (dn: string) => (await server.request('GET', `/api/v1/products/${pk}/devices/${dn}`)).body;
      let exercised = 0;
      for (let attempt = 0; attempt < 8 && exercised === 0; attempt++) {
        const [d] = await server.running.ctx.services.registry.createDevices(pk, { count: 1 });
        const creds = { productKey: pk, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret };
        const prov = await openRawMqtt(server.running.listeners.mqtts!.port, { ca: caOf(server), servername: 'localhost' });
        const device = await connectClient(server, 'mqtt', signedConnect(creds));
        let deviceClosed = false;
        device.on('close', () => (deviceClosed = true));
        try {
          const fields = registrationConnect({ productKey: pk, productSecret: PS, deviceName: creds.deviceName, authType, securemode: authType === 'regnwl' ? '-2' : '2' });
          const connack = await prov.connect({ ...fields, keepalive: 60 });
          if (connack.returnCode !== 0) {
            // The device's activation was written first: registration is refused, as it must be.
            assert.equal(connack.returnCode, 4, `attempt ${attempt}: unexpected CONNACK ${connack.returnCode}`);
            continue;
          }
          exercised++;
          const push = (await prov.next('publish')) as IPublishPacket;
          assert.equal(push.topic, `/ext/${authType}`);
          await prov.closed; // the server ends the registration connection after its push
          // The device's session is live on the server: its request, sent after the
          // registration connection ended, is answered on the same connection.
          const reply = await request(device, `/sys/${pk}/${creds.deviceName}/thing/event/property/post`, { params: { t: 1 }, method: 'thing.event.property.post' });
          assert.equal(reply.body.code, 200);
          assert.equal(deviceClosed, false, 'the registration connection closed the device session');
          await server.settle();
          assert.equal((await apiDevice(creds.deviceName)).status, 'ONLINE');
        } finally {
          prov.destroy();
          await endClient(device);
        }
        // Nothing of the device's session is left behind: leaving makes it OFFLINE.
        await eventually(async () => (await apiDevice(creds.deviceName)).status === 'OFFLINE');
      }
      assert.ok(exercised > 0, 'no registration CONNECT reached the server before the device was activated');
    });
  }
});
