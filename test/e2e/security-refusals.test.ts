/**
 * Issue 11 items 7, 11, 12 and 18 against a real server over real sockets:
 * - item 7: the registration rate limits cannot be drained without the ProductSecret, every
 *   registration refusal counts against the source, one source cannot starve a product;
 * - item 11: a throttled source is audited once per cool-down, refusal log lines are rate
 *   limited with a count of what was suppressed;
 * - item 12: an application's raw appSecret is refused on plain transports (tcp, ws);
 * - item 18: whether a refusal counts is decided by its kind, not by the wording of a reason
 *   that quotes what the client sent.
 *
 * Distinct source addresses come from binding the client socket to other loopback addresses
 * (127.0.0.0/8 is all loopback on Linux), as in security-throttle.test.ts.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { createHmac } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { MqttClient } from 'mqtt';
import { deviceHttpsPost } from '../helpers/https.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { caOf, connectClient, connectRefusal, endClient, signedConnect, subscribe, type DeviceCredentials, type ListenerName, type SignedConnect } from '../helpers/mqtt.js';
import { registerForm, registrationConnect, type MqttFields } from './registration-helpers.js';

const THRESHOLD = 5;

/** POST a registration form over real HTTPS from `source`; the answer must be JSON. */
async function registerFrom(server: TestServer, source: string, body: string): Promise<{ code: number; message: string; data: any }> {
  const r = await deviceHttpsPost(server, '/auth/register/device', body, { 'content-type': 'application/x-www-form-urlencoded' }, { localAddress: source });
  assert.notEqual(r.json, undefined, `the answer is not JSON: ${r.text}`);
  return r.json;
}

/**
 * One MQTT CONNECT from `source` (plain TCP, or TLS to the MQTTS listener); resolves with the
 * CONNACK code (0 = accepted, the connection is then closed by us).
 */
function connackFrom(server: TestServer, source: string, c: MqttFields | SignedConnect, transport: 'tcp' | 'tls' = 'tcp'): Promise<number> {
  const port = server.running.listeners[transport === 'tcp' ? 'mqtt' : 'mqtts']!.port;
  const ca = transport === 'tls' ? caOf(server) : undefined;
  return new Promise((resolve, reject) => {
    const stream = () =>
      transport === 'tcp'
        ? net.createConnection({ host: '127.0.0.1', port, localAddress: source })
        : tls.connect({ host: '127.0.0.1', port, localAddress: source, ca, servername: 'localhost' } as tls.ConnectionOptions);
    const client = new MqttClient(stream, {
      clientId: c.clientId,
      username: c.username,
      password: c.password,
      keepalive: 60,
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 10_000,
    });
    let settled = false;
    const finish = (code: number) => {
      if (settled) return;
      settled = true;
      client.end(true);
      resolve(code);
    };
    client.once('connect', () => finish(0));
    client.on('error', (err: Error & { code?: number }) => {
      if (typeof err.code === 'number') finish(err.code);
      else if (!settled) {
        settled = true;
        client.end(true);
        reject(err);
      }
    });
    client.once('close', () => {
      if (!settled) {
        settled = true;
        reject(new Error('closed before CONNACK'));
      }
    });
  });
}

/** Runs `n` tasks, at most `width` at a time. */
async function pool<T>(n: number, width: number, task: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = new Array(n);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, n) }, async () => {
      while (next < n) {
        const i = next++;
        out[i] = await task(i);
      }
    }),
  );
  return out;
}

