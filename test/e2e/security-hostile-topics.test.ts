/**
 * Garbage JSON and oversized payloads on every system topic a device or gateway may publish:
 * /ext/session/.../combine/login|batch_login|logout|batch_logout, thing/topo/add|delete|get,
 * thing/sub/register, thing/proxy/provisioning/product_register, thing/event/property/post.
 * Each gets a clear answer (a `_reply` with a non-200 code, or for a payload over the 256 KB
 * limit the connection closed), nothing is written (devices, topology, online sessions), and
 * the gateway and other devices keep being served.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connectClient, nextMessage, signedConnect, waitForClose, type DeviceCredentials } from '../helpers/mqtt.js';

const GARBAGE: [string, string | Buffer][] = [
  ['not JSON', 'hello, platform'],
  ['empty', ''],
  ['null', 'null'],
  ['an array', '[1,2,3]'],
  ['a number', '42'],
  ['truncated JSON', '{"id":"1","params":{"subDevices":['],
  ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x69, 0x64, 0x22, 0x3a, 0xff, 0xfe, 0x7d])],
  ['deeply nested arrays', '['.repeat(50_000) + ']'.repeat(50_000)],
];

/** Valid JSON objects whose params are wrong: the handler must refuse them (non-200). */
const WRONG_PARAMS: [string, string][] = [
  ['params a string', '{"id":"2","version":"1.0","params":"x"}'],
  ['params a number', '{"id":"3","params":12}'],
  ['200 KB of junk inside a string', JSON.stringify({ id: '1', params: 'x'.repeat(200_000) })],
  ['list not an array', '{"id":"4","params":{"subDevices":"x","deviceList":"y","productKey":7}}'],
  ['list of junk', JSON.stringify({ id: '5', params: [{ productKey: 1, deviceName: null, sign: {}, clientId: [] }, 'x', null] })],
  ['1,500 bogus entries (under the 256 KB limit)', JSON.stringify({ id: '6', params: Array.from({ length: 1_500 }, (_, i) => ({ productKey: 'a1NoSuchPk', deviceName: `ghost-${i}`, sign: 'x', signmethod: 'hmacsha1', timestamp: '1', clientId: 'c' })) })],
];

describe('hostile payloads on system topics', () => {
  let server: TestServer;
  let gw: DeviceCredentials;
  let plain: DeviceCredentials;
  let gpk: string;
  let spk: string;
  let gateway: MqttClient;

  before(async () => {
    server = await startTestServer();
    const reg = server.running.ctx.services.registry;
    const gp = await reg.createProduct({ productName: 'hostile gateways', nodeType: 'GATEWAY' });
    const sp = await reg.createProduct({ productName: 'hostile subs', nodeType: 'SUB_DEVICE', dynamicRegistration: true });
    const dp = await reg.createProduct({ productName: 'hostile plain' });
    gpk = gp.productKey;
    spk = sp.productKey;
    const [g] = await reg.createDevices(gpk, { deviceNames: ['gw-hostile'] });
    const [d] = await reg.createDevices(dp.productKey, { deviceNames: ['plain-dev'] });
    await reg.createDevices(spk, { deviceNames: ['sub-a', 'sub-b'] });
    gw = { productKey: gpk, deviceName: g!.deviceName, deviceSecret: g!.deviceSecret, iotId: g!.iotId };
    plain = { productKey: dp.productKey, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret };
    gateway = await connectClient(server, 'mqtt', signedConnect(gw));
  });
  after(async () => {
    gateway?.end(true);
    await server.stop();
  });

  const topics = () => {
    const sys = `/sys/${gpk}/gw-hostile`;
    const ext = `/ext/session/${gpk}/gw-hostile/combine`;
    return [
      `${ext}/login`,
      `${ext}/batch_login`,
      `${ext}/logout`,
      `${ext}/batch_logout`,
      `${sys}/thing/topo/add`,
      `${sys}/thing/topo/delete`,
      `${sys}/thing/topo/get`,
      `${sys}/thing/sub/register`,
      `${sys}/thing/proxy/provisioning/product_register`,
      `${sys}/thing/event/property/post`,
    ];
  };

  async function snapshot() {
    const store = server.running.ctx.store;
    return {
      subs: await store.countDevices(spk),
      gateways: await store.countDevices(gpk),
      attached: await store.countSubDevices(gw.iotId!),
      subOnline: (await store.listDevices(spk, { status: 'ONLINE' }, 0, 10)).total,
    };
  }

  async function request(topic: string, payload: string | Buffer): Promise<{ code: number; id: unknown; message: string }> {
    const reply = nextMessage(gateway, (t) => t === topic + '_reply', 5_000);
    gateway.publish(topic, payload);
    const r = JSON.parse((await reply).payload.toString('utf8'));
    assert.deepEqual(Object.keys(r).sort(), ['code', 'data', 'id', 'message'], 'the full Alink envelope (spec 0.3)');
    return r;
  }

  async function stillServes(): Promise<void> {
    const c = await connectClient(server, 'mqtt', signedConnect(plain));
    try {
      const topic = `/sys/${plain.productKey}/plain-dev/thing/event/property/post`;
      const reply = nextMessage(c, (t) => t === topic + '_reply');
      c.publish(topic, JSON.stringify({ id: '9', params: { on: 1 } }));
      assert.equal(JSON.parse((await reply).payload.toString()).code, 200);
    } finally {
      await c.endAsync();
    }
    // The gateway itself still gets answers: topo/get works.
    const r = await request(`/sys/${gpk}/gw-hostile/thing/topo/get`, JSON.stringify({ id: 'ok', params: {} }));
    assert.equal(r.code, 200);
  }

  for (const [name, payload] of GARBAGE) {
    it(`${name} on every system topic: 460 with the envelope, nothing written`, async () => {
      const before = await snapshot();
      for (const topic of topics()) {
        const r = await request(topic, payload);
        assert.equal(r.code, 460, `${topic}: ${r.message}`);
        assert.match(r.message, /JSON object/);
      }
      assert.deepEqual(await snapshot(), before);
      await stillServes();
    });
  }

  for (const [name, payload] of WRONG_PARAMS) {
    it(`${name} on every gateway topic: refused (non-200), nothing written`, async () => {
      const before = await snapshot();
      for (const topic of topics()) {
        if (topic.endsWith('/topo/get') || topic.endsWith('/property/post')) continue; // they take any params
        const r = await request(topic, payload).catch((e: Error) => {
          throw new Error(`${topic}: ${e.message}`);
        });
        assert.notEqual(r.code, 200, `${topic} accepted ${name}`);
        assert.equal(typeof r.message, 'string');
      }
      assert.deepEqual(await snapshot(), before);
      await stillServes();
    });
  }

  it('300 KB payloads (over the 256 KB limit) on every system topic: the connection is closed, nothing written, the gateway reconnects', async () => {
    const before = await snapshot();
    const huge = JSON.stringify({ id: '1', params: { pad: 'y'.repeat(300 * 1024) } });
    for (const topic of topics()) {
      const c = await connectClient(server, 'mqtt', signedConnect(gw));
      c.publish(topic, huge);
      await waitForClose(c, 5_000);
      c.end(true);
    }
    assert.deepEqual(await snapshot(), before);
    // The old gateway session was taken over by those connections: connect it again.
    gateway.end(true);
    gateway = await connectClient(server, 'mqtt', signedConnect(gw));
    await stillServes();
  });
});
