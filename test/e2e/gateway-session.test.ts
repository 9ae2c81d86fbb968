/**
 * Sub-device sessions through a gateway over real MQTT (spec 4.5-4.8): combine/login,
 * batch_login, logout, batch_logout, every login refusal, presence (ONLINE, activation,
 * OFFLINE on gateway disconnect), the gateway acting for logged-in sub-devices only, and
 * server-side ends (disabled 522, deleted 521, not logged in 520).
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { endClient, eventually, nextMessage, subscribe, waitForClose } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import {
  attachByApi,
  connectApp,
  connectGateway,
  errorTopic,
  loginParams,
  request,
  sessionTopic,
  setupGateway,
  silenceOn,
  statusOf,
  type GatewaySetup,
} from './gateway-helpers.js';

describe('sub-device login through a gateway', () => {
  let server: TestServer;
  let g: GatewaySetup;
  let gw: MqttClient;

  before(async () => {
    server = await startTestServer();
    g = await setupGateway(server, { subCount: 8 });
    await attachByApi(server, g.gateway, g.subs.slice(0, 7));
    gw = await connectGateway(server, g.gateway);
  });
  after(async () => {
    await endClient(gw);
    await server.stop();
  });

  it('login (Node SDK form: numeric timestamp, hmacsha1) makes the sub-device ONLINE and activated; data echoes it', async () => {
    const sub = g.subs[0]!;
    assert.equal(await statusOf(server, sub), 'UNACTIVE');
    const r = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub, { timestamp: 1700000000000 }), method: '' });
    assert.equal(r.body.code, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.data, { productKey: sub.productKey, deviceName: sub.deviceName });
    assert.equal(r.body.message, 'success');
    assert.equal(await statusOf(server, sub), 'ONLINE');
    const d = await server.request('GET', `/api/v1/products/${sub.productKey}/devices/${sub.deviceName}`);
    assert.ok(d.body.activatedAt);
  });

  it('signs the clientId verbatim, including its |...| part (iotkit/Python), any sign method and hex case', async () => {
    const sub = g.subs[1]!;
    const clientId = `${sub.productKey}.${sub.deviceName}|lan=Python,_v=2.2.1,_ss=1|`;
    const r = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub, { clientId, signMethod: 'hmacSha256' }) });
    assert.equal(r.body.code, 200, JSON.stringify(r.body));
    const md5 = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub, { signMethod: 'HmacMD5', clientId: `${sub.productKey}.${sub.deviceName}|_v=sdk-c-3.0.1|` }) });
    assert.equal(md5.body.code, 200);
    // a missing method means hmacmd5
    const p = loginParams(sub, { signMethod: 'hmacmd5', withMethod: false });
    const none = await request(gw, sessionTopic(g.gateway, 'login'), { params: { ...p, sign: String(p.sign).toUpperCase() } });
    assert.equal(none.body.code, 200);
  });

  it('refuses: unknown 6100, bad sign 6287, not in topology 6401, bad params 460 — and nothing goes ONLINE', async () => {
    const sub = g.subs[2]!;
    const unknown = await request(gw, sessionTopic(g.gateway, 'login'), { params: { ...loginParams(sub), deviceName: 'no-such-sub' } });
    assert.equal(unknown.body.code, 6100);
    const badSign = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub, { secret: 'WrongSecret000000000000000000000' }) });
    assert.equal(badSign.body.code, 6287);
    // changing the signed clientId breaks the sign: it is not stripped before verifying
    const p = loginParams(sub, { clientId: `${sub.productKey}.${sub.deviceName}|_ss=1|` });
    const tampered = await request(gw, sessionTopic(g.gateway, 'login'), { params: { ...p, clientId: `${sub.productKey}.${sub.deviceName}` } });
    assert.equal(tampered.body.code, 6287);
    const outsider = g.subs[7]!;
    const notInTopo = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(outsider) });
    assert.equal(notInTopo.body.code, 6401);
    const badParams = await request(gw, sessionTopic(g.gateway, 'login'), { params: [1, 2] });
    assert.equal(badParams.body.code, 460);
    const badMethod = await request(gw, sessionTopic(g.gateway, 'login'), { params: { ...loginParams(sub), signMethod: 'sha512' } });
    assert.equal(badMethod.body.code, 460);
    assert.equal(await statusOf(server, outsider), 'UNACTIVE');
    assert.equal(await statusOf(server, sub), 'UNACTIVE');
  });

  it('a disabled sub-device is refused with 522', async () => {
    const sub = g.subs[3]!;
    await server.request('POST', `/api/v1/products/${sub.productKey}/devices/${sub.deviceName}/disable`);
    const r = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub) });
    assert.equal(r.body.code, 522);
    await server.request('POST', `/api/v1/products/${sub.productKey}/devices/${sub.deviceName}/enable`);
  });

  it('more than 5 logins of one sub-device per minute get 429', async () => {
    const sub = g.subs[4]!;
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub) })).body.code);
    assert.deepEqual(codes, [200, 200, 200, 200, 200, 429]);
  });

  it('after login the gateway publishes and subscribes on the sub-device topics; logout takes that away (520 notice, still connected)', async () => {
    const sub = g.subs[0]!;
    const own = `/sys/${sub.productKey}/${sub.deviceName}/thing/event/property/post`;
    const granted = await subscribe(gw, `/sys/${sub.productKey}/${sub.deviceName}/thing/service/property/set`);
    assert.deepEqual(granted, [0]);
    const post = await request(gw, own, { params: { temp: 21 }, method: 'thing.event.property.post' });
    assert.equal(post.body.code, 200);

    const setTopic = `/sys/${sub.productKey}/${sub.deviceName}/thing/service/property/set`;
    const app = await connectApp(server, [sub.productKey]);
    try {
      const cmd = nextMessage(gw, (t) => t === setTopic);
      app.publish(setTopic, JSON.stringify({ id: 'cmd-1', params: { on: 1 } }));
      assert.equal(JSON.parse((await cmd).payload.toString()).id, 'cmd-1', 'commands reach the gateway while logged in');

      const out = await request(gw, sessionTopic(g.gateway, 'logout'), { params: { productKey: sub.productKey, deviceName: sub.deviceName } });
      assert.equal(out.body.code, 200);
      assert.deepEqual(out.body.data, { productKey: sub.productKey, deviceName: sub.deviceName });
      assert.equal(await statusOf(server, sub), 'OFFLINE');
      const quiet = silenceOn(gw, setTopic, 300);
      app.publish(setTopic, JSON.stringify({ id: 'cmd-2', params: { on: 0 } }));
      assert.ok(await quiet, 'after logout the gateway no longer receives the sub-device\'s commands');
    } finally {
      await endClient(app);
    }
    const again = await request(gw, sessionTopic(g.gateway, 'logout'), { params: { productKey: sub.productKey, deviceName: sub.deviceName } });
    assert.equal(again.body.code, 520);

    const notice = nextMessage(gw, (t) => t === errorTopic(g.gateway));
    gw.publish(own, JSON.stringify({ id: 'after-logout', params: { temp: 22 } }));
    const n = JSON.parse((await notice).payload.toString());
    assert.equal(n.code, 520);
    assert.equal(n.id, 'after-logout');
    assert.deepEqual(n.data, { productKey: sub.productKey, deviceName: sub.deviceName });
    assert.ok(gw.connected, 'the gateway keeps its connection');
  });

  it('batch_login (C SDK form, signMethod at params level) is all or nothing and lists offenders', async () => {
    const [a, b, c] = [g.subs[5]!, g.subs[6]!, g.subs[7]!];
    const entry = (s: typeof a) => {
      const { signMethod: _m, ...rest } = loginParams(s, { signMethod: 'hmacSha256', clientId: `${s.productKey}.${s.deviceName}` });
      return { ...rest, cleanSession: 'false' };
    };
    const refused = await request(gw, sessionTopic(g.gateway, 'batch_login'), { params: { signMethod: 'hmacSha256', deviceList: [entry(a), entry(c)] } });
    assert.equal(refused.body.code, 6401);
    assert.deepEqual(refused.body.data, [{ productKey: c.productKey, deviceName: c.deviceName, code: 6401, message: refused.body.data[0].message }]);
    assert.notEqual(await statusOf(server, a), 'ONLINE', 'nobody logged in when one entry fails');

    const ok = await request(gw, sessionTopic(g.gateway, 'batch_login'), { params: { signMethod: 'hmacSha256', deviceList: [entry(a), entry(b)] } });
    assert.equal(ok.body.code, 200, JSON.stringify(ok.body));
    assert.deepEqual(ok.body.data.map((d: { deviceName: string }) => d.deviceName), [a.deviceName, b.deviceName]);
    assert.equal(await statusOf(server, a), 'ONLINE');
    assert.equal(await statusOf(server, b), 'ONLINE');

    const tooMany = await request(gw, sessionTopic(g.gateway, 'batch_login'), { params: { signMethod: 'hmacSha256', deviceList: Array.from({ length: 51 }, () => entry(a)) } });
    assert.equal(tooMany.body.code, 460);

    const out = await request(gw, sessionTopic(g.gateway, 'batch_logout'), {
      params: [
        { productKey: a.productKey, deviceName: a.deviceName },
        { productKey: c.productKey, deviceName: c.deviceName },
      ],
    });
    assert.equal(out.body.code, 520, 'c was never logged in');
    assert.deepEqual(out.body.data.map((d: { code?: number }) => d.code ?? 200), [200, 520]);
    assert.equal(await statusOf(server, a), 'OFFLINE');
    assert.equal(await statusOf(server, b), 'ONLINE');
  });

  it('the gateway cannot use topics of a sub-device it did not log in, nor of unrelated devices (disconnected)', async () => {
    const sub = g.subs[2]!; // in topology, never logged in
    const granted = await subscribe(gw, `/sys/${sub.productKey}/${sub.deviceName}/thing/service/property/set`);
    assert.deepEqual(granted, [128]);
    const other = await setupGateway(server, { subCount: 0 });
    const client = await connectGateway(server, g.gateway); // takes over: a fresh connection for this case
    gw = client;
    client.publish(`/sys/${other.gateway.productKey}/${other.gateway.deviceName}/thing/event/property/post`, '{"id":"1","params":{}}');
    await waitForClose(client);
    gw = await connectGateway(server, g.gateway);
  });
});

describe('server-side ends of sub-device sessions', () => {
  let server: TestServer;
  let g: GatewaySetup;

  before(async () => {
    server = await startTestServer();
    g = await setupGateway(server, { subCount: 4 });
    await attachByApi(server, g.gateway, g.subs);
  });
  after(async () => {
    await server.stop();
  });

  it('disabling (522), deleting (521) or un-topologising (6401) a logged-in sub-device ends its session at once, with a notice on /ext/error', async () => {
    const gw = await connectGateway(server, g.gateway);
    try {
      const sub = g.subs[0]!;
      assert.equal((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub) })).body.code, 200);
      const notice = nextMessage(gw, (t) => t === errorTopic(g.gateway));
      await server.request('POST', `/api/v1/products/${sub.productKey}/devices/${sub.deviceName}/disable`);
      const n = JSON.parse((await notice).payload.toString());
      assert.equal(n.code, 522);
      assert.deepEqual(n.data, { productKey: sub.productKey, deviceName: sub.deviceName });
      assert.equal(await statusOf(server, sub), 'DISABLE');
      const r = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub) });
      assert.equal(r.body.code, 522);
      await server.request('POST', `/api/v1/products/${sub.productKey}/devices/${sub.deviceName}/enable`);
      await eventually(async () => (await statusOf(server, sub)) === 'OFFLINE');

      const victim = g.subs[1]!;
      assert.equal((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(victim) })).body.code, 200);
      const gone = nextMessage(gw, (t) => t === errorTopic(g.gateway));
      await server.request('DELETE', `/api/v1/products/${victim.productKey}/devices/${victim.deviceName}`);
      assert.equal(JSON.parse((await gone).payload.toString()).code, 521);

      const removed = g.subs[2]!;
      assert.equal((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(removed) })).body.code, 200);
      const off = nextMessage(gw, (t) => t === errorTopic(g.gateway));
      await server.request('DELETE', `/api/v1/products/${g.gateway.productKey}/devices/${g.gateway.deviceName}/sub-devices/${removed.productKey}/${removed.deviceName}`);
      assert.equal(JSON.parse((await off).payload.toString()).code, 6401);
      assert.equal(await statusOf(server, removed), 'OFFLINE');
      assert.ok(gw.connected);
    } finally {
      await endClient(gw);
    }
  });

  it('when the gateway disconnects, all its sub-devices go OFFLINE', async () => {
    const gw = await connectGateway(server, g.gateway);
    const subs = [g.subs[0]!, g.subs[2]!, g.subs[3]!];
    await attachByApi(server, g.gateway, [g.subs[2]!]);
    const list = subs.map((s) => {
      const { signMethod: _x, ...rest } = loginParams(s, { signMethod: 'hmacsha1' });
      return rest;
    });
    const r = await request(gw, sessionTopic(g.gateway, 'batch_login'), { params: { signMethod: 'hmacsha1', deviceList: list } });
    assert.equal(r.body.code, 200, JSON.stringify(r.body));
    for (const s of subs) assert.equal(await statusOf(server, s), 'ONLINE');
    await endClient(gw);
    await eventually(async () => {
      for (const s of subs) if ((await statusOf(server, s)) !== 'OFFLINE') return false;
      return true;
    });
  });

  it('a second gateway connection takes over: the first one\'s sub-devices are logged out; no stray replies', async () => {
    const first = await connectGateway(server, g.gateway);
    const sub = g.subs[3]!;
    assert.equal((await request(first, sessionTopic(g.gateway, 'login'), { params: loginParams(sub) })).body.code, 200);
    const second = await connectGateway(server, g.gateway);
    try {
      await waitForClose(first);
      await eventually(async () => (await statusOf(server, sub)) === 'OFFLINE');
      assert.ok(await silenceOn(second, errorTopic(g.gateway), 200));
    } finally {
      await endClient(first);
      await endClient(second);
    }
  });
});