async function metricsText(server: TestServer): Promise<string> {
  return (await fetch(`${server.api}/metrics`, { headers: { authorization: `Bearer ${server.adminToken}` } })).text();
}

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  const want = Object.entries(labels).map(([k, v]) => `${k}="${v}"`);
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (want.every((w) => line.includes(w))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

/** The parsed JSON log lines of the server that match `pred`. */
function logLines(server: TestServer, pred: (l: any) => boolean): any[] {
  const out: any[] = [];
  for (const chunk of server.logs) {
    for (const line of chunk.split('\n')) {
      if (!line.trim()) continue;
      try {
        const l = JSON.parse(line);
        if (pred(l)) out.push(l);
      } catch {
        /* not JSON */
      }
    }
  }
  return out;
}


/** A product with dynamic registration on and the named devices pre-created. */
async function registrationProduct(server: TestServer, name: string, productSecret: string, devices: string[]): Promise<string> {
  const reg = server.running.ctx.services.registry;
  const p = await reg.createProduct({ productName: name, dynamicRegistration: true, productSecret });
  await reg.createDevices(p.productKey, { deviceNames: devices });
  return p.productKey;
}
describe('registration rate limits cannot be drained without the ProductSecret (issue 11 item 7)', () => {
  let server: TestServer;
  const PS = 'PsRefusals7A1234';

  before(async () => {
    // A product budget of 1/s (burst 2) makes draining it visible at once.
    server = await startTestServer({
      loginFailThreshold: String(THRESHOLD),
      loginFailWindowSeconds: '600',
      loginCooldownSeconds: '600',
      registrationRatePerSecond: '1',
    });
  });
  after(async () => {
    await server.stop();
  });

  const product = (name: string, devices: string[]) => registrationProduct(server, name, PS, devices);

  it('a flood of bad signs takes no token: the product\'s honest device still registers, and the flooding source is throttled', async () => {
    const pk = await product('flooded', ['honest']);
    const attacker = '127.0.0.21';
    const answers = await pool(30, 6, (i) => registerFrom(server, attacker, registerForm(pk, 'honest', 'NotTheProductSecret', `a${i}`)));
    // Bad signs are refused as such until the source is throttled, never as the product's rate.
    assert.ok(answers.every((a) => a.code === 6600 || (a.code === 429 && /source throttled/.test(a.message))), JSON.stringify(answers.map((a) => [a.code, a.message])));
    assert.ok(answers.filter((a) => a.code === 6600).length <= THRESHOLD + 6, 'no more bad signs verified than the threshold (plus those in flight)');
    // Even with the ProductSecret the attacker's source is refused for its cool-down.
    const blocked = await registerFrom(server, attacker, registerForm(pk, 'honest', PS, 'a-good'));
    assert.equal(blocked.code, 429);
    assert.match(blocked.message, /source throttled/);
    // The product's budget is untouched: its honest device registers from its own address.
    const ok = await registerFrom(server, '127.0.0.1', registerForm(pk, 'honest', PS, 'h1'));
    assert.equal(ok.code, 200, JSON.stringify(ok));
    assert.ok(ok.data.deviceSecret);
  });

  it('refusals other than a bad sign count against the source too: 6292, 460, 6250', async () => {
    const pk = await product('probed', ['dev1']);
    const source = '127.0.0.22';
    const refusals = [
      registerForm(pk, 'dev1', PS, 'p1', 'hmacsha512'), // 6292 unsupported sign method
      registerForm(pk, 'dev1', PS, 'p2', 'HmacSHA384'), // 6292
      'productKey=' + pk, // 460 missing fields
      registerForm('a1NoSuchProd', 'dev1', PS, 'p3'), // 6250
      registerForm(pk, 'dev1', PS, 'p4', 'hmacsha512'), // 6292
    ];
    const codes = [];
    for (const body of refusals) codes.push((await registerFrom(server, source, body)).code);
    assert.deepEqual(codes, [6292, 6292, 460, 6250, 6292]);
    const blocked = await registerFrom(server, source, registerForm(pk, 'dev1', PS, 'p5'));
    assert.equal(blocked.code, 429);
    assert.match(blocked.message, /source throttled/);
    // Another source is not affected.
    assert.equal((await registerFrom(server, '127.0.0.1', registerForm(pk, 'dev1', PS, 'p6'))).code, 200);
  });

  it('MQTT registration refusals with CONNACK 2 count against the source', async () => {
    const pk = await product('mqtt-probed', ['mdev1']);
    const source = '127.0.0.27';
    for (let i = 0; i < THRESHOLD; i++) {
      const bad = registrationConnect({ productKey: pk, productSecret: PS, deviceName: 'mdev1', authType: 'register', securemode: '3' });
      assert.equal(await connackFrom(server, source, bad, 'tls'), 2, `attempt ${i}`);
    }
    // The source is throttled now: a correct registration from it is refused (CONNACK 5) ...
    const good = registrationConnect({ productKey: pk, productSecret: PS, deviceName: 'mdev1', authType: 'register' });
    assert.equal(await connackFrom(server, source, good, 'tls'), 5);
    assert.ok((await server.running.ctx.services.loginThrottle.throttledSources()).includes(source));
    // ... and accepted from another.
    assert.equal(await connackFrom(server, '127.0.0.1', registrationConnect({ productKey: pk, productSecret: PS, deviceName: 'mdev1', authType: 'register' }), 'tls'), 0);
  });
});

describe('one refusal kind decides the throttle, not the wording of a reason (issue 11 item 18)', () => {
  let server: TestServer;
  const PS = 'PsRefusals18A123';

  before(async () => {
    server = await startTestServer({ loginFailThreshold: String(THRESHOLD), loginFailWindowSeconds: '600', loginCooldownSeconds: '600' });
  });
  after(async () => {
    await server.stop();
  });

  const product = (name: string, devices: string[]) => registrationProduct(server, name, PS, devices);

  it('an unknown device named "disabled-cam" counts as a failure, labelled unknown_device', async () => {
    const pk = await product('named', ['real']);
    const source = '127.0.0.28';
    const before = metricValue(await metricsText(server), 'thingauth_logins_total', { channel: 'mqtt', result: 'refused', reason: 'unknown_device' });
    for (let i = 0; i < THRESHOLD; i++) {
      // Signed with the right ProductSecret, for a device that does not exist: its reason
      // quotes the name ("device disabled-cam not found"), which used to read as "disabled".
      const c = registrationConnect({ productKey: pk, productSecret: PS, deviceName: 'disabled-cam', authType: 'register' });
      assert.equal(await connackFrom(server, source, c, 'tls'), 4, `attempt ${i}`);
    }
    assert.ok((await server.running.ctx.services.loginThrottle.throttledSources()).includes(source));
    const after = metricValue(await metricsText(server), 'thingauth_logins_total', { channel: 'mqtt', result: 'refused', reason: 'unknown_device' });
    assert.equal(after - before, THRESHOLD);
  });
});

describe('a per-source registration bucket (issue 11 item 7)', () => {
  let server: TestServer;
  const PS = 'PsRefusals7B1234';

  before(async () => {
    server = await startTestServer({
      loginFailThreshold: String(THRESHOLD),
      loginFailWindowSeconds: '600',
      loginCooldownSeconds: '600',
      registrationRatePerSecond: '5', // burst 10
      registrationRatePerSourcePerSecond: '1', // burst 2
    });
  });
  after(async () => {
    await server.stop();
  });

  it('a source holding the ProductSecret is limited per source and then throttled; another source registers fine', async () => {
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'busy', dynamicRegistration: true, productSecret: PS });
    const pk = p.productKey;
    await reg.createDevices(pk, { deviceNames: ['greedy', 'honest'] });
    const flooder = '127.0.0.23';
    const answers = [];
    for (let i = 0; i < 20; i++) answers.push(await registerFrom(server, flooder, registerForm(pk, 'greedy', PS, `g${i}`)));
    const codes = answers.map((a) => a.code);
    assert.equal(codes[0], 200);
    const perSource = answers.filter((a) => a.code === 429 && /from this address/.test(a.message));
    assert.ok(perSource.length >= 1, JSON.stringify(answers.map((a) => [a.code, a.message])));
    // Its rate refusals count: the source ends up throttled.
    assert.match(answers[answers.length - 1]!.message, /source throttled/);
    // The product's budget (10) was not spent by one source: an honest device elsewhere registers.
    const honest = await registerFrom(server, '127.0.0.24', registerForm(pk, 'honest', PS, 'h1'));
    assert.equal(honest.code, 200, JSON.stringify(honest));
  });
});

