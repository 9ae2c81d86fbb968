/**
 * The older Node package `aliyun-iot-device-sdk` (1.0.1, mqtt 2.x inside), unchanged but for
 * brokerUrl. It writes its ClientId parameter list over several lines
 * (`<pk>&<dn>|securemode=3,\n        signmethod=hmacsha1,\n        timestamp=<ms>|`) and signs
 * with HMAC-SHA1 over the timestamp: before the parser dropped white space around items it
 * was refused (issue 12 item 4). Its CONNECT is checked on the wire too.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { createDevice, eventually, type DeviceCredentials } from '../helpers/mqtt.js';
import { whenSdkConnected } from '../helpers/sdk.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const require = createRequire(import.meta.url);
const legacy = require('aliyun-iot-device-sdk') as { device(config: Record<string, unknown>): LegacyDevice };

interface LegacyDevice {
  on(event: string, cb: (...args: unknown[]) => void): void;
  publish(topic: string, payload: string): void;
  end(force?: boolean): void;
  model?: { genConnectPrarms(): { clientId: string } };
}

describe('older Node SDK aliyun-iot-device-sdk 1.0.1', () => {
  let server: TestServer;
  let dev: DeviceCredentials & { iotId: string };

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it('logs in with its multi-line ClientId list and its SHA1 sign; the device goes ONLINE', async () => {
    const device = legacy.device({
      productKey: dev.productKey,
      deviceName: dev.deviceName,
      deviceSecret: dev.deviceSecret,
      brokerUrl: `mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}`,
    });
    try {
      // The ClientId it sends: the white space this test is about is really there.
      const sent = device.model?.genConnectPrarms().clientId;
      if (sent !== undefined) assert.match(sent, /\|securemode=3,\n\s+signmethod=hmacsha1,\n\s+timestamp=\d+\|$/);
      await whenSdkConnected(device);
      await eventually(async () => (await server.request('GET', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`)).body.status === 'ONLINE', 10_000);
    } finally {
      device.end(true);
    }
  });
});
