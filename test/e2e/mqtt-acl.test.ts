/**
 * Topic authorization and the system replies SDKs wait for, over real sockets: a device
 * touches only its own topics; `_reply` arrives even without a subscription; applications
 * read and command the devices of their products only.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import {
  connectClient,
  connectRefusal,
  createDevice,
  endClient,
  eventually,
  nextMessage,
  signedConnect,
  subscribe,
  waitForClose,
  type DeviceCredentials,
} from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

type Dev = DeviceCredentials & { iotId: string };

function publish(client: MqttClient, topic: string, payload: string | object, qos: 0 | 1 = 0): Promise<void> {
  return new Promise((resolve, reject) =>
    client.publish(topic, typeof payload === 'string' ? payload : JSON.stringify(payload), { qos }, (err) => (err ? reject(err) : resolve())),
  );
}

function noMessageWithin(client: MqttClient, predicate: (t: string) => boolean, ms: number): Promise<void> {
  return nextMessage(client, predicate, ms).then(
    (m) => {
      throw new Error(`unexpected message on ${m.topic}`);
    },
    () => undefined,
  );
}

describe('MQTT topic ACL and system replies', () => {
  let server: TestServer;
  let a: Dev;
  let b: Dev;
  let other: Dev;

  before(async () => {
    server = await startTestServer();
    a = await createDevice(server);
    b = await createDevice(server, { productKey: a.productKey });
    other = await createDevice(server);
  });
  after(async () => {
    await server.stop();
  });

  it('grants subscriptions to own topics, the Node SDK set included', async () => {
    const c = await connectClient(server, 'mqtt', signedConnect(a));
    const own = [
      `/sys/${a.productKey}/${a.deviceName}/thing/event/+/post_reply`,
      `/sys/${a.productKey}/${a.deviceName}/thing/service/property/set`,
      `/sys/${a.productKey}/${a.deviceName}/rrpc/request/+`,
      `/sys/${a.productKey}/${a.deviceName}/thing/config/#`,
      `/shadow/get/${a.productKey}/${a.deviceName}`,
      `/${a.productKey}/${a.deviceName}/user/get`,
      `/${a.productKey}/${a.deviceName}/user/#`,
      `/ext/session/${a.productKey}/${a.deviceName}/combine/login_reply`,
      `/ext/error/${a.productKey}/${a.deviceName}`,
      `/ext/ntp/${a.productKey}/${a.deviceName}/response`,
    ];
    for (const t of own) assert.deepEqual(await subscribe(c, t, 1), [1], t);
    await endClient(c);
  });

  it('refuses other devices\' topics and cross-device wildcards with SUBACK 0x80, keeping the connection', async () => {
    const c = await connectClient(server, 'mqtt', signedConnect(a));
    const foreign = [
      `/sys/${b.productKey}/${b.deviceName}/thing/service/property/set`,
      `/sys/${a.productKey}/+/thing/event/property/post`,
      `/sys/+/${a.deviceName}/thing/event/property/post`,
      `/sys/${a.productKey}/#`,
      '#',
      '+/+/+',
      '$SYS/#',
      `/${other.productKey}/${other.deviceName}/user/get`,
      `/shadow/get/${a.productKey}/+`,
      `/sys/${a.productKey}/${a.deviceName}x/thing/#`,
    ];
    for (const t of foreign) assert.deepEqual(await subscribe(c, t), [0x80], t);
    // Mixed SUBSCRIBE: each filter decided on its own.
    const granted = await subscribe(c, {
      [`/sys/${a.productKey}/${a.deviceName}/thing/service/+`]: { qos: 0 },
      [`/sys/${b.productKey}/${b.deviceName}/thing/service/+`]: { qos: 0 },
    });
    assert.deepEqual(granted, [0, 0x80]);
    assert.ok(c.connected);
    await endClient(c);
    assert.match(server.logs.join(''), /subscription refused by topic ACL/);
  });

  it('disconnects a device that publishes on another device\'s topic, and the message reaches nobody', async () => {
    const victim = await connectClient(server, 'mqtt', signedConnect(b));
    await subscribe(victim, `/sys/${b.productKey}/${b.deviceName}/thing/service/property/set`);
    const attacker = await connectClient(server, 'mqtt', signedConnect(a));
    const closed = waitForClose(attacker);
    const silence = noMessageWithin(victim, () => true, 500);
    attacker.publish(`/sys/${b.productKey}/${b.deviceName}/thing/service/property/set`, '{"id":"1","params":{"x":1}}');
    await closed;
    await silence;
    await endClient(attacker);
    await endClient(victim);
    assert.match(server.logs.join(''), /publish refused by topic ACL/);
  });

  it('answers thing/event/property/post on _reply without a subscription, echoing the id with its type', async () => {
    // C Link SDK behaviour: it never SUBSCRIBEs to system replies.
    const c = await connectClient(server, 'mqtt', signedConnect(a));
    const topic = `/sys/${a.productKey}/${a.deviceName}/thing/event/property/post`;
    const reply = nextMessage(c, (t) => t === topic + '_reply');
    await publish(c, topic, { id: '3|exp-topic|x', version: '1.0', params: { t: 1 }, method: 'thing.event.property.post' });
    const body = JSON.parse((await reply).payload.toString());
    assert.deepEqual(body, { id: '3|exp-topic|x', code: 200, data: {}, message: 'success' });

    const numeric = nextMessage(c, (t) => t === topic + '_reply');
    await publish(c, topic, { id: 42, params: '{}', method: '' });
    assert.deepEqual(JSON.parse((await numeric).payload.toString()), { id: 42, code: 200, data: {}, message: 'success' });
    await endClient(c);
  });

  it('answers thing/event/{id}/post once even when the device subscribed to the reply, and not at all for sys.ack=0', async () => {
    const c = await connectClient(server, 'mqtt', signedConnect(a));
    await subscribe(c, `/sys/${a.productKey}/${a.deviceName}/thing/event/+/post_reply`);
    const topic = `/sys/${a.productKey}/${a.deviceName}/thing/event/alarm/post`;
    const replies: string[] = [];
    c.on('message', (t, p) => {
      if (t === topic + '_reply') replies.push(p.toString());
    });
    await publish(c, topic, { id: '7', params: { value: {} } }, 1);
    await publish(c, topic, { id: '8', params: {}, sys: { ack: 0 } }, 1);
    // A third post, sent after both, bounds the wait: its reply comes after any reply to 7 and 8.
    await publish(c, topic, { id: '9', params: {} }, 1);
    await eventually(() => replies.some((r) => JSON.parse(r).id === '9'));
    assert.deepEqual(replies.map((r) => JSON.parse(r).id), ['7', '9']);
    await endClient(c);
  });

  it('auto-subscribes a `_ss=1` device to its downlink system topics', async () => {
    const appKeys = await server.running.ctx.services.applications.create({ name: 'ss-app', productKeys: [a.productKey] });
    const device = await connectClient(server, 'mqtt', signedConnect({ ...a, extra: ['_ss=1', '_v=sdk-c-4.0.0'] }));
    const app = await connectClient(server, 'mqtts', { clientId: 'ss-app-1', username: `app:${appKeys.appKey}`, password: appKeys.appSecret });
    const set = `/sys/${a.productKey}/${a.deviceName}/thing/service/property/set`;
    // The server-side subscription is made right after CONNACK; retry until it is in place.
    let got: { topic: string } | undefined;
    for (let i = 0; i < 20 && !got; i++) {
      const wait = nextMessage(device, (t) => t === set, 150).catch(() => undefined);
      await publish(app, set, { id: '1', params: { on: 1 } });
      got = await wait;
    }
    assert.ok(got, 'device received the downlink without subscribing');
    await endClient(device);
    await endClient(app);
  });

  it('delivers a downlink once to a `_ss=1` device that also subscribed to it, and never to a device without `_ss`', async () => {
    const appKeys = await server.running.ctx.services.applications.create({ name: 'ss-app-2', productKeys: [a.productKey] });
    const app = await connectClient(server, 'mqtts', { clientId: 'ss-app-2', username: `app:${appKeys.appKey}`, password: appKeys.appSecret });
    const set = `/sys/${a.productKey}/${a.deviceName}/thing/service/property/set`;
    const both = await connectClient(server, 'mqtt', signedConnect({ ...a, extra: ['_ss=1'] }));
    await subscribe(both, `/sys/${a.productKey}/${a.deviceName}/thing/service/#`);
    const got: string[] = [];
    both.on('message', (t, p) => t === set && got.push(p.toString()));
    await publish(app, set, { id: 'once', params: {} });
    // A second downlink from the same sender arrives after every copy of the first.
    await publish(app, set, { id: 'after', params: {} });
    await eventually(() => got.some((p) => JSON.parse(p).id === 'after'));
    assert.deepEqual(got.map((p) => JSON.parse(p).id), ['once', 'after']);
    await endClient(both);

    const plain = await connectClient(server, 'mqtt', signedConnect(a));
    const silence = noMessageWithin(plain, (t) => t === set, 300);
    await publish(app, set, { id: 'none', params: {} });
    await silence;
    await endClient(plain);
    await endClient(app);
  });

  describe('applications', () => {
    let app: { appKey: string; appSecret: string };
    before(async () => {
      app = await server.running.ctx.services.applications.create({ name: 'backend', productKeys: [a.productKey] });
    });

    it('subscribes to device data of its products and receives device posts (which still get their reply)', async () => {
      const ac = await connectClient(server, 'mqtts', { clientId: 'backend-1', username: `app:${app.appKey}`, password: app.appSecret });
      assert.deepEqual(await subscribe(ac, `/sys/${a.productKey}/+/thing/event/property/post`), [0]);
      const dc = await connectClient(server, 'mqtt', signedConnect(a));
      const topic = `/sys/${a.productKey}/${a.deviceName}/thing/event/property/post`;
      const atApp = nextMessage(ac, (t) => t === topic);
      const atDevice = nextMessage(dc, (t) => t === topic + '_reply');
      await publish(dc, topic, { id: '11', params: { temp: 21.5 } });
      assert.equal(JSON.parse((await atApp).payload.toString()).params.temp, 21.5);
      assert.equal(JSON.parse((await atDevice).payload.toString()).code, 200);
      await endClient(dc);
      await endClient(ac);
    });

    it('sends a command to a device of its product', async () => {
      const ac = await connectClient(server, 'mqtts', { clientId: 'backend-2', username: `app:${app.appKey}`, password: app.appSecret });
      const dc = await connectClient(server, 'mqtt', signedConnect(a));
      const set = `/sys/${a.productKey}/${a.deviceName}/thing/service/property/set`;
      await subscribe(dc, set);
      const got = nextMessage(dc, (t) => t === set);
      await publish(ac, set, { id: '5', params: { on: 1 } });
      assert.equal(JSON.parse((await got).payload.toString()).params.on, 1);
      await endClient(dc);
      await endClient(ac);
    });

    it('logs in with an HMAC password instead of the secret', async () => {
      const { createHmac } = await import('node:crypto');
      const ts = String(Date.now());
      const password = createHmac('sha256', app.appSecret).update(`appKey${app.appKey}clientIdbackend-3timestamp${ts}`).digest('hex');
      const ac = await connectClient(server, 'mqtt', { clientId: `backend-3|signmethod=hmacsha256,timestamp=${ts}|`, username: `app:${app.appKey}`, password });
      await endClient(ac);
    });

    it('may not touch products it is not scoped to, nor use `#`', async () => {
      const ac = await connectClient(server, 'mqtts', { clientId: 'backend-4', username: `app:${app.appKey}`, password: app.appSecret });
      assert.deepEqual(await subscribe(ac, `/sys/${other.productKey}/+/thing/event/property/post`), [0x80]);
      assert.deepEqual(await subscribe(ac, '#'), [0x80]);
      assert.deepEqual(await subscribe(ac, '/sys/+/+/thing/event/property/post'), [0x80]);
      const closed = waitForClose(ac);
      ac.publish(`/sys/${other.productKey}/${other.deviceName}/thing/service/property/set`, '{}');
      await closed;
      await endClient(ac);
    });

    it('refuses a wrong application secret and an unknown application with CONNACK 5', async () => {
      assert.equal((await connectRefusal(server, 'mqtt', { clientId: 'x', username: `app:${app.appKey}`, password: 'nope' })).code, 5);
      assert.equal((await connectRefusal(server, 'mqtt', { clientId: 'x', username: 'app:appDoesNotExist00', password: 'nope' })).code, 5);
    });

    it('closes live application sessions when the application is deleted', async () => {
      const tmp = await server.running.ctx.services.applications.create({ name: 'temp', productKeys: [a.productKey] });
      const ac = await connectClient(server, 'mqtts', { clientId: 'temp-1', username: `app:${tmp.appKey}`, password: tmp.appSecret });
      const closed = waitForClose(ac);
      await server.running.ctx.services.applications.delete(tmp.appKey);
      await closed;
      await endClient(ac);
      assert.equal((await connectRefusal(server, 'mqtt', { clientId: 'temp-1', username: `app:${tmp.appKey}`, password: tmp.appSecret })).code, 5);
    });
  });
});