describe('audit and log amplification (issue 11 item 11)', () => {
  let server: TestServer;
  let victim: DeviceCredentials;

  before(async () => {
    server = await startTestServer({
      loginFailThreshold: String(THRESHOLD),
      loginFailWindowSeconds: '600',
      loginCooldownSeconds: '600',
    });
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'amplified', dynamicRegistration: true, productSecret: 'PsRefusals11A123' });
    const [d] = await reg.createDevices(p.productKey, { deviceNames: ['victim'] });
    victim = { productKey: d!.productKey, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret };
  });
  after(async () => {
    await server.stop();
  });

  it('500 refused CONNECTs from one source: a bounded number of audit entries and log lines, the rest counted', async () => {
    const attacker = '127.0.0.31';
    const N = 500;
    const started = Date.now();
    const codes = await pool(N, 8, (i) => connackFrom(server, attacker, signedConnect({ ...victim, deviceSecret: `WrongGuess${i}` })));
    const elapsedMs = Date.now() - started;
    assert.ok(codes.every((c) => c === 5));
    // HTTPS registration from the throttled source: refused, not audited one by one either.
    for (let i = 0; i < 20; i++) assert.equal((await registerFrom(server, attacker, registerForm(victim.productKey, 'victim', 'x', `r${i}`))).code, 429);

    // Audit (reads flush the batched writer first): the failures up to the threshold, the
    // throttle itself once, and the first refusal of the cool-down; nothing per further attempt.
    const entries = (await server.request('GET', `/api/v1/audit?productKey=${victim.productKey}&deviceName=victim&limit=10000`)).body.items.filter((e: any) => e.sourceAddress === attacker);
    const throttled = (await server.request('GET', `/api/v1/audit?action=security.source.throttled&limit=10000`)).body.items.filter((e: any) => e.sourceAddress === attacker);
    assert.equal(throttled.length, 1);
    // In flight when the cool-down started: up to the pool width more failures than the
    // threshold; plus the per-device alarm and the first refusal of the cool-down.
    assert.ok(entries.length <= THRESHOLD + 8 + 2, `audit entries for the attacker: ${entries.length}`);
    assert.equal(entries.filter((e: any) => /source throttled/.test(e.reason)).length, 1);
    assert.equal(entries.filter((e: any) => e.action === 'register.https').length, 0);
    // Every refusal is still counted in the metrics.
    const m = await metricsText(server);
    assert.ok(metricValue(m, 'thingauth_logins_total', { channel: 'mqtt', result: 'refused', reason: 'throttled' }) >= N - THRESHOLD - 8);

    // Log: at most 10 refusal lines per minute for this source, then one summary with the count.
    const mine = (l: any) => l.event === 'mqtt.connect.deny' && (l.remote === attacker || l.source === attacker);
    const written = logLines(server, (l) => mine(l) && l.msg === 'mqtt connect refused').length;
    assert.ok(written <= 10 * (1 + Math.floor(elapsedMs / 60_000)), `refusal lines written: ${written}`);
    server.running.ctx.services.logLimiter.flush();
    const summaries = logLines(server, (l) => mine(l) && typeof l.suppressed === 'number');
    assert.ok(summaries.length >= 1);
    assert.match(summaries[0].msg, /suppressed \d+ similar/);
    assert.equal(written + summaries.reduce((n, l) => n + l.suppressed, 0), N);

    // The device itself logs in from its own address all along.
    const ok = await connectClient(server, 'mqtt', signedConnect(victim));
    await endClient(ok);
  });
});

