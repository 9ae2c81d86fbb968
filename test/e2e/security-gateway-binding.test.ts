/**
 * Issue 11 item 8: sub-device secrets cannot be harvested by any gateway.
 *
 * A sub-device is bound to the gateway that received its DeviceSecret (thing/sub/register,
 * product_register) or whose topology holds it. Another gateway gets 6619 and no secret, on
 * every way to the secret (sub/register, product_register, and the ProductSecret's direct
 * registration over HTTPS and MQTT), until an operator releases it
 * (POST /api/v1/products/{pk}/devices/{dn}/release, `thingauth topo release`). topo/add does
 * not take a bound sub-device before activation, nor an activated one from a connected
 * gateway, and answers "no such sub-device" exactly as "bad sign". Real MQTT, HTTPS, CLI.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { MqttClient } from 'mqtt';
import { endClient, eventually } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import {
  collect,
  connectGateway,
  creds,
  errorTopic,
  loginParams,
  request,
  sessionTopic,
  setupGateway,
  statusOf,
  sysTopic,
  topoEntry,
  type GatewaySetup,
} from './gateway-helpers.js';
import { mqttRegistration, postRegister, registerForm, registrationConnect, registrationSign } from './registration-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

function cli(s: TestServer, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args, '--url', s.api, '--token', s.adminToken], { env }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

type Sub = GatewaySetup['subs'][number];
const ident = (s: Sub) => ({ productKey: s.productKey, deviceName: s.deviceName });

describe('a sub-device is bound to the gateway that registered it', () => {
  let server: TestServer;
  let g: GatewaySetup;
  let gwB: Sub;
  let a: MqttClient;
  let b: MqttClient;
  const subs: Sub[] = [];
  const next = () => subs.shift()!;

  before(async () => {
    server = await startTestServer();
    g = await setupGateway(server, { subCount: 12, dynamicRegistration: true });
    subs.push(...g.subs);
    const [dev] = await server.running.ctx.services.registry.createDevices(g.gateway.productKey, { count: 1 });
    gwB = creds(dev!);
    a = await connectGateway(server, g.gateway);
    b = await connectGateway(server, gwB);
  });
  after(async () => {
    await endClient(a);
    await endClient(b);
    await server.stop();
  });

  const subRegister = (client: MqttClient, gw: Sub | GatewaySetup['gateway'], s: Sub) => request(client, sysTopic(gw, 'thing/sub/register'), { params: [ident(s)], method: 'thing.sub.register' });
  const proxyItem = (s: Sub) => {
    const random = '0A1B2C3D4E5F60718293';
    return { ...ident(s), random, signMethod: 'hmacSha256', sign: registrationSign('sha256', g.subProductSecret, s.productKey, s.deviceName, random) };
  };
  const productRegister = (client: MqttClient, gw: Sub, s: Sub) => request(client, sysTopic(gw, 'thing/proxy/provisioning/product_register'), { params: { proxieds: [proxyItem(s)] } });
  const topoAdd = (client: MqttClient, gw: Sub | GatewaySetup['gateway'], entries: unknown[]) => request(client, sysTopic(gw, 'thing/topo/add'), { params: entries, method: 'thing.topo.add' });
  const gatewayOf = async (s: Sub) => (await server.request('GET', `/api/v1/products/${s.productKey}/devices/${s.deviceName}`)).body.gateway?.deviceName ?? null;
  const release = (s: Sub) => server.request('POST', `/api/v1/products/${s.productKey}/devices/${s.deviceName}/release`);

  it('thing/sub/register: the first gateway gets the secret; another gets 6619 and no secret, also by product_register', async () => {
    const s = next();
    const first = await subRegister(a, g.gateway, s);
    assert.equal(first.body.code, 200, JSON.stringify(first.body));
    assert.equal(first.body.data[0].deviceSecret, s.deviceSecret);
    const other = await subRegister(b, gwB, s);
    assert.equal(other.body.code, 6619, JSON.stringify(other.body));
    assert.equal(other.body.data[0].code, 6619);
    assert.match(other.body.data[0].message, /bound to another gateway.*release/);
    assert.ok(!JSON.stringify(other.body).includes(s.deviceSecret), 'no secret for the other gateway');
    const proxied = await productRegister(b, gwB, s);
    assert.equal(proxied.body.code, 6619, JSON.stringify(proxied.body));
    assert.ok(!JSON.stringify(proxied.body).includes(s.deviceSecret));
    // The registrar may ask again (a lost answer), and gets the same secret.
    assert.equal((await subRegister(a, g.gateway, s)).body.data[0].deviceSecret, s.deviceSecret);
  });

  it('product_register binds as well: the other gateway then gets 6619 on sub/register', async () => {
    const s = next();
    const first = await productRegister(b, gwB, s);
    assert.equal(first.body.code, 200, JSON.stringify(first.body));
    assert.equal(first.body.data[0].deviceSecret, s.deviceSecret);
    const other = await subRegister(a, g.gateway, s);
    assert.equal(other.body.code, 6619);
    assert.ok(!JSON.stringify(other.body).includes(s.deviceSecret));
  });

  it('two gateways racing for one sub-device: exactly one gets the secret', async () => {
    const s = next();
    const [ra, rb] = await Promise.all([subRegister(a, g.gateway, s), subRegister(b, gwB, s)]);
    const codes = [ra.body.code, rb.body.code].sort();
    assert.deepEqual(codes, [200, 6619], JSON.stringify([ra.body, rb.body]));
    const withSecret = [ra, rb].filter((r) => JSON.stringify(r.body).includes(s.deviceSecret));
    assert.equal(withSecret.length, 1);
  });

  it('the ProductSecret is no way around it: direct registration of a bound sub-device gets 6619 (HTTPS) / CONNACK 4 (MQTT register, regnwl), no credential', async () => {
    const s = next();
    assert.equal((await subRegister(a, g.gateway, s)).body.code, 200);
    const https = await postRegister(server, registerForm(s.productKey, s.deviceName, g.subProductSecret, 'bound-https-1'));
    assert.equal(https.json.code, 6619, https.text);
    assert.ok(!https.text.includes(s.deviceSecret));
    const mqtt = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: s.productKey, deviceName: s.deviceName, productSecret: g.subProductSecret, authType: 'register' }));
    assert.deepEqual([mqtt.accepted, mqtt.code, mqtt.messages.length], [false, 4, 0]);
    // Nor a DeviceToken by regnwl, were the sub-product pre-registration-free.
    assert.equal((await server.request('PATCH', `/api/v1/products/${g.subProductKey}`, { preRegistrationFree: true })).status, 200);
    try {
      const nwl = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: s.productKey, deviceName: s.deviceName, productSecret: g.subProductSecret, authType: 'regnwl' }));
      assert.deepEqual([nwl.accepted, nwl.code, nwl.messages.length], [false, 4, 0]);
    } finally {
      assert.equal((await server.request('PATCH', `/api/v1/products/${g.subProductKey}`, { preRegistrationFree: false })).status, 200);
    }
    // An unbound sub-device of the same product still registers directly (nothing else changed).
    const free = next();
    const ok = await postRegister(server, registerForm(free.productKey, free.deviceName, g.subProductSecret, 'free-https-1'));
    assert.equal(ok.json.code, 200, ok.text);
    subs.push(free);
  });

  it('topo/add answers an unknown sub-device, an unknown product and a bad sign with the same code and message', async () => {
    const s = next();
    const r = await topoAdd(b, gwB, [
      { ...topoEntry({ ...s, deviceName: 'no-such-sub-00' }) },
      { ...topoEntry({ ...s, productKey: 'a1NoSuchPK00' }) },
      topoEntry(s, { secret: 'WrongSecret000000000000000000000' }),
    ]);
    assert.equal(r.body.code, 401, JSON.stringify(r.body));
    const answers = r.body.data.map((d: { code: number; message: string }) => ({ code: d.code, message: d.message }));
    assert.deepEqual(answers[0], answers[1]);
    assert.deepEqual(answers[1], answers[2]);
    assert.equal(answers[0].code, 401);
    assert.doesNotMatch(answers[0].message, /product a1NoSuchPK00/);
    assert.equal(await gatewayOf(s), null, 'nothing was added');
    subs.push(s);
  });

  it('topo/add by another gateway cannot take an unactivated sub-device bound to the registrar, even with its secret (6619)', async () => {
    const s = next();
    assert.equal((await subRegister(a, g.gateway, s)).body.code, 200);
    // B holds the secret somehow (signs with it): still refused, and the answer says why only now.
    const taken = await topoAdd(b, gwB, [topoEntry(s)]);
    assert.equal(taken.body.code, 6619, JSON.stringify(taken.body));
    assert.equal(await gatewayOf(s), null);
    // The registrar itself adds it as before.
    assert.equal((await topoAdd(a, g.gateway, [topoEntry(s)])).body.code, 200);
    assert.equal(await gatewayOf(s), g.gateway.deviceName);
    assert.equal((await topoAdd(b, gwB, [topoEntry(s)])).body.code, 6619);
    assert.equal(await gatewayOf(s), g.gateway.deviceName);
  });

  it('topo/add does not move an activated sub-device from a connected gateway (6619, still logged in there); once that gateway is gone it does', async () => {
    const s = next();
    const [gwDev] = await server.running.ctx.services.registry.createDevices(g.gateway.productKey, { count: 1 });
    const gwC = creds(gwDev!);
    const c = await connectGateway(server, gwC);
    try {
      assert.equal((await subRegister(c, gwC, s)).body.code, 200);
      assert.equal((await topoAdd(c, gwC, [topoEntry(s)])).body.code, 200);
      assert.equal((await request(c, sessionTopic(gwC, 'login'), { params: loginParams(s) })).body.code, 200);
      await eventually(async () => (await statusOf(server, s)) === 'ONLINE');
      const notices = collect(c, errorTopic(gwC));
      const taken = await topoAdd(b, gwB, [topoEntry(s)]);
      assert.equal(taken.body.code, 6619, JSON.stringify(taken.body));
      assert.match(taken.body.data[0].message, /connected/);
      assert.equal(await gatewayOf(s), gwC.deviceName);
      assert.equal(await statusOf(server, s), 'ONLINE');
      // Still C's: it publishes for the sub-device without a 520 (a kick would have sent one).
      const post = await request(c, `/sys/${s.productKey}/${s.deviceName}/thing/event/property/post`, { params: { t: 1 }, method: 'thing.event.property.post' });
      assert.equal(post.body.code, 200);
      notices.stop();
      assert.deepEqual(notices.messages, []);
    } finally {
      await endClient(c);
    }
    await eventually(async () => (await statusOf(server, gwC)) === 'OFFLINE');
    const moved = await topoAdd(b, gwB, [topoEntry(s)]);
    assert.equal(moved.body.code, 200, JSON.stringify(moved.body));
    assert.equal(await gatewayOf(s), gwB.deviceName);
  });

  it('the operator releases a sub-device (API): its gateway loses it (6401 notice), another gateway may register it; the old registrar then gets 6619', async () => {
    const s = next();
    assert.equal((await subRegister(a, g.gateway, s)).body.code, 200);
    assert.equal((await topoAdd(a, g.gateway, [topoEntry(s)])).body.code, 200);
    assert.equal((await request(a, sessionTopic(g.gateway, 'login'), { params: loginParams(s) })).body.code, 200);
    await eventually(async () => (await statusOf(server, s)) === 'ONLINE');
    const notices = collect(a, errorTopic(g.gateway));
    const r = await release(s);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.releasedFrom.gateway, { productKey: g.gateway.productKey, deviceName: g.gateway.deviceName, iotId: g.gateway.iotId });
    assert.deepEqual(r.body.releasedFrom.registeredBy, { productKey: g.gateway.productKey, deviceName: g.gateway.deviceName, iotId: g.gateway.iotId });
    assert.equal(r.body.device.gateway, null);
    assert.ok(!JSON.stringify(r.body).includes(s.deviceSecret), 'no secret in the answer');
    await eventually(() => notices.messages.some((m) => m.code === 6401));
    notices.stop();
    await eventually(async () => (await statusOf(server, s)) === 'OFFLINE');
    // Activated: B adds it with its sign (A no longer holds it); an operator reset would let B register it.
    assert.equal((await topoAdd(b, gwB, [topoEntry(s)])).body.code, 200);
    assert.equal((await subRegister(a, g.gateway, s)).body.code, 6619);

    // Not activated: after release the other gateway registers it and becomes its registrar.
    const t = next();
    assert.equal((await subRegister(a, g.gateway, t)).body.code, 200);
    assert.equal((await release(t)).status, 200);
    const got = await subRegister(b, gwB, t);
    assert.equal(got.body.code, 200);
    assert.equal(got.body.data[0].deviceSecret, t.deviceSecret);
    assert.equal((await subRegister(a, g.gateway, t)).body.code, 6619);
  });

  it('release refuses what is not a sub-device (400) and unknown names (404), and is audited', async () => {
    assert.equal((await server.request('POST', `/api/v1/products/${g.gateway.productKey}/devices/${g.gateway.deviceName}/release`)).status, 400);
    assert.equal((await server.request('POST', `/api/v1/products/${g.subProductKey}/devices/no-such-sub/release`)).status, 404);
    await eventually(async () => {
      const r = await server.request('GET', `/api/v1/audit?action=topology.release`);
      return r.body.items?.some((e: { result: string; reason: string }) => e.result === 'ok' && /released from/.test(e.reason));
    });
  });

  it('thingauth topo release <pk>/<dn> (and --sub-product with a bare name) releases it', async () => {
    const s = next();
    assert.equal((await subRegister(a, g.gateway, s)).body.code, 200);
    const out = await cli(server, ['topo', 'release', `${s.productKey}/${s.deviceName}`]);
    assert.equal(out.code, 0, out.stderr);
    assert.match(out.stdout, new RegExp(`released from ${g.gateway.productKey}/${g.gateway.deviceName}`));
    assert.equal((await subRegister(b, gwB, s)).body.code, 200);
    const again = await cli(server, ['topo', 'release', s.deviceName, '--sub-product', s.productKey, '--json']);
    assert.equal(again.code, 0, again.stderr);
    assert.equal(JSON.parse(again.stdout).releasedFrom.registeredBy.deviceName, gwB.deviceName);
    const none = await cli(server, ['topo', 'release', `${s.productKey}/${s.deviceName}`]);
    assert.match(none.stdout, /was not bound/);
    const bad = await cli(server, ['topo', 'release', `${s.productKey}/no-such-sub`]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /not found/);
  });
});
