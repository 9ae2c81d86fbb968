/**
 * Brute force, floods and replay against a real server: failed logins from one source address
 * start a cool-down for that source only (MQTT CONNECT, HTTPS /auth, HTTPS registration), the
 * device whose name was attacked still logs in from elsewhere and as soon as it stops failing,
 * accepted connects per device are rate-limited, every throttle shows in the audit and the
 * metrics, and a product's timestamp window refuses stale CONNECTs.
 *
 * Distinct source addresses come from binding the client socket to other loopback addresses
 * (127.0.0.0/8 is all loopback on Linux), so each case has its own "attacker".
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { createHmac } from 'node:crypto';
import { MqttClient } from 'mqtt';
import { deviceHttpsPost } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { signedConnect, type DeviceCredentials, type SignedConnect } from '../helpers/mqtt.js';
import { registerForm } from './registration-helpers.js';

const COOLDOWN_S = 2;
const THRESHOLD = 5;
const CONNECT_RATE = 3;

interface ConnectOutcome {
  code: number;
  client?: MqttClient;
}

/** A CONNECT over plain MQTT/TCP from the given local (source) address; resolves with the CONNACK code. */
function connectFrom(server: TestServer, source: string, c: SignedConnect): Promise<ConnectOutcome> {
  const port = server.running.listeners['mqtt']!.port;
  return new Promise((resolve, reject) => {
    const client = new MqttClient(() => net.createConnection({ host: '127.0.0.1', port, localAddress: source }), {
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      keepalive: 60,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5_000,
    });
    let settled = false;
    client.once('connect', () => {
      settled = true;
      resolve({ code: 0, client });
    });
    client.on('error', (err: Error & { code?: number }) => {
      if (settled) return;
      settled = true;
      client.end(true);
      if (typeof err.code === 'number') resolve({ code: err.code });
      else reject(err);
    });
    client.once('close', () => {
      if (!settled) {
        settled = true;
        reject(new Error('closed before CONNACK'));
      }
    });
  });
}

async function connectCode(server: TestServer, source: string, c: SignedConnect): Promise<number> {
  const r = await connectFrom(server, source, c);
  r.client?.end(true);
  return r.code;
}

/** POST JSON or form over real HTTPS from a given source address; the answer must be JSON. */
async function httpsFrom(server: TestServer, source: string, path: string, body: string, contentType: string): Promise<any> {
  const r = await deviceHttpsPost(server, path, body, { 'content-type': contentType }, { localAddress: source });
  assert.notEqual(r.json, undefined, `the answer is not JSON: ${r.text}`);
  return r.json;
}

