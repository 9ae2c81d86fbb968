/**
 * DeviceSecret rotation end to end, over real sockets: POST .../secret/rotate issues a new
 * secret while the old one keeps working for the grace period (MQTT CONNECT, HTTPS /auth and
 * its tokens, sub-device login and topo/add through a gateway), then the old one is refused
 * (CONNACK 5, 20000/20003, 6287). Grace 0 refuses it at once; a second rotation replaces the
 * previous secret. The audit says which secret matched; no endpoint, log line or audit entry
 * shows either secret, and the previous one is ciphertext at rest. The CLI command too.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { sqlitePath } from '../../src/config.js';
import { PREVIOUS_SECRET_REASON } from '../../src/core/secret-rotation.js';
import { connectClient, connectRefusal, endClient, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { deviceHttpsPost as devicePost } from '../helpers/https.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, connectGateway, loginParams, request, sessionTopic, setupGateway, sysTopic, topoEntry } from './gateway-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');
const SECRET_RE = /^[A-Za-z0-9]{8,64}$/;

interface Rotated {
  iotId: string;
  productKey: string;
  deviceName: string;
  deviceSecret: string;
  previousSecretExpiresAt: string | null;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** HTTPS /auth body signed the way the C SDK does (hmacsha256, no timestamp). */
function authBody(d: DeviceCredentials): string {
  const clientId = `${d.productKey}.${d.deviceName}`;
  const sign = createHmac('sha256', d.deviceSecret).update(`clientId${clientId}deviceName${d.deviceName}productKey${d.productKey}`).digest('hex');
  return JSON.stringify({ clientId, signmethod: 'hmacsha256', sign, productKey: d.productKey, deviceName: d.deviceName });
}

