/**
 * Issue 11 item 4 over real sockets: (1) topics the platform publishes TO a device are
 * subscribe-only for it (downlink requests, platform replies, /ext pushes), while the device's
 * own answers (`..._reply` it sends, rrpc/response) stay publishable, shown with the official
 * Node SDK in both directions; (2) retained messages are bounded per identity and in total
 * (count and bytes), refused beyond (3.1.1: connection closed; MQTT 5: DISCONNECT 0x97),
 * and a device's retained messages go when it is deleted or reset.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import mqtt, { type MqttClient } from 'mqtt';
import { connectClient, createDevice, endClient, eventually, listenerUrl, nextMessage, signedConnect, subscribe, waitForClose, type DeviceCredentials } from '../helpers/mqtt.js';
import { whenSdkConnected } from '../helpers/sdk.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, connectApp, connectGateway, loginParams, request, sessionTopic, setupGateway, sysTopic } from './gateway-helpers.js';

type Dev = DeviceCredentials & { iotId: string };

const require = createRequire(import.meta.url);
const iot = require('alibabacloud-iot-device-sdk') as { device(config: Record<string, unknown>): SdkDevice };

interface SdkDevice {
  on(event: 'connect' | 'error' | 'close' | 'offline', cb: (arg?: unknown) => void): void;
  once(event: 'connect' | 'close', cb: () => void): void;
  onService(name: string, cb: (res: { params: unknown }, reply: (r: Record<string, unknown>) => void) => void): void;
  publish(topic: string, payload: string, cb?: (err?: Error) => void): void;
  end(force?: boolean, cb?: () => void): void;
}

function sdkConnect(server: TestServer, dev: Dev): Promise<SdkDevice> {
  return whenSdkConnected(iot.device({ ...dev, brokerUrl: `mqtt://127.0.0.1:${server.running.listeners.mqtt!.port}` }));
}

function publishAcked(client: MqttClient, topic: string, payload: string | Buffer, opts: { retain?: boolean } = {}): Promise<void> {
  return new Promise((resolve, reject) => client.publish(topic, payload, { qos: 1, retain: opts.retain ?? false }, (err) => (err ? reject(err) : resolve())));
}

/** Publishes and expects the server to close the connection (a refused publish in MQTT 3.1.1). */
async function refusedPublish(client: MqttClient, topic: string, payload: string | Buffer, opts: { retain?: boolean } = {}): Promise<void> {
  const closed = waitForClose(client, 10_000);
  client.publish(topic, payload, { qos: 0, retain: opts.retain ?? false });
  await closed;
}

/**
 * The retained messages one SUBSCRIBE of `filters` then `marker` (a topic known to hold a
 * retained message) delivers. aedes sends them filter by filter in order, so once the
 * marker's arrived, any of the earlier filters' would have arrived before it.
 */
async function retainedBefore(client: MqttClient, filters: string[], marker: string): Promise<Map<string, string>> {
  const got = new Map<string, string>();
  const on = (t: string, p: Buffer, packet: { retain?: boolean }) => {
    if (packet.retain) got.set(t, p.toString('utf8'));
  };
  client.on('message', on);
  try {
    const granted = await subscribe(client, Object.fromEntries([...filters, marker].map((f) => [f, { qos: 0 as const }])));
    assert.ok(granted.every((g) => g !== 0x80), 'every filter granted');
    await eventually(() => got.has(marker), 10_000);
    got.delete(marker);
    return got;
  } finally {
    client.off('message', on);
  }
}

/** Collects retained messages a fresh subscription of `filter` gets, until `count` arrived. */
async function retainedOf(server: TestServer, productKey: string, filter: string, count: number): Promise<Map<string, string>> {
  const app = await connectApp(server, [productKey]);
  const got = new Map<string, string>();
  app.on('message', (t, p, packet) => {
    if (packet.retain) got.set(t, p.toString('utf8'));
  });
  try {
    await subscribe(app, filter, 0);
    await eventually(() => got.size >= count, 10_000);
    return got;
  } finally {
    await endClient(app);
  }
}