function httpAuthBody(d: DeviceCredentials, secret = d.deviceSecret, timestamp?: string): string {
  const clientId = `${d.productKey}.${d.deviceName}`;
  let content = `clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`;
  if (timestamp !== undefined) content += `timestamp${timestamp}`;
  const sign = createHmac('sha1', secret).update(content).digest('hex');
  return JSON.stringify({ productKey: d.productKey, deviceName: d.deviceName, clientId, sign, signmethod: 'hmacsha1', ...(timestamp !== undefined ? { timestamp } : {}) });
}

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !(want.length === 0 && line.startsWith(name + ' '))) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('brute force and floods', () => {
  let server: TestServer;
  let pk: string;
  const PS = 'PsThrottle123456';
  const devices: Record<string, DeviceCredentials> = {};

  before(async () => {
    server = await startTestServer({
      loginFailThreshold: String(THRESHOLD),
      loginFailWindowSeconds: '60',
      loginCooldownSeconds: String(COOLDOWN_S),
      deviceConnectRatePerMinute: String(CONNECT_RATE),
    });
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'throttle', dynamicRegistration: true, productSecret: PS });
    pk = p.productKey;
    const created = await reg.createDevices(pk, { deviceNames: ['victim', 'flapper', 'neighbour', 'http-dev', 'reg-dev', 'slow-learner'] });
    for (const d of created) devices[d.deviceName] = { productKey: d.productKey, deviceName: d.deviceName, deviceSecret: d.deviceSecret, iotId: d.iotId };
  });
  after(async () => {
    await server.stop();
  });

  it('failed logins from one source throttle that source (even a right secret), never the device elsewhere; the cool-down ends', async () => {
    const attacker = '127.0.0.3';
    const victim = devices.victim!;
    for (let i = 0; i < THRESHOLD; i++) {
      assert.equal(await connectCode(server, attacker, signedConnect({ ...victim, deviceSecret: `WrongGuess${i}` })), 5, `guess ${i}`);
    }
    // The source is now refused before anything is verified: a right guess does not get in.
    assert.equal(await connectCode(server, attacker, signedConnect(victim)), 5);
    // The same source is refused on HTTPS /auth too, with a message that says why.
    const http = await httpsFrom(server, attacker, '/auth', httpAuthBody(victim), 'application/json');
    assert.equal(http.code, 20000);
    assert.match(http.message, /too many failed logins.*retry in \d+ s/);
    // The attacked device is not locked out: from its own address it logs in at once.
    const good = await connectFrom(server, '127.0.0.1', signedConnect(victim));
    assert.equal(good.code, 0);
    good.client!.end(true);
    assert.equal((await httpsFrom(server, '127.0.0.1', '/auth', httpAuthBody(victim), 'application/json')).code, 0);

    // Audit: the throttle (source), the per-device alarm, and the refusal of the right guess.
    const audit = (await server.request('GET', `/api/v1/audit?action=security.source.throttled`)).body.items;
    assert.equal(audit.length, 1);
    assert.equal(audit[0].sourceAddress, attacker);
    assert.match(audit[0].reason, new RegExp(`${THRESHOLD} failed logins`));
    const alarm = (await server.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=victim&action=security.device.failures`)).body.items;
    assert.equal(alarm.length, 1);
    assert.match(alarm[0].reason, /not locked out/);
    const refused = (await server.request('GET', `/api/v1/audit?productKey=${pk}&deviceName=victim&action=mqtt.connect.sign&limit=3`)).body.items;
    assert.ok(refused.some((e: any) => e.result === 'deny' && e.sourceAddress === attacker && /source throttled/.test(e.reason)));
    // Metrics: one throttled source, refusals labelled throttled.
    const m = await (await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
    assert.equal(metricValue(m, 'thingauth_throttled_sources_total', { kind: 'source' }), 1);
    assert.equal(metricValue(m, 'thingauth_throttled_sources_total', { kind: 'device_alarm' }), 1);
    assert.ok(metricValue(m, 'thingauth_logins_total', { channel: 'mqtt', result: 'refused', reason: 'throttled' }) >= 1);
    assert.ok(metricValue(m, 'thingauth_logins_total', { channel: 'https', result: 'refused', reason: 'throttled' }) >= 1);

    // After the cool-down the source may try again, and the right secret gets in.
    await sleep(COOLDOWN_S * 1000 + 200);
    const later = await connectFrom(server, attacker, signedConnect(victim));
    assert.equal(later.code, 0);
    later.client!.end(true);
  });

  it('a device that stops failing gets in from the same address; failures below the threshold never refuse', async () => {
    const source = '127.0.0.4';
    const d = devices['slow-learner']!;
    for (let i = 0; i < THRESHOLD - 1; i++) assert.equal(await connectCode(server, source, signedConnect({ ...d, deviceSecret: 'OldSecretFromFlash' })), 5);
    const ok = await connectFrom(server, source, signedConnect(d));
    assert.equal(ok.code, 0);
    ok.client!.end(true);
    assert.deepEqual(await server.running.ctx.services.loginThrottle.throttledSources(), []);
  });

  it('accepted connects per device are limited per minute; other devices are unaffected; the refusal is on the device record', async () => {
    const d = devices.flapper!;
    for (let i = 0; i < CONNECT_RATE; i++) {
      const r = await connectFrom(server, '127.0.0.1', signedConnect(d));
      assert.equal(r.code, 0, `connect ${i}`);
      r.client!.end(true);
    }
    assert.equal(await connectCode(server, '127.0.0.1', signedConnect(d)), 5);
    // Not a credential failure: the source is not throttled, a neighbour connects fine.
    const n = await connectFrom(server, '127.0.0.1', signedConnect(devices.neighbour!));
    assert.equal(n.code, 0);
    n.client!.end(true);
    const rec = await server.request('GET', `/api/v1/products/${pk}/devices/flapper`);
    assert.match(rec.body.lastAuthError, /too many connects for this device: at most 3 per minute/);
    const m = await (await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
    assert.ok(metricValue(m, 'thingauth_throttled_sources_total', { kind: 'device_connect_rate' }) >= 1);
  });

  it('HTTPS registration: bad signatures from one source throttle it (429); other sources still register', async () => {
    const source = '127.0.0.5';
    for (let i = 0; i < THRESHOLD; i++) {
      const r = await httpsFrom(server, source, '/auth/register/device', registerForm(pk, 'reg-dev', 'WrongProductSecret', `r${i}`), 'application/x-www-form-urlencoded');
      assert.equal(r.code, 6600);
    }
    const blocked = await httpsFrom(server, source, '/auth/register/device', registerForm(pk, 'reg-dev', PS, 'r-good'), 'application/x-www-form-urlencoded');
    assert.equal(blocked.code, 429);
    assert.match(blocked.message, /source throttled/);
    assert.equal(blocked.data, null);
    const other = await httpsFrom(server, '127.0.0.1', '/auth/register/device', registerForm(pk, 'reg-dev', PS, 'r-good'), 'application/x-www-form-urlencoded');
    assert.equal(other.code, 200);
    assert.equal(other.data.deviceSecret, devices['reg-dev']!.deviceSecret);
  });
});

describe('replay: per-product timestamp window', () => {
  let server: TestServer;

  before(async () => {
    server = await startTestServer();
  });
  after(async () => {
    await server.stop();
  });

  it('off by default; when set, a timestamp in ms or s must be within the window, else CONNACK 5 with the reason on the device', async () => {
    const created = await server.request('POST', '/api/v1/products', { productName: 'replay window', timestampWindowSeconds: 300 });
    assert.equal(created.status, 201);
    assert.equal(created.body.timestampWindowSeconds, 300);
    const pk = created.body.productKey;
    const plain = await server.request('POST', '/api/v1/products', { productName: 'no window' });
    assert.equal(plain.body.timestampWindowSeconds, null);
    const bad = await server.request('POST', '/api/v1/products', { productName: 'bad window', timestampWindowSeconds: -5 });
    assert.equal(bad.status, 400);
    assert.match(JSON.stringify(bad.body), /timestampWindowSeconds/);

    const dev = (await server.request('POST', `/api/v1/products/${pk}/devices`, { deviceName: 'clocked' })).body;
    const d: DeviceCredentials = { productKey: pk, deviceName: 'clocked', deviceSecret: dev.deviceSecret ?? dev.devices?.[0]?.deviceSecret };
    assert.ok(d.deviceSecret, JSON.stringify(dev));
    const src = '127.0.0.1';
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: String(Date.now()) })), 0);
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: String(Math.floor(Date.now() / 1000)) })), 0);
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: null })), 0, 'no timestamp: nothing to check');
    // A captured CONNECT replayed later, and the C SDKs' fixed timestamp: refused.
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: String(Date.now() - 3_600_000) })), 5);
    let rec = await server.request('GET', `/api/v1/products/${pk}/devices/clocked`);
    assert.match(rec.body.lastAuthError, /timestamp outside window: 3600 s from the server clock \(window 300 s\)/);
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: '2524608000000' })), 5);
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: 'yesterday' })), 5);
    rec = await server.request('GET', `/api/v1/products/${pk}/devices/clocked`);
    assert.match(rec.body.lastAuthError, /timestamp outside window: "yesterday" is not a time/);
    // HTTPS /auth applies the same window.
    assert.equal((await httpsFrom(server, src, '/auth', httpAuthBody(d, d.deviceSecret, String(Date.now() - 3_600_000)), 'application/json')).code, 20000);
    assert.equal((await httpsFrom(server, src, '/auth', httpAuthBody(d, d.deviceSecret, String(Date.now())), 'application/json')).code, 0);

    // Switched off (null), the fixed SDK timestamp works again.
    const off = await server.request('PATCH', `/api/v1/products/${pk}`, { timestampWindowSeconds: null });
    assert.equal(off.status, 200);
    assert.equal(off.body.timestampWindowSeconds, null);
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: '2524608000000' })), 0);
    const on = await server.request('PATCH', `/api/v1/products/${pk}`, { timestampWindowSeconds: 60 });
    assert.equal(on.body.timestampWindowSeconds, 60);
    assert.equal((await server.request('GET', `/api/v1/products/${pk}`)).body.timestampWindowSeconds, 60);
    assert.equal(await connectCode(server, src, signedConnect({ ...d, timestamp: '2524608000000' })), 5);
  });
});
