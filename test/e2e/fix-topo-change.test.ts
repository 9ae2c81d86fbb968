/**
 * Spec 4.4 over real sockets: `thing/topo/change` notices to a connected gateway (no
 * SUBSCRIBE) when the operator changes its topology or a sub-device is disabled, enabled,
 * deleted or moved away, and none for the gateway's own topo/add|delete; deleting a gateway
 * announces its detached sub-devices (topology.changed) and they go OFFLINE; `thing/list/found`
 * validated, answered and recorded in the audit trail.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { endClient, eventually } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { DeviceRef } from '../../src/services/events.js';
import {
  attachByApi,
  collect,
  connectGateway,
  loginParams,
  request,
  sessionTopic,
  setupGateway,
  silenceOn,
  statusOf,
  sysTopic,
  topoEntry,
  type GatewaySetup,
} from './gateway-helpers.js';

const sub = (d: { productKey: string; deviceName: string }) => ({ productKey: d.productKey, deviceName: d.deviceName });

describe('thing/topo/change notices and thing/list/found', () => {
  let server: TestServer;
  let g: GatewaySetup;
  let gw: MqttClient;
  let notices: { messages: any[]; stop(): void };
  let changeTopic: string;

  before(async () => {
    server = await startTestServer();
    g = await setupGateway(server, { subCount: 4 });
    gw = await connectGateway(server, g.gateway);
    changeTopic = sysTopic(g.gateway, 'thing/topo/change');
    notices = collect(gw, changeTopic);
  });
  after(async () => {
    notices.stop();
    await endClient(gw);
    await server.stop();
  });

  /** Waits for the next notice after `count` already seen. */
  const noticeAfter = (count: number) => eventually(() => notices.messages[count], 3_000);

  it('operator add (API) -> status 0 with the added sub-devices, in the spec envelope', async () => {
    const seen = notices.messages.length;
    await attachByApi(server, g.gateway, [g.subs[0]!, g.subs[1]!]);
    const n = await noticeAfter(seen);
    assert.equal(typeof n.id, 'string');
    assert.equal(n.version, '1.0');
    assert.equal(n.method, 'thing.topo.change');
    assert.deepEqual(n.params, { status: 0, subList: [sub(g.subs[0]!), sub(g.subs[1]!)] });
    // The gateway may answer on _reply: that is its own topic, the connection stays.
    gw.publish(changeTopic + '_reply', JSON.stringify({ id: n.id, code: 200, message: 'success', data: {} }));
    // A request sent after the _reply is answered on the same connection: the server took the
    // _reply without closing it.
    const got = await request(gw, sysTopic(g.gateway, 'thing/topo/get'), { params: {} });
    assert.equal(got.body.code, 200, JSON.stringify(got.body));
    assert.equal(gw.connected, true);
  });

  it("the gateway's own topo/add and topo/delete are answered, not echoed as notices", async () => {
    const quiet = silenceOn(gw, changeTopic, 400);
    const added = await request(gw, sysTopic(g.gateway, 'thing/topo/add'), { params: [topoEntry(g.subs[2]!)] });
    assert.equal(added.body.code, 200, JSON.stringify(added.body));
    const removed = await request(gw, sysTopic(g.gateway, 'thing/topo/delete'), { params: [sub(g.subs[2]!)] });
    assert.equal(removed.body.code, 200, JSON.stringify(removed.body));
    assert.ok(await quiet, `unexpected notice: ${JSON.stringify(notices.messages.at(-1))}`);
  });

  it('disable -> status 8, enable -> status 2 for a sub-device in the topology', async () => {
    const { productKey, deviceName } = g.subs[0]!;
    let seen = notices.messages.length;
    assert.equal((await server.request('POST', `/api/v1/products/${productKey}/devices/${deviceName}/disable`)).status, 200);
    assert.deepEqual((await noticeAfter(seen)).params, { status: 8, subList: [sub(g.subs[0]!)] });
    seen = notices.messages.length;
    assert.equal((await server.request('POST', `/api/v1/products/${productKey}/devices/${deviceName}/enable`)).status, 200);
    assert.deepEqual((await noticeAfter(seen)).params, { status: 2, subList: [sub(g.subs[0]!)] });
  });

  it('a sub-device in no topology: disabling it tells nobody', async () => {
    const quiet = silenceOn(gw, changeTopic, 400);
    const { productKey, deviceName } = g.subs[3]!;
    assert.equal((await server.request('POST', `/api/v1/products/${productKey}/devices/${deviceName}/disable`)).status, 200);
    assert.ok(await quiet);
  });

  it('operator remove (API) -> status 1; deleting a sub-device in the topology -> status 1', async () => {
    let seen = notices.messages.length;
    const r = await server.request('DELETE', `/api/v1/products/${g.gateway.productKey}/devices/${g.gateway.deviceName}/sub-devices`, { subDevices: [sub(g.subs[1]!)] });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual((await noticeAfter(seen)).params, { status: 1, subList: [sub(g.subs[1]!)] });

    seen = notices.messages.length;
    const del = await server.request('DELETE', `/api/v1/products/${g.subs[0]!.productKey}/devices/${g.subs[0]!.deviceName}`);
    assert.ok(del.status === 200 || del.status === 204, `delete answered ${del.status}`);
    assert.deepEqual((await noticeAfter(seen)).params, { status: 1, subList: [sub(g.subs[0]!)] });
  });

  it('a sub-device moved to another gateway by the operator: the old gateway gets status 1, the new one status 0', async () => {
    await attachByApi(server, g.gateway, [g.subs[2]!]);
    await eventually(() => notices.messages.some((m) => m.params.status === 0 && m.params.subList[0]?.deviceName === g.subs[2]!.deviceName));
    const other = await setupGateway(server, { subCount: 0 });
    const gw2 = await connectGateway(server, other.gateway);
    try {
      const notices2 = collect(gw2, sysTopic(other.gateway, 'thing/topo/change'));
      const seen = notices.messages.length;
      await attachByApi(server, other.gateway, [g.subs[2]!]);
      assert.deepEqual((await noticeAfter(seen)).params, { status: 1, subList: [sub(g.subs[2]!)] });
      const n2 = await eventually(() => notices2.messages[0]);
      assert.deepEqual(n2.params, { status: 0, subList: [sub(g.subs[2]!)] });
      notices2.stop();
    } finally {
      await endClient(gw2);
    }
  });

  it('deleting a gateway: topology.changed names its sub-devices as removed; they show no gateway and go OFFLINE', async () => {
    const other = await setupGateway(server, { subCount: 3 });
    const [a, b, loose] = other.subs as [GatewaySetup['subs'][0], GatewaySetup['subs'][0], GatewaySetup['subs'][0]];
    await attachByApi(server, other.gateway, [a, b]);
    const gw2 = await connectGateway(server, other.gateway);
    const changes: { gateway: DeviceRef; removed: DeviceRef[]; added: DeviceRef[] }[] = [];
    const events = server.running.ctx.services.events;
    const onChange = (e: (typeof changes)[0]) => changes.push(e);
    events.on('topology.changed', onChange);
    try {
      for (const s of [a, b]) {
        const r = await request(gw2, sessionTopic(other.gateway, 'login'), { params: loginParams(s) });
        assert.equal(r.body.code, 200, JSON.stringify(r.body));
        assert.equal(await statusOf(server, s), 'ONLINE');
      }
      const del = await server.request('DELETE', `/api/v1/products/${other.gateway.productKey}/devices/${other.gateway.deviceName}`);
      assert.ok(del.status === 200 || del.status === 204, `delete answered ${del.status}`);

      const mine = changes.filter((c) => c.gateway.iotId === other.gateway.iotId);
      assert.equal(mine.length, 1, JSON.stringify(changes));
      assert.deepEqual(mine[0]!.added, []);
      const byName = (x: DeviceRef, y: DeviceRef) => x.deviceName.localeCompare(y.deviceName);
      assert.deepEqual(
        [...mine[0]!.removed].sort(byName),
        [a, b].map((s) => ({ iotId: s.iotId, productKey: s.productKey, deviceName: s.deviceName })).sort(byName),
        'exactly the attached sub-devices, not the loose one',
      );
      assert.equal(mine[0]!.gateway.deviceName, other.gateway.deviceName);

      for (const s of [a, b]) {
        const d = await server.request('GET', `/api/v1/products/${s.productKey}/devices/${s.deviceName}`);
        assert.equal(d.status, 200);
        assert.equal(d.body.gateway, null);
        assert.equal(await eventually(async () => ((await statusOf(server, s)) === 'OFFLINE' ? 'OFFLINE' : undefined)), 'OFFLINE');
        assert.equal((await server.running.ctx.store.getDevice(s.productKey, s.deviceName))!.gatewayIotId, null);
      }
      assert.equal(await statusOf(server, loose), 'UNACTIVE');
    } finally {
      events.off('topology.changed', onChange);
      await endClient(gw2);
    }
  });

  describe('thing/list/found', () => {
    const found = (client: MqttClient, setup: GatewaySetup, params: unknown) => request(client, sysTopic(setup.gateway, 'thing/list/found'), { method: 'thing.list.found', params });

    it('valid entries (registered or not yet) -> 200, each recorded in the audit trail as topology.found', async () => {
      const entries = [sub(g.subs[3]!), { productKey: g.subProductKey, deviceName: 'found-later-01' }];
      const r = await found(gw, g, entries);
      assert.equal(r.body.code, 200, JSON.stringify(r.body));
      assert.deepEqual(r.body.data, entries);
      assert.equal(r.body.message, 'success');
      const items = await eventually(async () => {
        const a = await server.request('GET', `/api/v1/audit?action=topology.found&productKey=${g.subProductKey}&deviceName=found-later-01`);
        return a.body.items?.length > 0 ? a.body.items : undefined;
      });
      assert.equal(items[0].actor, `gateway:${g.gateway.productKey}/${g.gateway.deviceName}`);
      assert.equal(items[0].result, 'ok');
      // Reporting adds nothing to the topology.
      const topo = await request(gw, sysTopic(g.gateway, 'thing/topo/get'), { params: {} });
      assert.ok(!topo.body.data.some((d: any) => d.deviceName === g.subs[3]!.deviceName || d.deviceName === 'found-later-01'));
    });

    it('unknown product -> 6250, invalid DeviceName -> 6280, malformed -> 460; per item data', async () => {
      const unknown = await found(gw, g, [{ productKey: 'a1NoSuchProd', deviceName: 'dev-0001' }]);
      assert.equal(unknown.body.code, 6250, JSON.stringify(unknown.body));
      const badName = await found(gw, g, [sub(g.subs[3]!), { productKey: g.subProductKey, deviceName: 'bad name!' }]);
      assert.equal(badName.body.code, 6280, JSON.stringify(badName.body));
      assert.equal(badName.body.data[0].deviceName, g.subs[3]!.deviceName);
      assert.equal(badName.body.data[1].code, 6280);
      assert.equal((await found(gw, g, [])).body.code, 460);
      assert.equal((await found(gw, g, [{ productKey: g.subProductKey }])).body.code, 460);
      assert.equal((await found(gw, g, 'nonsense')).body.code, 460);
      const garbage = await request(gw, sysTopic(g.gateway, 'thing/list/found'), 'not json', { replyTopic: sysTopic(g.gateway, 'thing/list/found_reply') });
      assert.equal(garbage.body.code, 460);
      assert.equal(gw.connected, true);
      const denied = await eventually(async () => {
        const a = await server.request('GET', `/api/v1/audit?action=topology.found&productKey=a1NoSuchProd`);
        return a.body.items?.length > 0 ? a.body.items : undefined;
      });
      assert.equal(denied[0].result, 'deny');
    });

    it('a device that is not a gateway is refused (403)', async () => {
      const plain = await setupGateway(server, { subCount: 0, gatewayNodeType: 'DEVICE' });
      const c = await connectGateway(server, plain.gateway);
      try {
        const r = await found(c, plain, [sub(g.subs[3]!)]);
        assert.equal(r.body.code, 403, JSON.stringify(r.body));
      } finally {
        await endClient(c);
      }
    });
  });
});
