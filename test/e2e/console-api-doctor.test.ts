/**
 * The connection doctor (issue 17) over a real server: POST /api/v1/diagnose/connect with a
 * pasted CONNECT, a device's history and a registration request. Each case makes the real
 * login fail the same way first (a real mqtt.js client, CONNACK code) and then asserts the
 * doctor's finding by its code, so the doctor is checked against the login it explains.
 * Admin only (read scope: 403); every run audited without the password; no secret in any
 * answer.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { DOCTOR_FINDING_CODES } from '../../src/core/doctor.js';
import { connectClient, connectRefusal, createDevice, endClient, eventually, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { connectGateway, loginParams, request, sessionTopic, setupGateway, sysTopic } from './gateway-helpers.js';

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

describe('connection doctor', () => {
  let srv: TestServer;
  let readToken: string;
  const secrets = new Set<string>();

  before(async () => {
    srv = await startTestServer();
    const t = await srv.request('POST', '/api/v1/tokens', { name: 'viewer', scope: 'read' });
    assert.equal(t.status, 201);
    readToken = t.body.token;
  });
  after(async () => {
    // No answer of this file, nor the log, holds a secret or a signature it was given.
    const logs = srv.logs.join('');
    for (const s of secrets) assert.ok(!logs.includes(s), 'a secret or password reached the log');
    await srv?.stop();
  });

  async function device(opts: { requireTls?: boolean; productKey?: string } = {}): Promise<DeviceCredentials & { iotId: string }> {
    const d = await createDevice(srv, opts);
    secrets.add(d.deviceSecret);
    return d;
  }

  async function diagnose(body: unknown, token?: string): Promise<{ status: number; body: any }> {
    const r = await srv.request('POST', '/api/v1/diagnose/connect', body, token);
    if (r.status === 200) {
      const text = JSON.stringify(r.body);
      for (const s of secrets) assert.ok(!text.includes(s), 'the answer holds a secret or the password');
      assert.match(r.body.verdict, /^(ok|refused|unknown)$/);
      for (const f of r.body.findings) {
        assert.ok((DOCTOR_FINDING_CODES as readonly string[]).includes(f.code), `unknown code ${f.code}`);
        assert.ok(f.message.length > 0 && f.hint.length > 0);
      }
    }
    return r;
  }

  const codes = (r: { body: any }) => r.body.findings.map((f: any) => f.code);
  const errors = (r: { body: any }) => r.body.findings.filter((f: any) => f.severity === 'error').map((f: any) => f.code);

  function pasted(c: { clientId: string; username: string; password: string }, extra: Record<string, unknown> = {}) {
    secrets.add(c.password);
    return { clientId: c.clientId, username: c.username, password: c.password, ...extra };
  }

  it('good credentials: verdict ok, credentials-ok; the same triple really logs in', async () => {
    const d = await device();
    const c = signedConnect(d);
    const client = await connectClient(srv, 'mqtt', c);
    await endClient(client);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.verdict, 'ok');
    assert.deepEqual(errors(r), []);
    assert.ok(codes(r).includes('credentials-ok'));
  });

  it('wrong secret: sign-mismatch (CONNACK 5 for the real login), no expected signature in the answer', async () => {
    const d = await device();
    const c = signedConnect({ ...d, deviceSecret: 'WrongSecret0123456789abcdefABCDEF' });
    assert.equal((await connectRefusal(srv, 'mqtt', c)).code, 5);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.equal(r.body.verdict, 'refused');
    assert.deepEqual(errors(r), ['sign-mismatch']);
    const expected = signedConnect(d).password;
    assert.ok(!JSON.stringify(r.body).includes(expected));
  });

  it('sign method announced differs from the one used: sign-method-mismatch', async () => {
    const d = await device();
    const c = signedConnect({ ...d, signMethod: 'hmacsha256', signWith: 'sha1' });
    assert.equal((await connectRefusal(srv, 'mqtt', c)).code, 5);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.deepEqual(errors(r), ['sign-method-mismatch']);
  });

  it('rotated secret: the previous one within its grace logs in (warning), after its grace it is named (error)', async () => {
    const d = await device();
    const rot = await srv.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/secret/rotate`, { graceSeconds: 3600 });
    assert.equal(rot.status, 200, JSON.stringify(rot.body));
    secrets.add(rot.body.deviceSecret);
    const old = signedConnect(d);
    await endClient(await connectClient(srv, 'mqtt', old));
    const previousLines = () => srv.logs.filter((l) => l.includes('mqtt.connect.previous-secret')).length;
    const before = previousLines();
    assert.equal(before, 1, 'the real login is logged');
    const r = await diagnose(pasted(old, { transport: 'tcp' }));
    assert.equal(previousLines(), before, 'a diagnosis is not logged as a login');
    assert.equal(r.body.verdict, 'ok');
    const f = r.body.findings.find((x: any) => x.code === 'secret-rotated-previous-matches');
    assert.ok(f, JSON.stringify(r.body));
    assert.equal(f.severity, 'warning');
    assert.equal(f.params.graceEndsAt, rot.body.previousSecretExpiresAt);

    const d2 = await device();
    const rot2 = await srv.request('POST', `/api/v1/products/${d2.productKey}/devices/${d2.deviceName}/secret/rotate`, { graceSeconds: 1 });
    assert.equal(rot2.status, 200);
    secrets.add(rot2.body.deviceSecret);
    const old2 = signedConnect(d2);
    // The grace has to pass: wait until the real login refuses the old secret.
    await sleep(1100);
    await eventually(async () => (await connectRefusal(srv, 'mqtt', old2)).code === 5);
    const r2 = await diagnose(pasted(old2, { transport: 'tcp' }));
    assert.equal(r2.body.verdict, 'refused');
    assert.deepEqual(errors(r2), ['secret-rotated-previous-expired']);
  });

  it('timestamp outside the product window: timestamp-outside-window with the skew', async () => {
    const p = await srv.request('POST', '/api/v1/products', { productName: 'windowed', timestampWindowSeconds: 300 });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    const d = await device({ productKey: p.body.productKey });
    const c = signedConnect({ ...d, timestamp: String(Date.now() - 3_600_000) });
    assert.equal((await connectRefusal(srv, 'mqtt', c)).code, 5);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.deepEqual(errors(r), ['timestamp-outside-window']);
    const f = r.body.findings.find((x: any) => x.code === 'timestamp-outside-window');
    assert.equal(f.params.windowSeconds, 300);
    assert.ok(f.params.skewSeconds >= 3590 && f.params.skewSeconds <= 3700, String(f.params.skewSeconds));
    // No timestamp at all is accepted, with a warning that the window cannot apply.
    const bare = signedConnect({ ...d, timestamp: null });
    const r2 = await diagnose(pasted(bare, { transport: 'tcp' }));
    assert.equal(r2.body.verdict, 'ok');
    assert.ok(codes(r2).includes('timestamp-missing'));
  });

  it('TLS required over plain: tls-required; over tls the same triple is ok', async () => {
    const d = await device({ requireTls: true });
    const c = signedConnect(d);
    assert.equal((await connectRefusal(srv, 'mqtt', c)).code, 5);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.deepEqual(errors(r), ['tls-required']);
    const r2 = await diagnose(pasted(c, { transport: 'tls' }));
    assert.equal(r2.body.verdict, 'ok');
    // Transport not given: TLS assumed, and said.
    const r3 = await diagnose(pasted(c));
    assert.equal(r3.body.verdict, 'ok');
    assert.ok(codes(r3).includes('transport-assumed') && codes(r3).includes('tls-only-product'));
  });

  it('disabled device: device-disabled for the triple and for the device', async () => {
    const d = await device();
    assert.equal((await srv.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/disable`)).status, 200);
    const c = signedConnect(d);
    assert.equal((await connectRefusal(srv, 'mqtt', c)).code, 5);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.deepEqual(errors(r), ['device-disabled']);
    await srv.settle();
    const h = await diagnose({ productKey: d.productKey, deviceName: d.deviceName });
    assert.equal(h.body.verdict, 'refused');
    assert.ok(errors(h).includes('device-disabled'));
  });

  it('unknown product and unknown device', async () => {
    const d = await device();
    const c = signedConnect({ ...d, productKey: 'a1NoSuchProduct' });
    assert.equal((await connectRefusal(srv, 'mqtt', c)).code, 5);
    const r = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.deepEqual(errors(r), ['unknown-product']);
    assert.equal(r.body.findings.find((f: any) => f.code === 'unknown-product').params.productKey, 'a1NoSuchProduct');
    const r2 = await diagnose(pasted(signedConnect({ ...d, deviceName: 'no-such-device' }), { transport: 'tcp' }));
    assert.deepEqual(errors(r2), ['unknown-device']);
    const h = await diagnose({ productKey: 'a1NoSuchProduct', deviceName: 'x' });
    assert.deepEqual(errors(h), ['unknown-product']);
  });

  it('malformed ClientId, username and password: clientid-malformed, username-malformed, password-missing', async () => {
    const d = await device();
    const good = signedConnect(d);
    const bare = { ...good, clientId: `${d.productKey}.${d.deviceName}` };
    assert.equal((await connectRefusal(srv, 'mqtt', bare)).code, 2);
    assert.deepEqual(errors(await diagnose(pasted(bare, { transport: 'tcp' }))), ['clientid-malformed']);
    assert.deepEqual(errors(await diagnose(pasted({ ...good, username: 'nodelimiter' }, { transport: 'tcp' }))), ['username-malformed']);
    assert.deepEqual(errors(await diagnose({ clientId: good.clientId, username: good.username, password: '', transport: 'tcp' })), ['password-missing']);
    assert.deepEqual(errors(await diagnose(pasted({ ...good, clientId: `${d.productKey}.${d.deviceName}|securemode=3,signmethod=hmacsha512|` }, { transport: 'tcp' }))), ['sign-method-unsupported']);
  });

  it('device history: recent refusals decoded in plain words; the last good login turns the verdict ok', async () => {
    const d = await device();
    const bad = signedConnect({ ...d, deviceSecret: 'WrongSecret0123456789abcdefABCDEF' });
    secrets.add(bad.password);
    assert.equal((await connectRefusal(srv, 'mqtt', bad)).code, 5);
    await srv.settle();
    const h = await diagnose({ productKey: d.productKey, deviceName: d.deviceName });
    assert.equal(h.body.verdict, 'refused');
    assert.deepEqual(errors(h), ['sign-mismatch']);
    const hist = h.body.findings.find((f: any) => f.code === 'refusal-history');
    assert.equal(hist.params.count, 1);
    assert.equal(hist.params.source, '127.0.0.1');

    await endClient(await connectClient(srv, 'mqtt', signedConnect(d)));
    await srv.settle();
    const h2 = await diagnose({ productKey: d.productKey, deviceName: d.deviceName });
    assert.equal(h2.body.verdict, 'ok');
    assert.ok(codes(h2).includes('last-login-ok'));
    assert.deepEqual(errors(h2), []);

    const quiet = await device();
    const h3 = await diagnose({ productKey: quiet.productKey, deviceName: quiet.deviceName });
    assert.equal(h3.body.verdict, 'unknown');
    assert.deepEqual(codes(h3), ['no-recent-activity']);
  });

  it('registration request: ok for a good sign, sign-mismatch (ProductSecret) and unknown-device, and nothing registered', async () => {
    const p = await srv.request('POST', '/api/v1/products', { productName: 'dynreg', dynamicRegistration: true });
    assert.equal(p.status, 201, JSON.stringify(p.body));
    const ps = await srv.request('GET', `/api/v1/products/${p.body.productKey}/secret`);
    const productSecret: string = ps.body.productSecret;
    assert.ok(productSecret, JSON.stringify(ps.body));
    secrets.add(productSecret);
    const d = await device({ productKey: p.body.productKey });
    const sign = (dn: string, random: string, secret = productSecret) => createHmac('sha256', secret).update(`deviceName${dn}productKey${d.productKey}random${random}`).digest('hex');
    const ok = await diagnose({ registration: { productKey: d.productKey, deviceName: d.deviceName, random: '123', signMethod: 'hmacsha256', sign: sign(d.deviceName, '123') } });
    assert.equal(ok.body.verdict, 'ok', JSON.stringify(ok.body));
    const wrong = await diagnose({ registration: { productKey: d.productKey, deviceName: d.deviceName, random: '123', signMethod: 'hmacsha256', sign: sign(d.deviceName, '123', 'nope') } });
    assert.deepEqual(errors(wrong), ['sign-mismatch']);
    assert.equal(wrong.body.findings.find((f: any) => f.code === 'sign-mismatch').params.secret, 'ProductSecret');
    const missing = await diagnose({ registration: { productKey: d.productKey, deviceName: 'not-there', random: '1', signMethod: 'hmacsha256', sign: sign('not-there', '1') } });
    assert.deepEqual(errors(missing), ['unknown-device']);
    // The same request as an MQTT CONNECT (authType=register): TLS only, then the same checks.
    const mqttReg = { clientId: `${d.deviceName}|securemode=2,authType=register,random=77,signmethod=hmacsha256|`, username: `${d.deviceName}&${d.productKey}`, password: sign(d.deviceName, '77') };
    secrets.add(mqttReg.password);
    assert.deepEqual(errors(await diagnose({ ...mqttReg, transport: 'tcp' })), ['tls-required']);
    const overTls = await diagnose({ ...mqttReg, transport: 'tls' });
    assert.equal(overTls.body.verdict, 'ok', JSON.stringify(overTls.body));
    assert.deepEqual(errors(await diagnose({ ...mqttReg, password: sign(d.deviceName, '78'), transport: 'tls' })), ['sign-mismatch']);
    // Diagnosing changed nothing: the device is still unactivated and registers for real.
    const dev = await srv.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}`);
    assert.equal(dev.body.status, 'UNACTIVE');
  });

  it('read scope is refused (403); no token 401; every run is audited without the password', async () => {
    const d = await device();
    const c = signedConnect(d);
    const r = await diagnose(pasted(c), readToken);
    assert.equal(r.status, 403);
    assert.equal((await srv.request('POST', '/api/v1/diagnose/connect', pasted(c), null)).status, 401);
    const ok = await diagnose(pasted(c, { transport: 'tcp' }));
    assert.equal(ok.status, 200);
    await srv.settle();
    const audit = await srv.request('GET', `/api/v1/audit?action=doctor.connect&productKey=${d.productKey}`);
    assert.equal(audit.status, 200);
    assert.equal(audit.body.items.length, 1);
    assert.match(audit.body.items[0].reason, /diagnosis of a connect: ok/);
    assert.match(audit.body.items[0].actor, /^token:bootstrap/);
    const all = await srv.request('GET', '/api/v1/audit?limit=1000');
    assert.ok(!JSON.stringify(all.body).includes(c.password));
    // The list of codes is public to any token.
    const list = await srv.request('GET', '/api/v1/diagnose/codes', undefined, readToken);
    assert.equal(list.status, 200);
    assert.deepEqual(list.body.items.map((x: any) => x.code), [...DOCTOR_FINDING_CODES]);
  });

  it('a bad body is a 400 naming the problem', async () => {
    const r = await srv.request('POST', '/api/v1/diagnose/connect', { productKey: 'a1X' });
    assert.equal(r.status, 400);
    assert.equal(r.body.code, 'INVALID_ARGUMENT');
  });
});

describe('connection doctor: sub-devices through a gateway', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer();
  });
  after(async () => {
    await srv?.stop();
  });

  it('a sub-device refused by combine/login (not in the topology, wrong secret) and a gateway registering itself (wrong node type): decoded from the audit', async () => {
    const g = await setupGateway(srv, { subCount: 2 });
    const gw = await connectGateway(srv, g.gateway);
    try {
      const sub = g.subs[0]!;
      const notInTopo = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(sub) });
      assert.equal(notInTopo.body.code, 6401);
      await srv.settle();
      const h = await srv.request('POST', '/api/v1/diagnose/connect', { productKey: sub.productKey, deviceName: sub.deviceName });
      assert.equal(h.body.verdict, 'refused');
      assert.deepEqual(h.body.findings.filter((f: any) => f.severity === 'error').map((f: any) => f.code), ['not-in-topology']);

      const reg = await request(gw, sysTopic(g.gateway, 'thing/sub/register'), { params: [{ productKey: g.gateway.productKey, deviceName: g.gateway.deviceName }] });
      assert.notEqual(reg.body.code, 200, JSON.stringify(reg.body));
      await srv.settle();
      const self = await srv.request('POST', '/api/v1/diagnose/connect', { productKey: g.gateway.productKey, deviceName: g.gateway.deviceName });
      const codes = self.body.findings.map((f: any) => f.code);
      assert.ok(codes.includes('wrong-node-type'), JSON.stringify(self.body));
    } finally {
      await endClient(gw);
    }
  });
});

describe('connection doctor: a throttled source', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startTestServer({ loginFailThreshold: '3', loginCooldownSeconds: '60' });
  });
  after(async () => {
    await srv?.stop();
  });

  it('source-throttled for the address in its cool-down (read from the throttle, nothing counted), and in the device history', async () => {
    const d = await createDevice(srv);
    const bad = signedConnect({ ...d, deviceSecret: 'WrongSecret0123456789abcdefABCDEF' });
    for (let i = 0; i < 3; i++) assert.equal((await connectRefusal(srv, 'mqtt', bad)).code, 5);
    // Now even the right credentials are refused from this address.
    const good = signedConnect(d);
    assert.equal((await connectRefusal(srv, 'mqtt', good)).code, 5);
    const r = await srv.request('POST', '/api/v1/diagnose/connect', { ...good, transport: 'tcp', sourceAddress: '127.0.0.1' });
    assert.equal(r.status, 200);
    assert.equal(r.body.verdict, 'refused');
    const errs = r.body.findings.filter((f: any) => f.severity === 'error').map((f: any) => f.code);
    assert.deepEqual(errs, ['source-throttled']);
    assert.ok(r.body.findings.some((f: any) => f.code === 'credentials-ok'), 'the credentials themselves are fine');
    // Another address is not throttled: the same triple is ok.
    const other = await srv.request('POST', '/api/v1/diagnose/connect', { ...good, transport: 'tcp', sourceAddress: '192.0.2.9' });
    assert.equal(other.body.verdict, 'ok');
    await srv.settle();
    const h = await srv.request('POST', '/api/v1/diagnose/connect', { productKey: d.productKey, deviceName: d.deviceName });
    const codes = h.body.findings.map((f: any) => f.code);
    assert.ok(codes.includes('source-throttled') && codes.includes('sign-mismatch'), JSON.stringify(codes));
    assert.equal(h.body.verdict, 'refused');
  });
});
