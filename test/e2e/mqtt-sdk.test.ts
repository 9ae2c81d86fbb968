/**
 * Real device software against thingauth: the official Node SDK (alibabacloud-iot-device-sdk,
 * mqtt 3.0.0 inside) with brokerUrl pointed at us, and every captured `mqtt-connect` wire
 * sample from test/fixtures/wire-samples.json replayed byte-for-field.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { connectClient, createDevice, endClient, eventually, type DeviceCredentials } from '../helpers/mqtt.js';
import { whenSdkConnected } from '../helpers/sdk.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const require = createRequire(import.meta.url);
const iot = require('alibabacloud-iot-device-sdk') as { device(config: Record<string, unknown>): SdkDevice };

interface SdkDevice {
  on(event: 'connect' | 'error' | 'close' | 'offline', cb: (arg?: unknown) => void): void;
  postProps(params: Record<string, unknown>, cb: (res: { code: number; id: string; data: unknown; message: string }) => void): void;
  postEvent(eventName: string, params: Record<string, unknown>, cb: (res: { code: number }) => void): void;
  end(force?: boolean, cb?: () => void): void;
}

const samples = JSON.parse(fs.readFileSync(new URL('../../../test/fixtures/wire-samples.json', import.meta.url), 'utf8')) as {
  samples: { name: string; kind: string; deviceSecret?: string; connect?: Record<string, any>; expect: string }[];
};

function sdkConnect(config: Record<string, unknown>): Promise<SdkDevice> {
  return whenSdkConnected(iot.device(config), 5_000);
}

function postProps(device: SdkDevice, params: Record<string, unknown>): Promise<{ code: number; data: unknown; message: string; id: string }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no postProps reply')), 5_000);
    device.postProps(params, (res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

describe('official Node SDK and captured wire samples', () => {
  let server: TestServer;
  let dev: DeviceCredentials & { iotId: string };

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it('the SDK connects with brokerUrl pointed at thingauth and postProps gets its reply', async () => {
    const device = await sdkConnect({ ...dev, brokerUrl: `mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}` });
    try {
      const res = await postProps(device, { LightSwitch: 1, Temperature: 22.5 });
      assert.equal(res.code, 200);
      assert.deepEqual(res.data, {});
      assert.equal(res.message, 'success');
      // Its ~17 subscriptions (wildcards included) are all its own topics: none refused.
      assert.ok(!server.logs.join('').includes('subscription refused'), 'the SDK saw no refused subscription');
    } finally {
      await new Promise<void>((r) => device.end(true, () => r()));
    }
    const rec = await eventually(async () => {
      const d = await server.running.ctx.store.getDevice(dev.productKey, dev.deviceName);
      return d?.activatedAt ? d : undefined;
    });
    assert.ok(rec.activatedAt);
  });

  it('the SDK postEvent gets its reply', async () => {
    const device = await sdkConnect({ ...dev, brokerUrl: `mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}` });
    try {
      const res = await new Promise<{ code: number }>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('no postEvent reply')), 5_000);
        device.postEvent('lowBattery', { level: 3 }, (r) => {
          clearTimeout(timer);
          resolve(r);
        });
      });
      assert.equal(res.code, 200);
    } finally {
      await new Promise<void>((r) => device.end(true, () => r()));
    }
  });

  for (const signAlgorithm of ['sha256', 'md5']) {
    it(`the SDK with signAlgorithm '${signAlgorithm}' (it still signs with SHA1) is accepted`, async () => {
      const device = await sdkConnect({ ...dev, signAlgorithm, brokerUrl: `mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}` });
      await new Promise<void>((r) => device.end(true, () => r()));
    });
  }

  it('the SDK connects over TLS (mqtts://, securemode=2) trusting the generated CA', async () => {
    const sdkPath = require.resolve('alibabacloud-iot-device-sdk');
    const port = server.running.listeners.mqtts!.port;
    const script = `
      const iot = require(${JSON.stringify(sdkPath)});
      const d = iot.device(Object.assign(${JSON.stringify(dev)}, { brokerUrl: 'mqtts://localhost:${port}' }));
      const t = setTimeout(() => { process.stdout.write('timeout'); process.exit(1); }, 8000);
      d.on('error', (e) => { process.stdout.write('error ' + (e && e.message)); process.exit(1); });
      d.on('connect', () => d.postProps({ a: 1 }, (res) => { clearTimeout(t); process.stdout.write(JSON.stringify(res)); d.end(true); process.exit(0); }));`;
    const out = await new Promise<string>((resolve, reject) => {
      execFile(process.execPath, ['-e', script], { env: { ...process.env, NODE_EXTRA_CA_CERTS: server.running.ctx.tls.caPath! }, timeout: 20_000 }, (err, stdout, stderr) =>
        err ? reject(new Error(`${err.message}\n${stdout}\n${stderr}`)) : resolve(stdout),
      );
    });
    assert.equal(JSON.parse(out).code, 200, out);
  });

  for (const sample of samples.samples.filter((s) => s.kind === 'mqtt-connect')) {
    it(`accepts wire sample: ${sample.name}`, async () => {
      const c = sample.connect!;
      const [deviceName, productKey] = [c.username.slice(0, c.username.lastIndexOf('&')), c.username.slice(c.username.lastIndexOf('&') + 1)];
      const { registry } = server.running.ctx.services;
      const store = server.running.ctx.store;
      if (!(await store.getProduct(productKey))) await registry.createProduct({ productName: 'wire sample product', productKey });
      await store.importDevices(productKey, [{ deviceName, deviceSecret: sample.deviceSecret!, iotId: `wire${productKey}${deviceName}`.replace(/[^A-Za-z0-9]/g, '').slice(0, 30) }], 1000, false, new Date().toISOString());
      const client = await connectClient(
        server,
        'mqtt',
        { clientId: c.clientId, username: c.username, password: c.password },
        { keepalive: c.keepalive, clean: c.clean, protocolVersion: c.protocolVersion },
      );
      await endClient(client);
    });
  }
});
