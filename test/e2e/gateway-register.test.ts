/**
 * Sub-device dynamic registration through a gateway over real MQTT (spec 4.1, 4.2):
 * thing/sub/register and the per-product proxy provisioning, with per-item results.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { MqttClient } from 'mqtt';
import { endClient } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, connectGateway, loginParams, request, sessionTopic, setupGateway, sysTopic, type GatewaySetup } from './gateway-helpers.js';
import { registrationSign } from './registration-helpers.js';

describe('sub-device registration through a gateway', () => {
  let server: TestServer;
  let g: GatewaySetup;
  let gw: MqttClient;

  before(async () => {
    server = await startTestServer();
    g = await setupGateway(server, { subCount: 5, dynamicRegistration: true });
    gw = await connectGateway(server, g.gateway);
  });
  after(async () => {
    await endClient(gw);
    await server.stop();
  });

  it('thing/sub/register answers each pre-created sub-device with its DeviceSecret, the same until activation', async () => {
    const [a, b] = g.subs;
    const r = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), {
      params: [a, b].map((s) => ({ productKey: s!.productKey, deviceName: s!.deviceName })),
      method: 'thing.sub.register',
    });
    assert.equal(r.body.code, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.data, [
      { productKey: a!.productKey, deviceName: a!.deviceName, iotId: a!.iotId, deviceSecret: a!.deviceSecret },
      { productKey: b!.productKey, deviceName: b!.deviceName, iotId: b!.iotId, deviceSecret: b!.deviceSecret },
    ]);
    const again = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), { params: [{ productKey: a!.productKey, deviceName: a!.deviceName }] });
    assert.equal(again.body.data[0].deviceSecret, a!.deviceSecret);
    assert.ok(!server.logs.join('').includes(a!.deviceSecret), 'secrets never reach the log');
  });

  it('per item: unknown 6100, the gateway itself 6402, unknown product 6250, bound to another gateway 6619; the good one still answered', async () => {
    const [, , c, d] = g.subs;
    const other = await setupGateway(server, { subCount: 0 });
    await attachByApi(server, other.gateway, [d!]);
    const r = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), {
      params: [
        { productKey: g.subProductKey, deviceName: 'no-such-sub' },
        { productKey: g.gateway.productKey, deviceName: g.gateway.deviceName },
        { productKey: 'a1NoSuchPK0', deviceName: 'whatever' },
        { productKey: d!.productKey, deviceName: d!.deviceName },
        { productKey: c!.productKey, deviceName: c!.deviceName },
        { productKey: 7 },
      ],
    });
    assert.equal(r.body.code, 6100);
    assert.deepEqual(r.body.data.map((x: { code?: number }) => x.code ?? 200), [6100, 6402, 6250, 6619, 200, 460]);
    assert.equal(r.body.data[4].deviceSecret, c!.deviceSecret);
    assert.ok(!('deviceSecret' in r.body.data[3]));
  });

  it('a sub-product with dynamic registration off gets 6288; a product that is not SUB_DEVICE 460; empty params 460', async () => {
    const off = await setupGateway(server, { subCount: 1, dynamicRegistration: false });
    const r = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), { params: [{ productKey: off.subs[0]!.productKey, deviceName: off.subs[0]!.deviceName }] });
    assert.equal(r.body.code, 6288);
    const gwProduct = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), { params: [{ productKey: g.gateway.productKey, deviceName: 'other-gw' }] });
    assert.equal(gwProduct.body.code, 460);
    assert.match(gwProduct.body.data[0].message, /SUB_DEVICE/);
    const empty = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), { params: [] });
    assert.equal(empty.body.code, 460);
  });

  it('after the sub-device logged in (activated), registration answers 6289', async () => {
    const e = g.subs[4]!;
    await attachByApi(server, g.gateway, [e]);
    assert.equal((await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(e) })).body.code, 200);
    const r = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), { params: [{ productKey: e.productKey, deviceName: e.deviceName }] });
    assert.equal(r.body.code, 6289);
  });

  it('proxy product_register: items signed with the sub-product ProductSecret (hmacSha256, C upper-case random)', async () => {
    const [a, b] = g.subs;
    const item = (s: typeof a, secret = g.subProductSecret, signMethod = 'hmacSha256') => {
      const random = '0A1B2C3D4E5F60718293';
      const alg = signMethod.toLowerCase() === 'hmacsha256' ? 'sha256' : signMethod.toLowerCase() === 'hmacsha1' ? 'sha1' : 'md5';
      const sign = registrationSign(alg, secret, s!.productKey, s!.deviceName, random).toUpperCase();
      return { productKey: s!.productKey, deviceName: s!.deviceName, random, signMethod, sign };
    };
    const r = await request(gw, sysTopic(g.gateway, 'thing/proxy/provisioning/product_register'), { params: { proxieds: [item(a), item(b, g.subProductSecret, 'hmacSha1')] } });
    assert.equal(r.body.code, 200, JSON.stringify(r.body));
    assert.deepEqual(r.body.data.map((x: { deviceSecret: string }) => x.deviceSecret), [a!.deviceSecret, b!.deviceSecret]);
    const bad = await request(gw, sysTopic(g.gateway, 'thing/proxy/provisioning/product_register'), {
      params: { proxieds: [item(a, 'WrongProductSec1'), { ...item(b), signMethod: 'sha512' }, { ...item(b), random: '' }] },
    });
    assert.deepEqual(bad.body.data.map((x: { code: number }) => x.code), [6600, 6292, 460]);
    assert.ok(bad.body.data.every((x: Record<string, unknown>) => !('deviceSecret' in x)));
  });
});
