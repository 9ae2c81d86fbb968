/**
 * Issue 14: three `thingauth serve` nodes on one private PostgreSQL and one private Redis
 * behave as one platform, driven by real MQTT clients:
 * - a device's publish on node A reaches an application on node B, and B's command reaches
 *   the device on A (mqemitter-redis);
 * - a login on B takes over the device's older session on A (one live session cluster-wide);
 * - disabling the device through node C's API kicks its session on A within 1 s (event bus);
 * - a persistent session (clean=false, QoS 1) resumes on another node with the message queued
 *   while it was away (aedes-persistence-redis);
 * - a gateway on A with a sub-device logged in through it gets the command an application on
 *   B sends to the sub-device;
 * - `GET /nodes` lists the three; a fourth node with a taken node id or another master key
 *   refuses to start with a message that says what to do.
 * Skipped only when PostgreSQL or Redis cannot be started and CI is unset.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it, test } from 'node:test';
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import { clientTracker, connectAppTo, connectTo, createDeviceIn, createDeviceOn, deviceConnect, refusalFrom, startTestCluster, type TestCluster } from '../helpers/cluster.js';
import { endClient, eventually, nextMessage, subscribe, waitForClose } from '../helpers/mqtt.js';
import { loginParams, request, sessionTopic } from './gateway-helpers.js';

/** True when nothing arrives on `topic` at `client` within a while after `app` published `payload` there. */
async function silenceOn(client: MqttClient, topic: string, app: MqttClient, payload: string): Promise<boolean> {
  const got = nextMessage(client, (t) => t === topic, 1_000).then(() => false, () => true);
  app.publish(topic, payload, { qos: 1 });
  return got;
}
import { spawnServer } from './security-child-server.js';
import { makeTempDir } from '../helpers/server.js';

const started = await startTestCluster(['node-a', 'node-b', 'node-c']);