describe('downlink topics are subscribe-only for the device (issue 11 item 4)', () => {
  let server: TestServer;
  let dev: Dev;

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  const sys = (d: Dev, tail: string) => `/sys/${d.productKey}/${d.deviceName}/${tail}`;

  it('official SDK: a service call reaches the device and its {id}_reply and property/set_reply reach the application', async () => {
    const app = await connectApp(server, [dev.productKey]);
    const device = await sdkConnect(server, dev);
    try {
      assert.deepEqual(await subscribe(app, sys(dev, 'thing/service/#'), 0), [0]);
      const called = new Promise<unknown>((resolve) =>
        device.onService('echo', (res, reply) => {
          reply({ code: 200, data: { echoed: true } });
          resolve(res.params);
        }),
      );
      const reply = nextMessage(app, (t) => t === sys(dev, 'thing/service/echo_reply'), 10_000);
      // onService subscribes asynchronously: call until the device has answered.
      const ask = setInterval(() => app.publish(sys(dev, 'thing/service/echo'), JSON.stringify({ id: '7', version: '1.0', method: 'thing.service.echo', params: { a: 1 } })), 200);
      try {
        assert.deepEqual(await called, { a: 1 });
        assert.equal(JSON.parse((await reply).payload.toString('utf8')).code, 200);
      } finally {
        clearInterval(ask);
      }
      const setReply = nextMessage(app, (t) => t === sys(dev, 'thing/service/property/set_reply'), 10_000);
      device.publish(sys(dev, 'thing/service/property/set_reply'), JSON.stringify({ id: '8', code: 200, data: {} }));
      assert.equal(JSON.parse((await setReply).payload.toString('utf8')).id, '8');
    } finally {
      await new Promise<void>((r) => device.end(true, () => r()));
      await endClient(app);
    }
  });

  it('official SDK: publishing on its own property/set (a downlink) closes the connection', async () => {
    const device = await sdkConnect(server, dev);
    try {
      const closed = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('the connection was not closed')), 10_000);
        device.once('close', () => {
          clearTimeout(timer);
          resolve();
        });
      });
      device.publish(sys(dev, 'thing/service/property/set'), JSON.stringify({ id: '9', params: { LightSwitch: 1 } }));
      await closed;
    } finally {
      await new Promise<void>((r) => device.end(true, () => r()));
    }
  });

  it('every downlink family is refused as a publish, even retained; the device still subscribes to all of them', async () => {
    const downlinks = [
      sys(dev, 'thing/service/property/set'),
      sys(dev, 'thing/service/property/get'),
      sys(dev, 'thing/service/echo'),
      sys(dev, 'thing/event/property/post_reply'),
      sys(dev, 'thing/event/alarm/post_reply'),
      sys(dev, 'thing/event/property/pack/post_reply'),
      sys(dev, 'thing/topo/add_reply'),
      sys(dev, 'thing/sub/register_reply'),
      sys(dev, 'thing/model/down_raw'),
      sys(dev, 'thing/model/up_raw_reply'),
      sys(dev, 'thing/config/push'),
      sys(dev, 'thing/disable'),
      sys(dev, 'rrpc/request/1234'),
      `/ext/session/${dev.productKey}/${dev.deviceName}/combine/login_reply`,
      `/ext/error/${dev.productKey}/${dev.deviceName}`,
      `/ext/ntp/${dev.productKey}/${dev.deviceName}/response`,
    ];
    for (const topic of downlinks) {
      const c = await connectClient(server, 'mqtt', signedConnect(dev));
      await refusedPublish(c, topic, '{"id":"planted","params":{}}', { retain: true });
      await endClient(c);
    }
    const c = await connectClient(server, 'mqtt', signedConnect(dev));
    try {
      // A retained message the device may leave (its own custom topic) marks the end.
      const marker = `/${dev.productKey}/${dev.deviceName}/user/marker`;
      await publishAcked(c, marker, 'marker', { retain: true });
      // The device may subscribe to every downlink, and nothing was planted on any of them.
      const planted = await retainedBefore(c, downlinks, marker);
      assert.deepEqual([...planted.keys()], []);
    } finally {
      await endClient(c);
    }
  });

  it("the device's own answers and uplinks stay publishable", async () => {
    const c = await connectClient(server, 'mqtt', signedConnect(dev));
    try {
      for (const topic of [
        sys(dev, 'thing/service/property/set_reply'),
        sys(dev, 'thing/service/property/get_reply'),
        sys(dev, 'thing/service/echo_reply'),
        sys(dev, 'thing/model/down_raw_reply'),
        sys(dev, 'thing/config/push_reply'),
        sys(dev, 'rrpc/response/1234'),
        sys(dev, 'thing/event/property/post'),
        sys(dev, 'thing/event/alarm/post'),
        `/ext/rrpc/55/sys/${dev.productKey}/${dev.deviceName}/thing/service/echo`,
        `/${dev.productKey}/${dev.deviceName}/user/update`,
      ]) {
        await publishAcked(c, topic, '{"id":"1","code":200,"data":{}}');
      }
      assert.ok(c.connected);
    } finally {
      await endClient(c);
    }
  });
});

describe('a gateway for its logged-in sub-device: same directions (issue 11 item 4)', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it("answers on the sub-device's set_reply / {id}_reply, uplinks and topo requests pass; its property/set is refused", async () => {
    const g = await setupGateway(server, { subCount: 1 });
    const s = g.subs[0]!;
    await attachByApi(server, g.gateway, [s]);
    const gw = await connectGateway(server, g.gateway);
    try {
      assert.equal((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(s) })).body.code, 200);
      assert.equal((await request(gw, sysTopic(g.gateway, 'thing/topo/get'), { params: {} })).body.code, 200);
      for (const tail of ['thing/service/property/set_reply', 'thing/service/reboot_reply', 'thing/event/property/post']) {
        await publishAcked(gw, sysTopic(s, tail), '{"id":"1","code":200,"data":{}}');
      }
      await refusedPublish(gw, sysTopic(s, 'thing/service/property/set'), '{"id":"2","params":{}}');
    } finally {
      await endClient(gw);
    }
  });
});

