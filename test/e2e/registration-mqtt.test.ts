/**
 * MQTT dynamic registration (spec 3) over real MQTTS trusting the generated CA: both
 * authTypes in both securemode forms, the pushed reply and the server's close, each refusal
 * with its CONNACK code, the captured C SDK samples, and the registration session's lack of
 * topic access.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { mqttRegistration, registrationConnect, type RegistrationConnectInput } from './registration-helpers.js';

const PS = 'PsRegMqtt1234567';

describe('MQTT dynamic registration (authType=register / regnwl)', () => {
  let server: TestServer;
  let pk: string;
  /** authType=register runs against a pre-registration product: a pre-registration-free one offers regnwl only (issue 11 item 10). */
  let prePk: string;
  const pkOf = (authType: 'register' | 'regnwl') => (authType === 'register' ? prePk : pk);
  const base = (over: Partial<RegistrationConnectInput> & { deviceName: string; authType: 'register' | 'regnwl' }): RegistrationConnectInput => ({
    productKey: pkOf(over.authType),
    productSecret: PS,
    ...over,
  });

  before(async () => {
    server = await startTestServer();
    const p = await server.running.ctx.services.registry.createProduct({ productName: 'dynreg mqtt', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS });
    pk = p.productKey;
    await server.running.ctx.services.registry.createDevices(pk, { deviceNames: ['dev-001', 'dev-002', 'dev-act', 'dev-off', 'dev-sub'] });
    prePk = (await server.running.ctx.services.registry.createProduct({ productName: 'dynreg mqtt pre', dynamicRegistration: true, productSecret: PS })).productKey;
    await server.running.ctx.services.registry.createDevices(prePk, { deviceNames: ['dev-001', 'dev-002', 'dev-act', 'dev-off', 'dev-sub'] });
  });
  after(async () => {
    await server.stop();
  });

  const secretOf = async (dn: string) => (await server.running.ctx.services.registry.getDeviceSecret(prePk, dn)).deviceSecret;

  for (const securemode of ['2', '-2']) {
    it(`register with securemode=${securemode}: pushes /ext/register {productKey,deviceName,deviceSecret} unsolicited, then closes`, async () => {
      const r = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-001', authType: 'register', securemode })));
      assert.equal(r.accepted, true);
      assert.equal(r.messages.length, 1, JSON.stringify(r.messages.map((m) => m.topic)));
      assert.equal(r.messages[0]!.topic, '/ext/register');
      assert.deepEqual(JSON.parse(r.messages[0]!.payload), { productKey: prePk, deviceName: 'dev-001', deviceSecret: await secretOf('dev-001') });
      assert.ok(r.closedAfterMs !== undefined, 'the server closed the connection');
    });
  }

  it('register in the LuatOS form (securemode=-2, hmacmd5, upper hex, free ClientId) and without signmethod (hmacmd5 default)', async () => {
    const a = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-002', authType: 'register', securemode: '-2', signMethod: 'hmacmd5', upperHex: true, clientId: 'whatever-id' })));
    assert.equal(a.messages[0]?.topic, '/ext/register');
    const b = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-002', authType: 'register', signMethod: null, securemode: null })));
    assert.equal(b.messages[0]?.topic, '/ext/register');
    assert.equal(JSON.parse(a.messages[0]!.payload).deviceSecret, JSON.parse(b.messages[0]!.payload).deviceSecret);
  });

  it('register also works on the TLS-sniffing port 1883 and with MQTT 3.1', async () => {
    const r = await mqttRegistration(server, 'mqtt-tls', registrationConnect(base({ deviceName: 'dev-001', authType: 'register' })));
    assert.equal(r.messages[0]?.topic, '/ext/register');
    const v3 = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-001', authType: 'register' })), { protocolVersion: 3 });
    assert.equal(v3.messages[0]?.topic, '/ext/register');
  });

  for (const securemode of ['2', '-2']) {
    it(`regnwl with securemode=${securemode}: creates the device, pushes /ext/regnwl, repeats give the same ClientID/DeviceToken`, async () => {
      const dn = `nwl-sm${securemode}`;
      const extra = securemode === '-2' ? ['instanceId=iot-06z00abcdefgh'] : [];
      const r1 = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: dn, authType: 'regnwl', securemode, extra })));
      assert.equal(r1.accepted, true);
      assert.equal(r1.messages.length, 1);
      assert.equal(r1.messages[0]!.topic, '/ext/regnwl');
      const body = JSON.parse(r1.messages[0]!.payload);
      assert.deepEqual(Object.keys(body).sort(), ['clientId', 'deviceName', 'deviceToken', 'productKey']);
      assert.equal(body.productKey, pk);
      assert.equal(body.deviceName, dn);
      assert.ok(!body.clientId.includes('|') && body.clientId.length <= 64, body.clientId);
      assert.ok(body.deviceToken.length > 16 && body.deviceToken.length <= 64);
      const dev = await server.request('GET', `/api/v1/products/${pk}/devices/${dn}`);
      assert.equal(dev.status, 200);
      assert.equal(dev.body.status, 'UNACTIVE', 'a registration connection neither activates nor brings the device online');
      assert.ok(!JSON.stringify(dev.body).includes(body.deviceToken));
      const r2 = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: dn, authType: 'regnwl', securemode })));
      assert.deepEqual(JSON.parse(r2.messages[0]!.payload), body);
    });
  }

  it('regnwl for a device created through the API issues a credential once', async () => {
    const a = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-002', authType: 'regnwl' })));
    const b = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-002', authType: 'regnwl' })));
    assert.equal(a.messages[0]?.topic, '/ext/regnwl');
    assert.deepEqual(JSON.parse(a.messages[0]!.payload), JSON.parse(b.messages[0]!.payload));
  });

  it('pre-registration still requires the device: register for an unknown name is refused with 4 and creates nothing', async () => {
    const r = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'never-created', authType: 'register' })));
    assert.equal(r.accepted, false);
    assert.equal(r.code, 4);
    const dev = await server.request('GET', `/api/v1/products/${prePk}/devices/never-created`);
    assert.equal(dev.status, 404);
  });

  for (const authType of ['register', 'regnwl'] as const) {
    it(`${authType} over plain TCP (and plain WebSocket) is refused with CONNACK 2, whatever securemode says`, async () => {
      const r = await mqttRegistration(server, 'mqtt', registrationConnect(base({ deviceName: 'dev-001', authType })));
      assert.deepEqual([r.accepted, r.code], [false, 2]);
      const ws = await mqttRegistration(server, 'mqtt-ws', registrationConnect(base({ deviceName: 'plain-ws-dev', authType })));
      assert.deepEqual([ws.accepted, ws.code], [false, 2]);
      assert.equal((await server.request('GET', `/api/v1/products/${pkOf(authType)}/devices/plain-ws-dev`)).status, 404);
    });

    it(`${authType} with a wrong sign is refused with CONNACK 4`, async () => {
      const r = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-001', authType, signSecret: 'NotTheSecret0000' })));
      assert.deepEqual([r.accepted, r.code], [false, 4]);
      assert.equal(r.messages.length, 0);
    });

    it(`${authType} with missing random, unknown signmethod or a bad username is refused with CONNACK 2`, async () => {
      const noRandom = registrationConnect(base({ deviceName: 'dev-001', authType }));
      noRandom.clientId = noRandom.clientId.replace(/random=\d+,/, '');
      assert.equal((await mqttRegistration(server, 'mqtts', noRandom)).code, 2);
      assert.equal((await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-001', authType, signMethod: 'sha256' })))).code, 2);
      const badUser = registrationConnect(base({ deviceName: 'dev-001', authType }));
      badUser.username = 'no-ampersand';
      assert.equal((await mqttRegistration(server, 'mqtts', badUser)).code, 2);
      assert.equal((await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-001', authType, securemode: '3' })))).code, 2);
    });

    it(`${authType} for an unknown product is refused with CONNACK 4`, async () => {
      const r = await mqttRegistration(server, 'mqtts', registrationConnect({ productKey: 'a1NoSuchPK9', productSecret: PS, deviceName: 'dev-001', authType }));
      assert.deepEqual([r.accepted, r.code], [false, 4]);
    });

    it(`${authType} for an activated device is refused with CONNACK 4 until reset`, async () => {
      const { iotId } = await server.running.ctx.services.registry.getDeviceSecret(pkOf(authType), 'dev-act');
      await server.running.ctx.store.markOnline(iotId, new Date().toISOString());
      await server.running.ctx.store.markOffline([iotId], new Date().toISOString());
      const r = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-act', authType })));
      assert.deepEqual([r.accepted, r.code], [false, 4]);
      assert.equal((await server.request('POST', `/api/v1/products/${pkOf(authType)}/devices/dev-act/reset`)).status, 200);
      const again = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-act', authType })));
      assert.equal(again.accepted, true);
      assert.equal(again.messages[0]?.topic, `/ext/${authType}`);
    });

    it(`${authType} for a disabled device is refused with CONNACK 4`, async () => {
      assert.equal((await server.request('POST', `/api/v1/products/${pkOf(authType)}/devices/dev-off/disable`)).status, 200);
      const r = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-off', authType })));
      assert.deepEqual([r.accepted, r.code], [false, 4]);
    });
  }

  it('switches: register needs dynamicRegistration, regnwl needs preRegistrationFree too (CONNACK 4)', async () => {
    const reg = server.running.ctx.services.registry;
    const off = await reg.createProduct({ productName: 'dynreg switched off', productSecret: PS });
    const preOnly = await reg.createProduct({ productName: 'dynreg pre only', dynamicRegistration: true, productSecret: PS });
    await reg.createDevices(off.productKey, { deviceNames: ['dev-001'] });
    await reg.createDevices(preOnly.productKey, { deviceNames: ['dev-001'] });
    const conn = (productKey: string, authType: 'register' | 'regnwl', deviceName = 'dev-001') =>
      mqttRegistration(server, 'mqtts', registrationConnect({ productKey, productSecret: PS, deviceName, authType }));
    assert.equal((await conn(off.productKey, 'register')).code, 4);
    assert.equal((await conn(off.productKey, 'regnwl', 'fresh-one')).code, 4);
    assert.equal((await conn(preOnly.productKey, 'regnwl', 'fresh-one')).code, 4);
    assert.equal((await conn(preOnly.productKey, 'register')).messages[0]?.topic, '/ext/register');
    assert.equal((await server.request('GET', `/api/v1/products/${preOnly.productKey}/devices/fresh-one`)).status, 404, 'a refused regnwl creates nothing');
  });

  it('regnwl refuses a DeviceName outside the rules (CONNACK 2) and the product device limit (CONNACK 4), creating nothing', async () => {
    const reg = server.running.ctx.services.registry;
    const small = await reg.createProduct({ productName: 'dynreg limited', dynamicRegistration: true, preRegistrationFree: true, deviceLimit: 2, productSecret: PS });
    const conn = (deviceName: string) => mqttRegistration(server, 'mqtts', registrationConnect({ productKey: small.productKey, productSecret: PS, deviceName, authType: 'regnwl' }));
    assert.equal((await conn('ab')).code, 2);
    assert.equal((await conn('bad#name')).code, 2);
    assert.equal((await conn('lim-1')).messages[0]?.topic, '/ext/regnwl');
    assert.equal((await conn('lim-2')).messages[0]?.topic, '/ext/regnwl');
    const over = await conn('lim-3');
    assert.deepEqual([over.accepted, over.code], [false, 4]);
    // An existing device still gets its credential at the limit.
    assert.equal((await conn('lim-1')).messages[0]?.topic, '/ext/regnwl');
    const list = await server.request('GET', `/api/v1/products/${small.productKey}/devices`);
    assert.equal(list.status, 200);
    assert.equal(list.body.total, 2);
  });

  it('replay protection: a reused random is refused (CONNACK 4) when the product asks for it, accepted otherwise', async () => {
    const reg = server.running.ctx.services.registry;
    const strict = await reg.createProduct({ productName: 'dynreg replay mqtt', dynamicRegistration: true, preRegistrationFree: true, replayProtection: true, productSecret: PS });
    const strictPre = await reg.createProduct({ productName: 'dynreg replay mqtt pre', dynamicRegistration: true, replayProtection: true, productSecret: PS });
    await reg.createDevices(strictPre.productKey, { deviceNames: ['dev-001'] });
    for (const authType of ['register', 'regnwl'] as const) {
      const dn = authType === 'register' ? 'dev-001' : 'nwl-replay';
      const productKey = authType === 'register' ? strictPre.productKey : strict.productKey;
      const c = registrationConnect({ productKey, productSecret: PS, deviceName: dn, authType, random: `fixed-${authType}` });
      assert.equal((await mqttRegistration(server, 'mqtts', c)).messages[0]?.topic, `/ext/${authType}`);
      const replay = await mqttRegistration(server, 'mqtts', c);
      assert.deepEqual([replay.accepted, replay.code], [false, 4]);
    }
    // Setting off (the default): C SDKs and iotkit may repeat a random.
    const c = registrationConnect(base({ deviceName: 'dev-001', authType: 'register', random: '566304528' }));
    assert.equal((await mqttRegistration(server, 'mqtts', c)).messages[0]?.topic, '/ext/register');
    assert.equal((await mqttRegistration(server, 'mqtts', c)).messages[0]?.topic, '/ext/register');
  });

  it('a registration connection has no topic access besides its reply topic', async () => {
    const r = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-sub', authType: 'register' })), {
      subscribe: ['/ext/register', '#', `/sys/${prePk}/dev-sub/#`, `/${prePk}/dev-sub/user/get`],
    });
    assert.equal(r.messages.filter((m) => m.topic === '/ext/register').length, 1, 'exactly one reply even when subscribed');
    if (r.granted) assert.deepEqual(r.granted, [0, 128, 128, 128]);
    // Publishing anything is refused by the ACL, which ends the connection before a reply can be sent (or right after).
    const p = await mqttRegistration(server, 'mqtts', registrationConnect(base({ deviceName: 'dev-sub', authType: 'register' })), {
      publish: { topic: `/sys/${prePk}/dev-sub/thing/event/property/post`, payload: '{}' },
    });
    assert.ok(p.messages.every((m) => m.topic === '/ext/register'));
  });

  it('never writes the ProductSecret, DeviceSecret, DeviceToken or the sign to the logs', async () => {
    const c = registrationConnect(base({ deviceName: 'nwl-leak', authType: 'regnwl' }));
    const r = await mqttRegistration(server, 'mqtts', c);
    const { deviceToken } = JSON.parse(r.messages[0]!.payload);
    const logs = server.logs.join('');
    for (const secret of [PS, deviceToken, c.password, await secretOf('dev-001')]) assert.ok(!logs.includes(secret), 'secret leaked into logs');
  });
});