if ('skip' in started) {
  test('thingauth cluster', { skip: started.skip }, () => undefined);
} else {
  const cluster: TestCluster = started.cluster;
  const [a, b, c] = cluster.nodes as [typeof cluster.nodes[0], typeof cluster.nodes[0], typeof cluster.nodes[0]];
  after(() => cluster.stop());
  const { track, endAll } = clientTracker();
  after(endAll);

  describe('three nodes on Redis and PostgreSQL', () => {
    it('GET /nodes on any node lists all three, live', async () => {
      const r = await b.request('GET', '/api/v1/nodes');
      assert.equal(r.status, 200);
      assert.equal(r.body.mode, 'redis');
      assert.equal(r.body.self, 'node-b');
      assert.equal(r.body.redis, 'up');
      assert.deepEqual(r.body.nodes.map((n: { nodeId: string }) => n.nodeId), ['node-a', 'node-b', 'node-c']);
      const health = await fetch(`${a.api}/healthz`).then((res) => res.json());
      assert.deepEqual(health, { status: 'ok', nodeId: 'node-a', redis: 'up', limits: 'shared' });
    });

    it("a device's publish on A reaches an application on B; B's command reaches the device on A", async () => {
      const dev = await createDeviceOn(a);
      const device = track(await connectTo(a.ports.mqtt!, deviceConnect(dev)));
      const app = track(await connectAppTo(b, b.ports.mqtt!, [dev.productKey]));
      await subscribe(app, `/${dev.productKey}/+/user/update`, 1);
      await subscribe(device, `/${dev.productKey}/${dev.deviceName}/user/get`, 1);
      const up = nextMessage(app, (t) => t === `/${dev.productKey}/${dev.deviceName}/user/update`, 5_000);
      device.publish(`/${dev.productKey}/${dev.deviceName}/user/update`, '{"temp":21}', { qos: 1 });
      assert.equal((await up).payload.toString(), '{"temp":21}');
      const down = nextMessage(device, (t) => t === `/${dev.productKey}/${dev.deviceName}/user/get`, 5_000);
      app.publish(`/${dev.productKey}/${dev.deviceName}/user/get`, '{"cmd":"on"}', { qos: 1 });
      assert.equal((await down).payload.toString(), '{"cmd":"on"}');
    });

    it('a login on B takes over the session on A; the device stays ONLINE (owned by B)', async () => {
      const dev = await createDeviceOn(a);
      const first = track(await connectTo(a.ports.mqtt!, deviceConnect(dev)));
      const closedOnA = waitForClose(first, 5_000);
      const second = track(await connectTo(b.ports.mqtt!, deviceConnect(dev)));
      await closedOnA;
      assert.ok(second.connected, 'the newer session lives');
      const status = await eventually(async () => {
        const r = await c.request('GET', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`);
        return r.body.status === 'ONLINE' ? r.body.status : undefined;
      }, 5_000);
      assert.equal(status, 'ONLINE');
      // A's offline write must not clear B's session: still ONLINE after A has settled.
      await new Promise((r) => setTimeout(r, 500));
      const again = await c.request('GET', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`);
      assert.equal(again.body.status, 'ONLINE');
    });

    it("disabling the device through C's API closes its session on A within 1 s; A refuses it afterwards", async () => {
      const dev = await createDeviceOn(a);
      const device = track(await connectTo(a.ports.mqtt!, deviceConnect(dev)));
      const closed = waitForClose(device, 5_000);
      const t0 = Date.now();
      const r = await c.request('POST', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}/disable`);
      assert.ok(r.status === 200 || r.status === 204, `disable: ${r.status} ${JSON.stringify(r.body)}`);
      await closed;
      const took = Date.now() - t0;
      assert.ok(took < 1_000, `kicked after ${took} ms`);
      // A's cached record was dropped by the event too: the next login there is refused at once.
      assert.equal(await refusalFrom(a.ports.mqtt!, deviceConnect(dev)), 5);
    });

    it('a persistent session resumes on another node with the QoS 1 message queued while it was away', async () => {
      const dev = await createDeviceOn(a);
      const topic = `/${dev.productKey}/${dev.deviceName}/user/get`;
      const clientIdBase = `${dev.productKey}.${dev.deviceName}`;
      const first = await connectTo(a.ports.mqtt!, deviceConnect(dev, clientIdBase), { clean: false });
      await subscribe(first, topic, 1);
      await endClient(first);
      const app = track(await connectAppTo(b, b.ports.mqtt!, [dev.productKey]));
      await new Promise<void>((resolve, reject) => app.publish(topic, 'queued-while-away', { qos: 1 }, (err) => (err ? reject(err) : resolve())));
      // Back on a third node, without subscribing again: the queued message is delivered.
      const resumed = await new Promise<{ client: MqttClient; payload: string }>((resolve, reject) => {
        import('mqtt').then(({ default: mqtt }) => {
          const cl = mqtt.connect(`mqtt://127.0.0.1:${c.ports.mqtt}`, { ...deviceConnect(dev, clientIdBase), clean: false, keepalive: 60, reconnectPeriod: 0 });
          const timer = setTimeout(() => reject(new Error('queued message not delivered within 5 s')), 5_000);
          cl.on('message', (t, p) => {
            if (t !== topic) return;
            clearTimeout(timer);
            resolve({ client: cl, payload: p.toString() });
          });
          cl.once('error', reject);
        }, reject);
      });
      track(resumed.client);
      assert.equal(resumed.payload, 'queued-while-away');
      assert.equal(resumed.client.options.clean, false);
    });

    it('a gateway on A: an application on B commands its sub-device, and the gateway on A receives it', async () => {
      const gwProduct = await a.request('POST', '/api/v1/products', { productName: 'cluster gateway', nodeType: 'GATEWAY' });
      assert.equal(gwProduct.status, 201, JSON.stringify(gwProduct.body));
      const gw = await createDeviceIn(a, gwProduct.body.productKey);
      const sub = await createDeviceOn(b, { nodeType: 'SUB_DEVICE' });
      const added = await c.request('POST', `/api/v1/products/${gw.productKey}/devices/${gw.deviceName}/sub-devices`, { subDevices: [{ productKey: sub.productKey, deviceName: sub.deviceName }] });
      assert.equal(added.status, 200, JSON.stringify(added.body));
      const gateway = track(await connectTo(a.ports.mqtt!, deviceConnect(gw)));
      const login = await request(gateway, sessionTopic(gw, 'login'), { params: loginParams(sub) });
      assert.equal(login.body.code, 200, JSON.stringify(login.body));
      const subTopic = `/${sub.productKey}/${sub.deviceName}/user/get`;
      await subscribe(gateway, subTopic, 1);
      const app = track(await connectAppTo(b, b.ports.mqtt!, [sub.productKey]));
      const got = nextMessage(gateway, (t) => t === subTopic, 5_000);
      app.publish(subTopic, 'for-the-sub-device', { qos: 1 });
      assert.equal((await got).payload.toString(), 'for-the-sub-device');
      const subStatus = await eventually(async () => {
        const r = await b.request('GET', `/api/v1/products/${sub.productKey}/devices/${sub.deviceName}`);
        return r.body.status === 'ONLINE' ? r.body.status : undefined;
      }, 5_000);
      assert.equal(subStatus, 'ONLINE');
      // A topology change through node C reaches the gateway on A within 1 s: it is told, and loses the sub-device.
      const notice = nextMessage(gateway, (t) => t === `/sys/${gw.productKey}/${gw.deviceName}/thing/topo/change`, 3_000);
      const t0 = Date.now();
      const removed = await c.request('DELETE', `/api/v1/products/${gw.productKey}/devices/${gw.deviceName}/sub-devices/${sub.productKey}/${sub.deviceName}`);
      assert.ok(removed.status === 200 || removed.status === 204, `remove: ${removed.status} ${JSON.stringify(removed.body)}`);
      await notice;
      assert.ok(Date.now() - t0 < 1_000, `notice after ${Date.now() - t0} ms`);
      assert.equal(await silenceOn(gateway, subTopic, app, 'after-removal'), true, 'commands for a removed sub-device no longer reach the gateway');
    });
  });

  describe('joining the cluster', () => {
    it("a node joining never marks the other nodes' devices offline", async () => {
      const dev = await createDeviceOn(a);
      const device = track(await connectTo(a.ports.mqtt!, deviceConnect(dev)));
      const statusOf = async () => (await b.request('GET', `/api/v1/products/${dev.productKey}/devices/${dev.deviceName}`)).body.status;
      await eventually(async () => (await statusOf()) === 'ONLINE', 5_000);
      const d = await cluster.startNode('node-d');
      assert.equal((await d.request('GET', '/api/v1/nodes')).body.nodes.length, 4);
      assert.equal(await statusOf(), 'ONLINE');
      assert.ok(device.connected);
      d.proc.kill('SIGTERM');
      await d.exited;
      assert.equal(await statusOf(), 'ONLINE', 'nor does one leaving');
    });

    it('a node started with a node id that a live node holds refuses to start, naming the fix', async () => {
      await assert.rejects(
        spawnServer(makeTempDir('thingauth-node-'), {
          THINGAUTH_DATABASE_URL: cluster.databaseUrl,
          THINGAUTH_REDIS_URL: cluster.redis.url,
          THINGAUTH_NODE_ID: 'node-b',
          THINGAUTH_MASTER_KEY: cluster.masterKey,
        }),
        /node id "node-b" is already used by a running node.*THINGAUTH_NODE_ID/s,
      );
    });

    it('a node with another master key refuses to join, naming the fix', async () => {
      await assert.rejects(
        spawnServer(makeTempDir('thingauth-node-'), {
          THINGAUTH_DATABASE_URL: cluster.databaseUrl,
          THINGAUTH_REDIS_URL: cluster.redis.url,
          THINGAUTH_NODE_ID: 'node-x',
          THINGAUTH_MASTER_KEY: randomBytes(32).toString('hex'),
        }),
        /master key .* is not one the cluster uses.*same THINGAUTH_MASTER_KEY/s,
      );
    });

    it('THINGAUTH_REDIS_URL on SQLite is refused with a clear message', async () => {
      await assert.rejects(
        spawnServer(makeTempDir('thingauth-node-'), { THINGAUTH_REDIS_URL: cluster.redis.url }),
        /THINGAUTH_REDIS_URL .*set THINGAUTH_DATABASE_URL=postgres/s,
      );
    });
  });
}