describe('retained messages are bounded and go with the device (issue 11 item 4)', () => {
  let server: TestServer;
  let productKey: string;
  let a: Dev;
  let b: Dev;
  let big: Dev;
  let r: Dev;

  before(async () => {
    server = await startTestServer({ retainedPerIdentity: '3', retainedBytesPerIdentity: '100000', retainedTotal: '5', retainedBytesTotal: '10000000' });
    a = await createDevice(server);
    productKey = a.productKey;
    b = await createDevice(server, { productKey });
    big = await createDevice(server, { productKey });
    r = await createDevice(server, { productKey });
  });
  after(async () => {
    await server.stop();
  });

  const user = (d: Dev, name: string) => `/${d.productKey}/${d.deviceName}/user/${name}`;

  it('per device: 3 topics accepted (replacing one is fine), a 4th refused with the connection closed', async () => {
    const c = await connectClient(server, 'mqtt', signedConnect(a));
    await publishAcked(c, user(a, 'r1'), 'one', { retain: true });
    await publishAcked(c, user(a, 'r2'), 'two', { retain: true });
    await publishAcked(c, user(a, 'r3'), 'three', { retain: true });
    await publishAcked(c, user(a, 'r1'), 'one again', { retain: true });
    // Not retained: no quota involved.
    await publishAcked(c, user(a, 'r4'), 'plain');
    await refusedPublish(c, user(a, 'r4'), 'four', { retain: true });
    await endClient(c);
    const got = await retainedOf(server, productKey, `/${productKey}/${a.deviceName}/user/#`, 3);
    assert.deepEqual(Object.fromEntries(got), { [user(a, 'r1')]: 'one again', [user(a, 'r2')]: 'two', [user(a, 'r3')]: 'three' });
    assert.ok(server.logs.some((l) => l.includes('retained publish refused') && l.includes('at most 3 retained messages per device')));
  });

  it('per device bytes: a payload over the per-identity byte cap is refused', async () => {
    const c = await connectClient(server, 'mqtt', signedConnect(big));
    await refusedPublish(c, user(big, 'blob'), Buffer.alloc(150_000, 1), { retain: true });
    await endClient(c);
    assert.ok(server.logs.some((l) => l.includes('retained publish refused') && l.includes('retained bytes per device')));
  });

  it('in total: the 6th retained message of the server is refused; an MQTT 5 client gets DISCONNECT 0x97', async () => {
    const { url } = listenerUrl(server, 'mqtt');
    const sc = signedConnect(b);
    const c = await new Promise<MqttClient>((resolve, reject) => {
      const cl = mqtt.connect(url, { clientId: sc.clientId, username: sc.username, password: sc.password, protocolVersion: 5, reconnectPeriod: 0, clean: true });
      cl.once('connect', () => resolve(cl));
      cl.once('error', reject);
    });
    try {
      await publishAcked(c, user(b, 'x1'), 'x1', { retain: true });
      await publishAcked(c, user(b, 'x2'), 'x2', { retain: true });
      const disconnect = new Promise<number | undefined>((resolve) => c.once('disconnect', (p) => resolve(p.reasonCode)));
      c.publish(user(b, 'x3'), 'x3', { qos: 0, retain: true });
      assert.equal(await disconnect, 0x97);
      await waitForClose(c, 10_000);
    } finally {
      await endClient(c);
    }
    assert.ok(server.logs.some((l) => l.includes('the server holds its maximum number of retained messages')));
  });

  it('deleting a device removes its retained messages and frees the quota', async () => {
    assert.equal((await server.request('DELETE', `/api/v1/products/${productKey}/devices/${a.deviceName}`)).status, 204);
    // Room again: b's third retained message is accepted now.
    const c = await connectClient(server, 'mqtt', signedConnect(b));
    try {
      await publishAcked(c, user(b, 'x3'), 'x3', { retain: true });
    } finally {
      await endClient(c);
    }
    // None of a's is left (b's x3 marks the end of the retained stream).
    const app = await connectApp(server, [productKey]);
    try {
      const left = await retainedBefore(app, [`/${productKey}/${a.deviceName}/user/#`], user(b, 'x3'));
      assert.deepEqual([...left.keys()], []);
    } finally {
      await endClient(app);
    }
  });

  it('resetting a device removes its retained messages', async () => {
    // Make room: b clears one of its own (an empty retained payload deletes it).
    const cb = await connectClient(server, 'mqtt', signedConnect(b));
    await publishAcked(cb, user(b, 'x3'), '', { retain: true });
    await endClient(cb);
    const c = await connectClient(server, 'mqtt', signedConnect(r));
    await publishAcked(c, user(r, 'last'), 'value', { retain: true });
    await endClient(c);
    assert.equal((await retainedOf(server, productKey, user(r, 'last'), 1)).get(user(r, 'last')), 'value');
    assert.equal((await server.request('POST', `/api/v1/products/${productKey}/devices/${r.deviceName}/reset`)).status, 200);
    const app = await connectApp(server, [productKey]);
    try {
      const left = await retainedBefore(app, [user(r, 'last')], user(b, 'x1'));
      assert.deepEqual([...left.keys()], []);
    } finally {
      await endClient(app);
    }
  });
});
