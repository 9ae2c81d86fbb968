/**
 * The official Node SDK's gateway API end to end against thingauth (iot.gateway(...):
 * regiestSubDevice, addTopo, getTopo, login, the sub-device's postProps, logout, removeTopo),
 * and the captured C Link SDK gateway publishes (topo/add, batch_login) from the wire samples.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import { connectClient, endClient, eventually, nextMessage, signedConnect, subscribe } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, collect, connectApp, request, setupGateway, statusOf, type GatewaySetup } from './gateway-helpers.js';

const require = createRequire(import.meta.url);

interface Res {
  code: number;
  data: any;
  message: string;
  id: string;
}
type Cb = (res: Res) => void;
interface SdkThing {
  on(event: string, cb: (arg?: unknown) => void): void;
  postProps(params: Record<string, unknown>, cb: Cb): void;
  end(force?: boolean, cb?: () => void): void;
}
interface SdkGateway extends SdkThing {
  regiestSubDevice(devices: { productKey: string; deviceName: string }[], cb: Cb): void;
  addTopo(devices: { productKey: string; deviceName: string; deviceSecret: string }[], cb: Cb): void;
  getTopo(cb: Cb): void;
  removeTopo(devices: { productKey: string; deviceName: string }[], cb: Cb): void;
  login(device: { productKey: string; deviceName: string; deviceSecret: string }, cb: Cb): SdkThing;
  logout(device: { productKey: string; deviceName: string }, cb: Cb): void;
}
const iot = require('alibabacloud-iot-device-sdk') as { gateway(config: Record<string, unknown>): SdkGateway };

/** An SDK callback as a promise (rejects if the platform never answers). */
function call(fn: (cb: Cb) => unknown, what: string): Promise<Res> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no reply to ${what}`)), 5_000);
    fn((res) => {
      clearTimeout(timer);
      resolve(res);
    });
  });
}

describe('official Node SDK gateway API', () => {
  let server: TestServer;
  let g: GatewaySetup;

  before(async () => {
    server = await startTestServer();
    g = await setupGateway(server, { subCount: 1, dynamicRegistration: true });
  });
  after(async () => {
    await server.stop();
  });

  it('regiestSubDevice, addTopo, getTopo, login, postProps, logout, removeTopo', async () => {
    const sub = g.subs[0]!;
    const listener = await connectApp(server, [g.subProductKey]);
    const gateway = iot.gateway({
      productKey: g.gateway.productKey,
      deviceName: g.gateway.deviceName,
      deviceSecret: g.gateway.deviceSecret,
      brokerUrl: `mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}`,
    });
    try {
      await new Promise<void>((resolve, reject) => {
        gateway.on('connect', () => resolve());
        gateway.on('error', (e) => reject(e instanceof Error ? e : new Error(String(e))));
      });

      const reg = await call((cb) => gateway.regiestSubDevice([{ productKey: sub.productKey, deviceName: sub.deviceName }], cb), 'regiestSubDevice');
      assert.equal(reg.code, 200, JSON.stringify(reg));
      const deviceSecret = reg.data[0].deviceSecret as string;
      assert.equal(deviceSecret, sub.deviceSecret);
      const triple = { productKey: sub.productKey, deviceName: sub.deviceName, deviceSecret };

      const add = await call((cb) => gateway.addTopo([triple], cb), 'addTopo');
      assert.equal(add.code, 200, JSON.stringify(add));
      const topo = await call((cb) => gateway.getTopo(cb), 'getTopo');
      assert.equal(topo.code, 200);
      assert.deepEqual(topo.data, [{ productKey: sub.productKey, deviceName: sub.deviceName }]);

      let subDevice: SdkThing | undefined;
      const login = await call((cb) => {
        subDevice = gateway.login(triple, cb);
      }, 'login');
      assert.equal(login.code, 200, JSON.stringify(login));
      assert.equal(await statusOf(server, sub), 'ONLINE');

      assert.deepEqual(await subscribe(listener, `/sys/${sub.productKey}/+/thing/event/property/post`), [0]);
      const seen = nextMessage(listener, (t) => t === `/sys/${sub.productKey}/${sub.deviceName}/thing/event/property/post`);
      const post = await call((cb) => subDevice!.postProps({ LightSwitch: 1 }, cb), 'postProps');
      assert.equal(post.code, 200, JSON.stringify(post));
      assert.equal(JSON.parse((await seen).payload.toString()).params.LightSwitch, 1, 'the application received the sub-device data');

      const logout = await call((cb) => gateway.logout({ productKey: sub.productKey, deviceName: sub.deviceName }, cb), 'logout');
      assert.equal(logout.code, 200);
      assert.equal(await statusOf(server, sub), 'OFFLINE');

      const remove = await call((cb) => gateway.removeTopo([{ productKey: sub.productKey, deviceName: sub.deviceName }], cb), 'removeTopo');
      assert.equal(remove.code, 200);
      const after = await call((cb) => gateway.getTopo(cb), 'getTopo');
      assert.deepEqual(after.data, []);
    } finally {
      gateway.end(true);
      await endClient(listener);
    }
  });
});

interface WireSample {
  name: string;
  kind: string;
  gateway?: { productKey: string; deviceName: string; deviceSecret: string };
  subDeviceSecrets?: Record<string, string>;
  subDeviceProductSecret?: string;
  topic?: string;
  payload?: string;
}

const samples = (
  JSON.parse(fs.readFileSync(new URL('../../../test/fixtures/wire-samples.json', import.meta.url), 'utf8')) as { samples: WireSample[] }
).samples.filter((s) => s.kind === 'gateway-publish');

describe('captured C Link SDK gateway publishes', () => {
  let server: TestServer;

  before(async () => {
    assert.equal(samples.length, 2, 'the fixture holds the topo/add and batch_login samples');
    server = await startTestServer();
    const first = samples[0]!;
    const { registry } = server.running.ctx.services;
    const store = server.running.ctx.store;
    const gw = first.gateway!;
    await registry.createProduct({ productKey: gw.productKey, productName: 'bench gateway', nodeType: 'GATEWAY' });
    await store.importDevices(gw.productKey, [{ deviceName: gw.deviceName, deviceSecret: gw.deviceSecret, iotId: 'iotBenchGateway000000000000001' }], 10, false, new Date().toISOString());
    const subPk = JSON.parse(first.payload!).params[0].productKey as string;
    await registry.createProduct({ productKey: subPk, productSecret: first.subDeviceProductSecret!, productName: 'bench sub devices', nodeType: 'SUB_DEVICE' });
    const rows = Object.entries(first.subDeviceSecrets!).map(([deviceName, deviceSecret], i) => ({ deviceName, deviceSecret, iotId: `iotBenchSub${String(i).padStart(19, '0')}` }));
    await store.importDevices(subPk, rows, 100, false, new Date().toISOString());
  });
  after(async () => {
    await server.stop();
  });

  it('topo/add then batch_login, as captured, each get a 200 reply on the matching _reply topic; the sub-devices are ONLINE', async () => {
    const gw = samples[0]!.gateway!;
    // C SDK 4.x connects with _ss=1 and never subscribes: replies and notices must arrive anyway.
    const client = await connectClient(server, 'mqtt', signedConnect({ ...gw, extra: ['_ss=1', '_v=sdk-c-4.1.0', 'ext=3'] }));
    try {
      for (const s of samples) {
        const r = await request(client, s.topic!, s.payload!);
        assert.equal(r.body.code, 200, `${s.name}: ${JSON.stringify(r.body)}`);
        assert.equal(r.body.id, JSON.parse(s.payload!).id);
        assert.equal(typeof r.body.message, 'string');
        assert.ok('data' in r.body);
      }
      const subPk = JSON.parse(samples[0]!.payload!).params[0].productKey as string;
      for (const dn of Object.keys(samples[0]!.subDeviceSecrets!)) {
        assert.equal(await statusOf(server, { productKey: subPk, deviceName: dn, deviceSecret: '' }), 'ONLINE');
      }
      // _ss=1: the gateway is subscribed to its logged-in sub-devices' downlink without asking.
      const dn = Object.keys(samples[0]!.subDeviceSecrets!)[0]!;
      const down = nextMessage(client, (t) => t === `/sys/${subPk}/${dn}/thing/service/property/set`);
      const appClient = await connectApp(server, [subPk]);
      try {
        appClient.publish(`/sys/${subPk}/${dn}/thing/service/property/set`, JSON.stringify({ id: '9', params: { on: 1 } }));
        assert.equal(JSON.parse((await down).payload.toString()).params.on, 1);
      } finally {
        await endClient(appClient);
      }
    } finally {
      await endClient(client);
    }
  });
});

describe('the real limit: 1,500 sub-devices per gateway, logged in in batches of 50', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it('1,500 attach, the 1,501st is refused (6400 over MQTT, 422 by API); 1,500 log in and go OFFLINE with the gateway', async (t) => {
    const g = await setupGateway(server, { subCount: 1_501 });
    const subs = g.subs.slice(0, 1_500);
    const last = g.subs[1_500]!;
    const attached = await attachByApi(server, g.gateway, subs);
    assert.equal(attached.total, 1_500);

    const client = await connectClient(server, 'mqtt', signedConnect(g.gateway));
    try {
      const { topoEntry, loginParams, sessionTopic, sysTopic } = await import('./gateway-helpers.js');
      const refused = await request(client, sysTopic(g.gateway, 'thing/topo/add'), { params: [topoEntry(last)] });
      assert.equal(refused.body.code, 6400);
      const api = await server.request('POST', `/api/v1/products/${g.gateway.productKey}/devices/${g.gateway.deviceName}/sub-devices`, {
        subDevices: [{ productKey: last.productKey, deviceName: last.deviceName }],
      });
      assert.equal(api.status, 422);
      assert.equal((await server.request('GET', `/api/v1/products/${last.productKey}/devices/${last.deviceName}`)).body.gateway, null);

      // Re-adding members already attached does not count against the limit.
      const readd = await request(client, sysTopic(g.gateway, 'thing/topo/add'), { params: subs.slice(0, 3).map((s) => topoEntry(s)) });
      assert.equal(readd.body.code, 200);

      const notices = collect(client, `/ext/error/${g.gateway.productKey}/${g.gateway.deviceName}`);
      const started = performance.now();
      const batches: Promise<{ body: any }>[] = [];
      for (let i = 0; i < subs.length; i += 50) {
        const deviceList = subs.slice(i, i + 50).map((s) => {
          const { signMethod: _m, ...entry } = loginParams(s, { signMethod: 'hmacsha256', clientId: `${s.productKey}.${s.deviceName}` });
          return entry;
        });
        batches.push(request(client, sessionTopic(g.gateway, 'batch_login'), { params: { signMethod: 'hmacSha256', deviceList } }, { ms: 20_000 }));
      }
      const replies = await Promise.all(batches);
      t.diagnostic(`1,500 sub-devices logged in (30 batch_login of 50) in ${Math.round(performance.now() - started)} ms`);
      assert.deepEqual([...new Set(replies.map((r) => r.body.code))], [200]);
      const online = await server.request('GET', `/api/v1/products/${g.subProductKey}/devices?status=ONLINE&limit=1`);
      assert.equal(online.body.total, 1_500);
      notices.stop();
      assert.deepEqual(notices.messages, []);
    } finally {
      await endClient(client);
    }
    await eventually(async () => (await server.request('GET', `/api/v1/products/${g.subProductKey}/devices?status=OFFLINE&limit=1`)).body.total === 1_500, 10_000);
  });
});