describe('MQTT dynamic registration: captured C Link SDK samples (test/fixtures/wire-samples.json)', () => {
  let server: TestServer;
  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it('accepts both mqtt-register samples and pushes their replies', async () => {
    const file = fileURLToPath(new URL('../../../test/fixtures/wire-samples.json', import.meta.url));
    const samples = (JSON.parse(fs.readFileSync(file, 'utf8')).samples as any[]).filter((s) => s.kind === 'mqtt-register');
    assert.equal(samples.length, 2);
    const reg = server.running.ctx.services.registry;
    await reg.createProduct({ productName: 'bench product', productKey: 'a1BenchPK01', productSecret: samples[0].productSecret, dynamicRegistration: true, preRegistrationFree: true });
    await reg.createDevices('a1BenchPK01', { deviceNames: ['newdev01'] });
    for (const s of samples) {
      const authType = /authType=(\w+)/.exec(s.connect.clientId)![1];
      // One product offers one kind (issue 11 item 10): switch it to the kind the sample uses.
      await reg.updateProduct('a1BenchPK01', { preRegistrationFree: authType === 'regnwl' });
      const r = await mqttRegistration(server, 'mqtts', { clientId: s.connect.clientId, username: s.connect.username, password: s.connect.password }, {
        keepalive: s.connect.keepalive,
        protocolVersion: s.connect.protocolVersion,
      });
      assert.equal(r.accepted, true, `${s.name}: refused with ${r.code}`);
      assert.equal(r.messages.length, 1, s.name);
      assert.equal(r.messages[0]!.topic, `/ext/${authType}`);
      const body = JSON.parse(r.messages[0]!.payload);
      assert.equal(body.productKey, 'a1BenchPK01');
      assert.equal(body.deviceName, 'newdev01');
      if (authType === 'register') assert.equal(body.deviceSecret, (await reg.getDeviceSecret('a1BenchPK01', 'newdev01')).deviceSecret);
      else assert.ok(body.clientId && body.deviceToken);
    }
  });
});
