/**
 * The HTTPS device channel (spec 5.1/5.2) over real HTTPS trusting the generated CA:
 * /auth issues a token to a correctly signing device (and activates it), /topic publishes
 * into the broker where an application receives it; bad, foreign, expired and revoked
 * tokens are refused with the spec's codes.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { HttpChannelTokens, TOKEN_LIFETIME_MS } from '../../src/services/http-channel-tokens.js';
import { connectClient, createDevice, endClient, eventually, nextMessage, subscribe, type DeviceCredentials } from '../helpers/mqtt.js';
import { deviceHttpsPost as post } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

function authBody(d: DeviceCredentials, opts: { method?: string; alg?: 'md5' | 'sha1' | 'sha256'; timestamp?: string | number; clientId?: string; upper?: boolean } = {}) {
  const clientId = opts.clientId ?? `${d.productKey}.${d.deviceName}`;
  let content = `clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`;
  if (opts.timestamp !== undefined) content += `timestamp${opts.timestamp}`;
  let sign = createHmac(opts.alg ?? 'sha256', d.deviceSecret).update(content).digest('hex');
  if (opts.upper) sign = sign.toUpperCase();
  const body: Record<string, unknown> = { version: 'default', clientId, signmethod: opts.method ?? 'hmacsha256', sign, productKey: d.productKey, deviceName: d.deviceName };
  if (opts.timestamp !== undefined) body.timestamp = opts.timestamp;
  if (opts.method === '') delete body.signmethod;
  return JSON.stringify(body);
}

const JSON_CT = { 'content-type': 'application/json' };

describe('HTTPS device channel', () => {
  let server: TestServer;
  let dev: DeviceCredentials & { iotId: string };
  let other: DeviceCredentials & { iotId: string };

  before(async () => {
    server = await startTestServer();
    dev = await createDevice(server);
    other = await createDevice(server, { productKey: dev.productKey });
  });
  after(async () => {
    await server.stop();
  });

  async function tokenFor(d: DeviceCredentials): Promise<string> {
    const r = await post(server, '/auth', authBody(d), JSON_CT);
    assert.equal(r.json?.code, 0, r.text);
    return r.json.info.token;
  }

  it('issues a token for a correctly signed /auth (C SDK style: hmacsha256, no timestamp) and activates the device', async () => {
    const r = await post(server, '/auth', authBody(dev, { upper: true }), JSON_CT);
    assert.equal(r.status, 200);
    assert.equal(r.json.code, 0, r.text);
    assert.equal(r.json.message, 'success');
    assert.equal(typeof r.json.info.token, 'string');
    assert.ok(r.json.info.token.length <= 192, 'token fits the iotkit buffer');
    const rec = await eventually(async () => {
      const d = await server.running.ctx.store.getDevice(dev.productKey, dev.deviceName);
      return d?.activatedAt ? d : undefined;
    });
    assert.equal(rec.online, false, 'an HTTP device is activated, not left online');
  });

  it('accepts hmacmd5 (also as the default) and hmacsha1 with a timestamp', async () => {
    assert.equal((await post(server, '/auth', authBody(dev, { method: 'hmacmd5', alg: 'md5', timestamp: '1501668289957' }), JSON_CT)).json.code, 0);
    assert.equal((await post(server, '/auth', authBody(dev, { method: '', alg: 'md5' }), JSON_CT)).json.code, 0);
    assert.equal((await post(server, '/auth', authBody(dev, { method: 'HmacSHA1', alg: 'sha1', timestamp: 1501668289957 }), JSON_CT)).json.code, 0);
  });

  it('refuses a bad signature (20000), missing fields and non-JSON (10001)', async () => {
    const bad = await post(server, '/auth', authBody({ ...dev, deviceSecret: 'WrongSecret00000000000000000000a' }), JSON_CT);
    assert.equal(bad.json.code, 20000);
    assert.ok(!('info' in bad.json));
    assert.equal((await post(server, '/auth', JSON.stringify({ productKey: dev.productKey }), JSON_CT)).json.code, 10001);
    assert.equal((await post(server, '/auth', '{not json', JSON_CT)).json.code, 10001);
    assert.equal((await post(server, '/auth', 'productKey=x&deviceName=y', { 'content-type': 'application/x-www-form-urlencoded' })).json.code, 10001);
    assert.equal((await post(server, '/auth', authBody({ ...dev, deviceName: 'nobody-here' }), JSON_CT)).json.code, 20000);
  });

  it('publishes POST /topic/<own topic> into the broker: an application receives it', async () => {
    const token = await tokenFor(dev);
    const app = await server.running.ctx.services.applications.create({ name: 'http-reader', productKeys: [dev.productKey] });
    const ac = await connectClient(server, 'mqtts', { clientId: 'reader', username: `app:${app.appKey}`, password: app.appSecret });
    const topic = `/${dev.productKey}/${dev.deviceName}/user/update`;
    await subscribe(ac, topic);
    const got = nextMessage(ac, (t) => t === topic);
    const payload = Buffer.from([0x00, 0x01, 0xfe, 0xff]);
    const r = await post(server, `/topic${topic}`, payload, { 'content-type': 'application/octet-stream', password: token });
    assert.equal(r.json.code, 0, r.text);
    assert.equal(typeof r.json.info.messageId, 'number');
    assert.deepEqual((await got).payload, payload);
    await endClient(ac);
  });

  it('refuses a missing token (20002), a garbled or forged token (20003), and another device\'s topic (20003)', async () => {
    const topic = `/sys/${dev.productKey}/${dev.deviceName}/thing/event/property/post`;
    assert.equal((await post(server, `/topic${topic}`, '{}', { 'content-type': 'application/octet-stream' })).json.code, 20002);
    assert.equal((await post(server, `/topic${topic}`, '{}', { 'content-type': 'application/octet-stream', password: 'garbage' })).json.code, 20003);
    const token = await tokenFor(dev);
    const forged = token.slice(0, -2) + (token.endsWith('AA') ? 'BB' : 'AA');
    assert.equal((await post(server, `/topic${topic}`, '{}', { 'content-type': 'application/octet-stream', password: forged })).json.code, 20003);
    const foreign = `/sys/${other.productKey}/${other.deviceName}/thing/event/property/post`;
    assert.equal((await post(server, `/topic${foreign}`, '{}', { 'content-type': 'application/octet-stream', password: token })).json.code, 20003);
    assert.equal((await post(server, `/topic${topic}?x=1`, '{}', { 'content-type': 'application/octet-stream', password: token })).json.code, 10001);
    // A token from another server (different signing key) is foreign.
    const elsewhere = await startTestServer();
    try {
      const d2 = await createDevice(elsewhere);
      const r = await post(elsewhere, '/auth', authBody(d2), JSON_CT);
      assert.equal((await post(server, `/topic${topic}`, '{}', { 'content-type': 'application/octet-stream', password: r.json.info.token })).json.code, 20003);
    } finally {
      await elsewhere.stop();
    }
  });

  it('refuses an expired token with 20001', async () => {
    // A real token, signed with this server's key, issued more than 7 days ago.
    const past = new HttpChannelTokens(server.running.ctx.store, () => Date.now() - TOKEN_LIFETIME_MS - 60_000);
    const { token } = await past.issue(dev.productKey, dev.deviceName, dev.deviceSecret);
    const topic = `/sys/${dev.productKey}/${dev.deviceName}/thing/event/property/post`;
    assert.equal((await post(server, `/topic${topic}`, '{}', { 'content-type': 'application/octet-stream', password: token })).json.code, 20001);
  });

  it('a disabled device\'s token stops working at once; enabling it again revives it', async () => {
    const d = await createDevice(server, { productKey: dev.productKey });
    const token = await tokenFor(d);
    const topic = `/sys/${d.productKey}/${d.deviceName}/thing/event/property/post`;
    const send = () => post(server, `/topic${topic}`, '{"id":"1"}', { 'content-type': 'application/octet-stream', password: token });
    assert.equal((await send()).json.code, 0);
    await server.running.ctx.services.registry.setEnabled(d.productKey, d.deviceName, false);
    assert.equal((await send()).json.code, 20003);
    assert.equal((await post(server, '/auth', authBody(d), JSON_CT)).json.code, 20000);
    await server.running.ctx.services.registry.setEnabled(d.productKey, d.deviceName, true);
    assert.equal((await send()).json.code, 0);
  });

  it('never logs the sign or the token', async () => {
    const body = authBody(dev);
    const r = await post(server, '/auth', body, JSON_CT);
    const logs = server.logs.join('');
    assert.ok(!logs.includes(JSON.parse(body).sign));
    assert.ok(!logs.includes(r.json.info.token));
  });
});