describe('refusal log lines are rate limited per source (issue 11 item 11)', () => {
  let server: TestServer;
  let device: DeviceCredentials;
  let pk: string;
  const PS = 'PsRefusals11B123';

  before(async () => {
    // No source throttle: the log limiter alone must bound the lines.
    server = await startTestServer({ loginFailThreshold: '0' });
    const reg = server.running.ctx.services.registry;
    const p = await reg.createProduct({ productName: 'chatty', dynamicRegistration: true, productSecret: PS });
    pk = p.productKey;
    const [d] = await reg.createDevices(pk, { deviceNames: ['subdev'] });
    device = { productKey: d!.productKey, deviceName: d!.deviceName, deviceSecret: d!.deviceSecret };
  });
  after(async () => {
    await server.stop();
  });

  it('HTTPS registration refusals: 10 lines, then a summary with the suppressed count', async () => {
    const source = '127.0.0.32';
    for (let i = 0; i < 40; i++) assert.equal((await registerFrom(server, source, registerForm(pk, 'subdev', 'WrongSecret', `s${i}`))).code, 6600);
    const mine = (l: any) => l.event === 'registration.refused' && (l.remote === source || l.source === source);
    const written = logLines(server, (l) => mine(l) && l.msg === 'dynamic registration refused').length;
    assert.ok(written >= 1 && written <= 20, `written ${written}`);
    server.running.ctx.services.logLimiter.flush();
    const suppressed = logLines(server, (l) => mine(l) && typeof l.suppressed === 'number').reduce((n, l) => n + l.suppressed, 0);
    assert.equal(written + suppressed, 40);
    assert.ok(suppressed >= 20);
  });

  it('SUBSCRIBE refusals: bounded lines, a summary with the suppressed count, the session stays usable', async () => {
    const client = await connectClient(server, 'mqtt', signedConnect(device));
    const filters = Array.from({ length: 40 }, (_, i) => `/sys/otherpk/other${i}/thing/event/property/post`);
    for (const f of filters) assert.deepEqual(await subscribe(client, f), [0x80]);
    const mine = (l: any) => l.event === 'mqtt.subscribe.deny' && (l.deviceName === 'subdev' || l.source === '127.0.0.1');
    const written = logLines(server, (l) => mine(l) && l.msg === 'subscription refused by topic ACL').length;
    assert.ok(written >= 1 && written <= 20, `written ${written}`);
    server.running.ctx.services.logLimiter.flush();
    const suppressed = logLines(server, (l) => mine(l) && typeof l.suppressed === 'number').reduce((n, l) => n + l.suppressed, 0);
    assert.equal(written + suppressed, 40);
    // Its own topics still work.
    assert.deepEqual(await subscribe(client, `/sys/${pk}/subdev/thing/service/property/set`), [0]);
    await endClient(client);
  });
});