describe('DeviceSecret rotation with a grace period', () => {
  let srv: TestServer;
  /** Every secret the tests saw, for the leak checks at the end. */
  const secrets = new Map<string, string>();
  const keep = (what: string, value: string) => secrets.set(value, what);

  before(async () => {
    srv = await startTestServer({ logLevel: 'debug' });
  });
  after(async () => {
    await srv?.stop();
  });

  async function newDevice(productKey?: string): Promise<DeviceCredentials & { iotId: string }> {
    const pk = productKey ?? (await srv.request('POST', '/api/v1/products', { productName: 'rotation product' })).body.productKey;
    const r = await srv.request('POST', `/api/v1/products/${pk}/devices`, {});
    assert.equal(r.status, 201, JSON.stringify(r.body));
    keep(`DeviceSecret ${r.body.deviceName}`, r.body.deviceSecret);
    return { productKey: pk, deviceName: r.body.deviceName, deviceSecret: r.body.deviceSecret, iotId: r.body.iotId };
  }

  async function rotate(d: DeviceCredentials, body?: Record<string, unknown>): Promise<Rotated> {
    const r = await srv.request('POST', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/secret/rotate`, body);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    keep(`rotated DeviceSecret ${d.deviceName}`, r.body.deviceSecret);
    return r.body as Rotated;
  }

  async function logsIn(d: DeviceCredentials, secret: string): Promise<void> {
    const c = await connectClient(srv, 'mqtt', signedConnect({ ...d, deviceSecret: secret }));
    await endClient(c);
  }

  async function refusedWith(d: DeviceCredentials, secret: string): Promise<number | undefined> {
    return (await connectRefusal(srv, 'mqtt', signedConnect({ ...d, deviceSecret: secret }))).code;
  }

  async function auditOf(d: { productKey: string; deviceName: string }, action: string): Promise<{ result: string; reason: string | null }[]> {
    await srv.running.ctx.services.audit.flush();
    const r = await srv.request('GET', `/api/v1/audit?productKey=${d.productKey}&deviceName=${encodeURIComponent(d.deviceName)}&action=${encodeURIComponent(action)}&limit=100`);
    assert.equal(r.status, 200);
    return r.body.items;
  }

  it('rotating issues a new secret; both old and new log in over MQTT, and the audit says which one matched', async () => {
    const d = await newDevice();
    await logsIn(d, d.deviceSecret); // the authenticator now caches the record: the rotation must drop it
    const before = Date.now();
    const r = await rotate(d, { graceSeconds: 3600 });
    assert.equal(r.productKey, d.productKey);
    assert.equal(r.deviceName, d.deviceName);
    assert.equal(r.iotId, d.iotId);
    assert.match(r.deviceSecret, SECRET_RE);
    assert.notEqual(r.deviceSecret, d.deviceSecret);
    const expires = Date.parse(r.previousSecretExpiresAt!);
    assert.ok(expires >= before + 3_600_000 - 1000 && expires <= Date.now() + 3_600_000 + 1000, `expiry ${r.previousSecretExpiresAt}`);

    await logsIn(d, r.deviceSecret);
    await logsIn(d, d.deviceSecret);
    assert.equal(await refusedWith(d, 'NotEitherSecretButLongEnough1'), 5, 'a wrong secret is still refused');
    const secretRead = await srv.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/secret`);
    assert.equal(secretRead.body.deviceSecret, r.deviceSecret, '/secret answers the new secret');

    const allowed = (await auditOf(d, 'mqtt.connect.sign')).filter((e) => e.result === 'allow');
    assert.equal(allowed.length, 3);
    // Newest first: old secret (grace), new secret, the login before the rotation.
    assert.ok(allowed[0]!.reason!.includes(PREVIOUS_SECRET_REASON), allowed[0]!.reason!);
    assert.ok(!allowed[1]!.reason!.includes(PREVIOUS_SECRET_REASON), allowed[1]!.reason!);
    assert.ok(!allowed[2]!.reason!.includes(PREVIOUS_SECRET_REASON), allowed[2]!.reason!);
    assert.ok(srv.logs.some((l) => l.includes('mqtt.connect.previous-secret') && l.includes(d.deviceName)), 'a log line names the device using its previous secret');
    const rotations = await auditOf(d, 'api.post /products/:productKey/devices/:deviceName/secret/rotate');
    assert.equal(rotations.length, 1, 'the rotation itself is audited');
    assert.equal(rotations[0]!.result, 'ok');
  });

  it('once the grace ends the old secret is refused (MQTT CONNACK 5, HTTPS /auth 20000, its HTTPS token 20003); the new one keeps working', async () => {
    const d = await newDevice();
    const r = await rotate(d, { graceSeconds: 2 });
    const fresh = { ...d, deviceSecret: r.deviceSecret };
    const topic = `/${d.productKey}/${d.deviceName}/user/update`;
    const publish = (token: string) => devicePost(srv, `/topic${topic}`, '{"n":1}', { 'content-type': 'application/octet-stream', password: token });

    // Within the grace: the old secret logs in over MQTT and gets an HTTPS token that works.
    await logsIn(d, d.deviceSecret);
    const oldAuth = await devicePost(srv, '/auth', authBody(d), { 'content-type': 'application/json' });
    assert.equal(oldAuth.json.code, 0, oldAuth.text);
    const oldToken = oldAuth.json.info.token as string;
    keep('HTTPS token (old secret)', oldToken);
    const newAuth = await devicePost(srv, '/auth', authBody(fresh), { 'content-type': 'application/json' });
    assert.equal(newAuth.json.code, 0, newAuth.text);
    const newToken = newAuth.json.info.token as string;
    keep('HTTPS token (new secret)', newToken);
    assert.equal((await publish(oldToken)).json.code, 0, 'a token issued under the previous secret works during the grace');
    const httpAudit = (await auditOf(d, 'http.auth')).filter((e) => e.result === 'allow');
    assert.equal(httpAudit.length, 2);
    assert.equal(httpAudit.filter((e) => e.reason!.includes(PREVIOUS_SECRET_REASON)).length, 1, 'the /auth with the old secret is marked in the audit');

    await sleep(Math.max(0, Date.parse(r.previousSecretExpiresAt!) - Date.now()) + 100);
    assert.equal(await refusedWith(d, d.deviceSecret), 5, 'the old secret is refused after the grace');
    assert.equal((await devicePost(srv, '/auth', authBody(d), { 'content-type': 'application/json' })).json.code, 20000);
    assert.equal((await publish(oldToken)).json.code, 20003, "the old secret's token died with its grace");
    assert.equal((await publish(newToken)).json.code, 0);
    await logsIn(d, r.deviceSecret);
    const denied = (await auditOf(d, 'mqtt.connect.sign')).filter((e) => e.result === 'deny');
    assert.equal(denied.length, 1);
    assert.match(denied[0]!.reason!, /CONNACK 5: bad signature/);
  });

  it('grace 0 refuses the old secret at once (and its HTTPS tokens); no expiry is returned', async () => {
    const d = await newDevice();
    const auth = await devicePost(srv, '/auth', authBody(d), { 'content-type': 'application/json' });
    assert.equal(auth.json.code, 0, auth.text);
    keep('HTTPS token (grace 0)', auth.json.info.token);
    await logsIn(d, d.deviceSecret);
    const r = await rotate(d, { graceSeconds: 0 });
    assert.equal(r.previousSecretExpiresAt, null);
    assert.equal(await refusedWith(d, d.deviceSecret), 5);
    const topic = `/${d.productKey}/${d.deviceName}/user/update`;
    assert.equal((await devicePost(srv, `/topic${topic}`, 'x', { 'content-type': 'application/octet-stream', password: auth.json.info.token })).json.code, 20003);
    await logsIn(d, r.deviceSecret);
    const row = await srv.running.ctx.store.getDevice(d.productKey, d.deviceName);
    assert.equal(row!.previousDeviceSecret, null, 'with no grace the old secret is not kept at all');
  });

  it('a bare POST uses the default grace of 7 days', async () => {
    const d = await newDevice();
    const before = Date.now();
    const r = await rotate(d);
    const expires = Date.parse(r.previousSecretExpiresAt!);
    const week = 7 * 24 * 3600 * 1000;
    assert.ok(expires >= before + week - 1000 && expires <= Date.now() + week + 1000, r.previousSecretExpiresAt!);
    await logsIn(d, d.deviceSecret);
  });

  it('a second rotation during the grace replaces the previous secret: the first one stops working at once', async () => {
    const d = await newDevice();
    const second = await rotate(d, { graceSeconds: 3600 });
    const third = await rotate(d, { graceSeconds: 3600 });
    assert.notEqual(third.deviceSecret, second.deviceSecret);
    assert.equal(await refusedWith(d, d.deviceSecret), 5, 'the first secret is gone');
    await logsIn(d, second.deviceSecret);
    await logsIn(d, third.deviceSecret);
  });

  it('takes an operator-provided secret; refuses bad input with a 4xx naming the field and changes nothing', async () => {
    const d = await newDevice();
    const base = `/api/v1/products/${d.productKey}/devices/${d.deviceName}/secret/rotate`;
    const bad: [unknown, string][] = [
      [{ deviceSecret: 'short' }, 'deviceSecret'],
      [{ deviceSecret: 'has-dash-not-alnum' }, 'deviceSecret'],
      [{ deviceSecret: 12345678 }, 'deviceSecret'],
      [{ deviceSecret: d.deviceSecret }, 'deviceSecret'],
      [{ graceSeconds: -1 }, 'graceSeconds'],
      [{ graceSeconds: 1.5 }, 'graceSeconds'],
      [{ graceSeconds: '3600' }, 'graceSeconds'],
      [{ graceSeconds: 400 * 24 * 3600 }, 'graceSeconds'],
      [{ grace: 10 }, 'grace'],
    ];
    for (const [body, field] of bad) {
      const r = await srv.request('POST', base, body);
      assert.equal(r.status, 400, `${JSON.stringify(body)} -> ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'INVALID_ARGUMENT');
      assert.equal(r.body.field, field, JSON.stringify(r.body));
    }
    for (const raw of ['[1,2]', 'null', '"7d"', '3600']) {
      const r = await srv.request('POST', base, raw);
      assert.equal(r.status, 400, `${raw} -> ${r.status} ${JSON.stringify(r.body)}`);
      assert.equal(r.body.code, 'INVALID_ARGUMENT');
    }
    assert.equal((await srv.request('POST', `/api/v1/products/${d.productKey}/devices/no-such-device/secret/rotate`, {})).status, 404);
    assert.equal((await srv.request('POST', `/api/v1/products/a1NoSuchProduct/devices/${d.deviceName}/secret/rotate`, {})).status, 404);
    const read = await srv.request('POST', '/api/v1/tokens', { name: 'rotation-reader', scope: 'read' });
    keep('read token', read.body.token);
    assert.equal((await srv.request('POST', base, {}, read.body.token)).status, 403, 'a read-scope token may not rotate');
    assert.equal((await srv.request('POST', base, {}, null)).status, 401);

    const row = await srv.running.ctx.store.getDevice(d.productKey, d.deviceName);
    assert.equal(row!.deviceSecret, d.deviceSecret, 'nothing changed');
    assert.equal(row!.previousDeviceSecret, null);

    const mine = 'OperatorChosenSecret0123456789AB';
    keep('operator secret', mine);
    const r = await rotate(d, { deviceSecret: mine, graceSeconds: 60 });
    assert.equal(r.deviceSecret, mine);
    await logsIn(d, mine);
    await logsIn(d, d.deviceSecret);
  });

  it('sub-devices: topo/add and login signed with the old secret work during the grace; after grace 0 the old login is refused (6287)', async () => {
    const g = await setupGateway(srv, { subCount: 2 });
    for (const s of [g.gateway, ...g.subs]) keep(`gateway-side secret ${s.deviceName}`, s.deviceSecret);
    const [graced, cut] = g.subs as [DeviceCredentials & { iotId: string }, DeviceCredentials & { iotId: string }];
    await attachByApi(srv, g.gateway, [cut]);
    const r1 = await rotate(graced, { graceSeconds: 3600 });
    const r2 = await rotate(cut, { graceSeconds: 0 });
    const gw = await connectGateway(srv, g.gateway);
    try {
      const add = await request(gw, sysTopic(g.gateway, 'thing/topo/add'), { params: [topoEntry(graced)] });
      assert.equal(add.body.code, 200, `topo/add with the old secret during the grace: ${JSON.stringify(add.body)}`);
      const login = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(graced) });
      assert.equal(login.body.code, 200, `login with the old secret during the grace: ${JSON.stringify(login.body)}`);
      const loginNew = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams({ ...graced, deviceSecret: r1.deviceSecret }) });
      assert.equal(loginNew.body.code, 200, JSON.stringify(loginNew.body));

      const refused = await request(gw, sessionTopic(g.gateway, 'login'), { params: loginParams(cut) });
      assert.equal(refused.body.code, 6287, `old secret after grace 0: ${JSON.stringify(refused.body)}`);
      const badAdd = await request(gw, sysTopic(g.gateway, 'thing/topo/add'), { params: [topoEntry(cut)] });
      assert.equal(badAdd.body.code, 401, `topo/add with the old secret after grace 0: ${JSON.stringify(badAdd.body)}`);
      const ok = await request(gw, sessionTopic(g.gateway, 'batch_login'), { params: { signMethod: 'hmacsha1', deviceList: [loginParams({ ...cut, deviceSecret: r2.deviceSecret }), loginParams(graced)] } });
      assert.equal(ok.body.code, 200, `batch_login, new secret and old-in-grace: ${JSON.stringify(ok.body)}`);
    } finally {
      await endClient(gw);
    }
    const logins = (await auditOf(graced, 'session.sub.login')).filter((e) => e.result === 'ok');
    assert.equal(logins.length, 3);
    assert.deepEqual(
      logins.map((e) => e.reason),
      [PREVIOUS_SECRET_REASON, null, PREVIOUS_SECRET_REASON],
      'batch (old), login (new), login (old), newest first',
    );
    const adds = (await auditOf(graced, 'topology.add')).filter((e) => e.result === 'ok');
    assert.ok(adds.length === 1 && adds[0]!.reason!.includes(PREVIOUS_SECRET_REASON), JSON.stringify(adds));
    const cutLogins = await auditOf(cut, 'session.sub.login');
    assert.deepEqual(cutLogins.map((e) => e.result), ['ok', 'deny']);
    assert.equal(cutLogins[0]!.reason, null, 'the new secret: nothing to flag');
  });

  it('list and get never show either secret or the rotation fields', async () => {
    const d = await newDevice();
    const r = await rotate(d, { graceSeconds: 600 });
    const list = await srv.request('GET', `/api/v1/products/${d.productKey}/devices`);
    const get = await srv.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}`);
    assert.equal(list.status, 200);
    assert.equal(get.status, 200);
    assert.equal(list.body.items.length, 1);
    for (const text of [JSON.stringify(list.body), JSON.stringify(get.body)]) {
      assert.ok(text.includes(d.deviceName), 'the device is there');
      assert.ok(!text.includes(d.deviceSecret), 'no old secret');
      assert.ok(!text.includes(r.deviceSecret), 'no new secret');
      assert.ok(!/secret/i.test(text), `no secret field: ${text}`);
    }
  });

  it('thingauth device rotate-secret: --grace 1h, --grace 0, a bad --grace refused', async () => {
    const d = await newDevice();
    const cwd = makeTempDir('thingauth-cli-');
    const cli = (args: string[]) =>
      new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
        const env: Record<string, string> = {};
        for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
        execFile(process.execPath, [CLI, ...args, '--url', srv.api, '--token', srv.adminToken], { cwd, env }, (err, stdout, stderr) => {
          resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
        });
      });
    const before = Date.now();
    const hour = await cli(['device', 'rotate-secret', d.productKey, d.deviceName, '--grace', '1h', '--json']);
    assert.equal(hour.code, 0, hour.stderr);
    const out = JSON.parse(hour.stdout) as Rotated;
    keep('CLI rotated secret', out.deviceSecret);
    assert.match(out.deviceSecret, SECRET_RE);
    const expires = Date.parse(out.previousSecretExpiresAt!);
    assert.ok(expires >= before + 3_600_000 - 1000 && expires <= Date.now() + 3_600_000 + 1000, out.previousSecretExpiresAt!);
    await logsIn(d, d.deviceSecret);
    await logsIn(d, out.deviceSecret);

    const now = await cli(['device', 'rotate-secret', d.productKey, d.deviceName, '--grace', '0']);
    assert.equal(now.code, 0, now.stderr);
    assert.match(now.stdout, /the old secret no longer works/);
    const current = (await srv.request('GET', `/api/v1/products/${d.productKey}/devices/${d.deviceName}/secret`)).body.deviceSecret as string;
    keep('CLI rotated secret (grace 0)', current);
    assert.ok(now.stdout.includes(current), 'the text output shows the new secret');
    assert.equal(await refusedWith(d, out.deviceSecret), 5);

    const bad = await cli(['device', 'rotate-secret', d.productKey, d.deviceName, '--grace', '7 days']);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /--grace must be a number with an optional unit/);
    const row = await srv.running.ctx.store.getDevice(d.productKey, d.deviceName);
    assert.equal(row!.deviceSecret, current, 'a refused command changes nothing');
  });

  it('no log line or audit entry holds any secret; the previous secret is ciphertext at rest under the current key', async () => {
    const db = (srv.running.ctx.store as unknown as { db: Database.Database }).db;
    const previous = db.prepare('SELECT previous_device_secret AS v FROM devices WHERE previous_device_secret IS NOT NULL').all() as { v: string }[];
    assert.ok(previous.length >= 5, `previous secrets stored: ${previous.length}`);
    const keyId = srv.running.ctx.services.keyRotation.current().currentKeyId;
    for (const { v } of previous) assert.match(v, new RegExp(`^v2\\.${keyId}\\.[\\w-]+\\.[\\w-]+\\.[\\w-]+$`));

    assert.ok(secrets.size >= 20, `secrets collected: ${secrets.size}`);
    const leaks = (text: string) => [...secrets].filter(([value]) => text.includes(value)).map(([, what]) => what);
    assert.deepEqual(leaks(srv.logs.join('')), [], 'log lines');
    await srv.running.ctx.services.audit.flush();
    assert.deepEqual(leaks(JSON.stringify(db.prepare('SELECT * FROM audit').all())), [], 'audit rows');
    const file = sqlitePath(srv.running.ctx.config);
    const raw = Buffer.concat([fs.readFileSync(file), fs.existsSync(`${file}-wal`) ? fs.readFileSync(`${file}-wal`) : Buffer.alloc(0)]).toString('latin1');
    assert.deepEqual(leaks(raw), [], 'raw bytes of the database file and WAL');
    // Positive control: the search does find a secret where it is.
    const [aSecret, what] = [...secrets][0]!;
    assert.deepEqual(leaks(`x${aSecret}y`), [what]);
  });
});