describe('an application\'s raw appSecret needs TLS (issue 11 item 12)', () => {
  let server: TestServer;
  let app: { appKey: string; appSecret: string };

  before(async () => {
    // A low threshold: were raw-secret refusals counted as failures, the source would be
    // throttled within this block and the accepting cases below would fail.
    server = await startTestServer({ loginFailThreshold: '3' });
    const p = await server.request('POST', '/api/v1/products', { productName: 'app scope' });
    const created = await server.request('POST', '/api/v1/applications', { name: 'dashboard', productKeys: [p.body.productKey] });
    assert.equal(created.status, 201);
    app = created.body;
  });
  after(async () => {
    await server.stop();
  });

  const raw = (clientId: string) => ({ clientId, username: `app:${app.appKey}`, password: app.appSecret });
  const signed = (clientId: string) => ({
    clientId: `${clientId}|signmethod=hmacsha256|`,
    username: `app:${app.appKey}`,
    password: createHmac('sha256', app.appSecret).update(`appKey${app.appKey}clientId${clientId}`).digest('hex'),
  });

  for (const which of ['mqtt', 'mqtt-ws'] as ListenerName[]) {
    it(`raw appSecret over ${which === 'mqtt' ? 'mqtt://' : 'ws://'}: refused with CONNACK 5, audited as "raw appSecret needs TLS"`, async () => {
      const r = await connectRefusal(server, which, raw(`raw-${which}`));
      assert.equal(r.code, 5);
      const audit = (await server.request('GET', '/api/v1/audit?action=mqtt.connect.application&limit=50')).body.items;
      assert.ok(audit.some((e: any) => e.result === 'deny' && /raw appSecret needs TLS/.test(e.reason) && e.reason.includes(which === 'mqtt' ? 'over tcp' : 'over ws')), JSON.stringify(audit));
      assert.ok(!JSON.stringify(audit).includes(app.appSecret));
      assert.ok(!server.logs.join('').includes(app.appSecret), 'the secret is not logged');
    });
  }

  it('MQTT 5 client, raw appSecret over mqtt://: reason code 0x87 (not authorized)', async () => {
    const r = await connectRefusal(server, 'mqtt', raw('raw-v5'), { protocolVersion: 5 });
    assert.equal(r.code, 0x87);
  });

  for (const which of ['mqtts', 'mqtt-wss', 'mqtt-tls'] as ListenerName[]) {
    it(`raw appSecret over ${which}: accepted`, async () => {
      await endClient(await connectClient(server, which, raw(`raw-ok-${which}`)));
    });
  }

  for (const which of ['mqtt', 'mqtt-ws'] as ListenerName[]) {
    it(`signed password over ${which}: accepted`, async () => {
      await endClient(await connectClient(server, which, signed(`signed-${which}`)));
    });
  }

  it('raw-secret refusals are not credential failures: the source is not throttled by them', async () => {
    for (let i = 0; i < 4; i++) assert.equal((await connectRefusal(server, 'mqtt', raw(`raw-again-${i}`))).code, 5);
    assert.deepEqual(await server.running.ctx.services.loginThrottle.throttledSources(), []);
    await endClient(await connectClient(server, 'mqtt', signed('signed-after')));
  });
});
