/**
 * No secret leaks, checked end to end against a real server at log level debug: a
 * representative flow creates every kind of secret (ProductSecrets, DeviceSecrets, a
 * DeviceToken, an appSecret, management tokens, the bootstrap admin token) and sends every
 * kind of signature (MQTT CONNECT passwords good and bad, HTTPS /auth signs and the token it
 * returns, dynamic registration signs over HTTPS and MQTT, sub-device login signs). Then:
 * - every captured log line, and every audit entry, is searched for every one of them;
 * - the SQLite database is dumped (raw bytes of the db file and its WAL, and every row of
 *   every table via SQL) and searched the same way, and every column named like *secret*
 *   or *token* must hold ciphertext under the current key (or a SHA-256 for tokens).
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { sqlitePath } from '../../src/config.js';
import { connectClient, connectRefusal, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { attachByApi, connectGateway, loginParams, request, sessionTopic, setupGateway } from './gateway-helpers.js';
import { httpsPost, mqttRegistration, postRegister, registerForm, registrationConnect } from './registration-helpers.js';

describe('secrets never leak into logs, audit or the database', () => {
  let srv: TestServer;
  /** Every secret, token, signature and password the flow created or sent, with what it is. */
  const secrets = new Map<string, string>();
  /** A response that does carry secrets: the positive control for the search. */
  let secretBearing = '';
  const keep = (what: string, value: unknown) => {
    assert.equal(typeof value, 'string', `${what} should be a string`);
    assert.ok((value as string).length >= 8, `${what} is long enough to search for`);
    secrets.set(value as string, what);
  };

  before(async () => {
    srv = await startTestServer({ logLevel: 'debug' });
    keep('bootstrap admin token', srv.adminToken);
    keep('master key', fs.readFileSync(path.join(srv.dataDir, 'master.key'), 'utf8').trim());

    // Management tokens.
    const admin = await srv.request('POST', '/api/v1/tokens', { name: 'flow-admin', scope: 'admin' });
    keep('admin token', admin.body.token);
    const read = await srv.request('POST', '/api/v1/tokens', { name: 'flow-read', scope: 'read' });
    keep('read token', read.body.token);
    assert.equal((await srv.request('POST', '/api/v1/products', { productName: 'Denied' }, read.body.token)).status, 403);
    assert.equal((await srv.request('GET', '/api/v1/products', undefined, 'wrong-token-wrong-token-wrong')).status, 401);

    // A product with dynamic registration (both kinds), created with the admin token.
    const p = await srv.request('POST', '/api/v1/products', { productName: 'LeakCheck', dynamicRegistration: true, preRegistrationFree: true }, admin.body.token);
    assert.equal(p.status, 201);
    const pk = p.body.productKey as string;
    keep('ProductSecret', p.body.productSecret);
    const migrated = await srv.request('POST', '/api/v1/products', { productName: 'Migrated', productKey: 'a1MigratedPK', productSecret: 'MigratedProductSecret42' });
    assert.equal(migrated.status, 201);
    keep('migrated ProductSecret', 'MigratedProductSecret42');

    const batch = await srv.request('POST', `/api/v1/products/${pk}/devices/batch`, { deviceNames: ['leak-a', 'leak-b', 'leak-pre'] });
    assert.equal(batch.status, 201);
    secretBearing = JSON.stringify(batch.body);
    const devices = batch.body.devices as (DeviceCredentials & { iotId: string })[];
    for (const d of devices) keep(`DeviceSecret ${d.deviceName}`, d.deviceSecret);
    const secretRead = await srv.request('GET', `/api/v1/products/${pk}/devices/leak-a/secret`);
    assert.equal(secretRead.status, 200);

    // Application credential.
    const app = await srv.request('POST', '/api/v1/applications', { name: 'leak-app', productKeys: [pk] });
    assert.equal(app.status, 201);
    keep('appSecret', app.body.appSecret);

    // MQTT logins: good, wrong secret, wrong signature, application.
    const good = signedConnect(devices[0]!);
    keep('CONNECT password (good)', good.password);
    (await connectClient(srv, 'mqtt', good)).end(true);
    const wrongSecret = signedConnect({ ...devices[1]!, deviceSecret: 'NotTheSecretButLongEnough' });
    keep('CONNECT password (wrong secret)', wrongSecret.password);
    const refused = await connectRefusal(srv, 'mqtt', wrongSecret);
    assert.ok(refused.code !== undefined && refused.code !== 0, `refused with a CONNACK code, got ${refused.code}`);
    const tls = signedConnect({ ...devices[1]!, signMethod: 'hmacsha1' });
    keep('CONNECT password (sha1 over TLS)', tls.password);
    (await connectClient(srv, 'mqtts', tls)).end(true);
    const appLogin = { clientId: 'leak-app-client', username: `app:${app.body.appKey}`, password: app.body.appSecret };
    (await connectClient(srv, 'mqtts', appLogin)).end(true);
    await connectRefusal(srv, 'mqtts', { ...appLogin, password: 'WrongAppSecretWrongAppSecret' });
    keep('wrong app password', 'WrongAppSecretWrongAppSecret');

    // HTTPS device channel /auth: the sign and the token it hands out.
    const d0 = devices[0]!;
    const cid = `${pk}.${d0.deviceName}`;
    const sign = createHmac('sha256', d0.deviceSecret).update(`clientId${cid}deviceName${d0.deviceName}productKey${pk}timestamp1700000000000`).digest('hex');
    keep('/auth sign', sign);
    const auth = await httpsPost(srv, '/auth', JSON.stringify({ clientId: cid, productKey: pk, deviceName: d0.deviceName, timestamp: '1700000000000', signmethod: 'hmacsha256', sign }), 'application/json');
    assert.equal(auth.json.code, 0, auth.text);
    keep('HTTP channel token', auth.json.info.token);
    await httpsPost(srv, '/auth', JSON.stringify({ clientId: cid, productKey: pk, deviceName: d0.deviceName, signmethod: 'hmacsha256', sign: 'ab'.repeat(32) }), 'application/json');

    // Dynamic registration over HTTPS (pre-registered) and MQTT (regnwl), good and bad.
    const form = registerForm(pk, 'leak-pre', p.body.productSecret, 'random-12345');
    keep('HTTPS registration sign', new URLSearchParams(form).get('sign'));
    // A pre-registration-free product offers regnwl only (issue 11 item 10): pre-registration for this request.
    assert.equal((await srv.request('PATCH', `/api/v1/products/${pk}`, { preRegistrationFree: false })).status, 200);
    const reg = await postRegister(srv, form);
    assert.equal(reg.json.code, 200, reg.text);
    assert.equal((await srv.request('PATCH', `/api/v1/products/${pk}`, { preRegistrationFree: true })).status, 200);
    const badForm = registerForm(pk, 'leak-pre', 'WrongProductSecret99', 'random-6789');
    keep('HTTPS registration sign (bad)', new URLSearchParams(badForm).get('sign'));
    await postRegister(srv, badForm);
    const nwl = registrationConnect({ productKey: pk, productSecret: p.body.productSecret, deviceName: 'leak-nwl', authType: 'regnwl' });
    keep('regnwl CONNECT password', nwl.password);
    const nwlOut = await mqttRegistration(srv, 'mqtts', nwl);
    const cred = JSON.parse(nwlOut.messages[0]!.payload) as { clientId: string; deviceToken: string };
    keep('DeviceToken', cred.deviceToken);
    (await connectClient(srv, 'mqtts', { clientId: `${cred.clientId}|securemode=-2,authType=connwl|`, username: `leak-nwl&${pk}`, password: cred.deviceToken })).end(true);

    // Sub-device login through a gateway, good and bad.
    const g = await setupGateway(srv, { subCount: 2 });
    keep('gateway DeviceSecret', g.gateway.deviceSecret);
    keep('gateway product secret', g.subProductSecret);
    for (const s of g.subs) keep(`sub DeviceSecret ${s.deviceName}`, s.deviceSecret);
    await attachByApi(srv, g.gateway, g.subs);
    const gw = await connectGateway(srv, g.gateway);
    const okLogin = loginParams(g.subs[0]!);
    keep('sub-device login sign', okLogin.sign);
    const r1 = await request(gw, sessionTopic(g.gateway, 'login'), { params: okLogin });
    assert.equal(r1.body.code, 200, JSON.stringify(r1.body));
    const badLogin = loginParams(g.subs[1]!, { secret: 'WrongSubDeviceSecret77' });
    keep('sub-device login sign (bad)', badLogin.sign);
    const r2 = await request(gw, sessionTopic(g.gateway, 'login'), { params: badLogin });
    assert.notEqual(r2.body.code, 200);
    gw.end(true);

    // Server-side keys: the HTTP channel token key exists now (the /auth above made it).
    keep('HTTP channel token key', await srv.running.ctx.store.getSecretSetting('http-channel-token-key'));

    await srv.running.ctx.services.audit.flush();
  });

  after(async () => {
    await srv.stop();
  });

  function leaks(text: string): string[] {
    const found: string[] = [];
    for (const [value, what] of secrets) {
      if (text.includes(value) || text.toLowerCase().includes(value.toLowerCase())) found.push(what);
    }
    return found;
  }

  it('the flow produced logs and audit entries worth checking', async () => {
    assert.ok(secrets.size >= 25, `secrets collected: ${secrets.size}`);
    assert.ok(srv.logs.length >= 20, `log lines: ${srv.logs.length}`);
    const audit = (await srv.request('GET', '/api/v1/audit?limit=10000')).body.items as { action: string; result: string }[];
    const actions = new Set(audit.map((e) => `${e.action}:${e.result}`));
    for (const a of ['mqtt.connect.sign:allow', 'mqtt.connect.sign:deny', 'mqtt.connect.application:allow', 'mqtt.connect.application:deny', 'mqtt.connect.regnwl:allow', 'mqtt.connect.connwl:allow', 'http.auth:allow', 'http.auth:deny', 'register.https:ok', 'register.https:deny', 'session.sub.login:ok', 'session.sub.login:deny', 'api.post /products:ok', 'api.post /products:deny']) {
      assert.ok(actions.has(a), `audit has ${a}; got ${[...actions].join(', ')}`);
    }
  });

  it('the search finds secrets where they are (positive control)', () => {
    assert.deepEqual(leaks(secretBearing).sort(), ['DeviceSecret leak-a', 'DeviceSecret leak-b', 'DeviceSecret leak-pre']);
    assert.deepEqual(leaks(`x${srv.adminToken.toUpperCase()}y`), ['bootstrap admin token']);
  });

  it('no log line holds any secret, token, signature or password', () => {
    const all = srv.logs.join('');
    assert.deepEqual(leaks(all), []);
  });

  it('no audit entry holds any of them', () => {
    const db = (srv.running.ctx.store as unknown as { db: Database.Database }).db;
    const rows = db.prepare('SELECT * FROM audit').all();
    assert.ok(rows.length > 20);
    assert.deepEqual(leaks(JSON.stringify(rows)), []);
  });

  it('a dump of the database (raw db + WAL bytes, every row of every table) shows no plaintext secret', () => {
    const db = (srv.running.ctx.store as unknown as { db: Database.Database }).db;
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    assert.ok(tables.includes('devices') && tables.includes('management_tokens'));
    const dump: unknown[] = [];
    for (const t of tables) dump.push(t, db.prepare(`SELECT * FROM "${t}"`).all());
    assert.deepEqual(leaks(JSON.stringify(dump)), [], 'rows via SQL');

    const file = sqlitePath(srv.running.ctx.config);
    const raw = Buffer.concat([fs.readFileSync(file), fs.existsSync(`${file}-wal`) ? fs.readFileSync(`${file}-wal`) : Buffer.alloc(0)]).toString('latin1');
    assert.ok(raw.length > 4096);
    assert.deepEqual(leaks(raw), [], 'raw bytes of the database file and WAL');
  });

  it('every column named like *secret* or *token* holds ciphertext under the current key (token hashes: SHA-256)', () => {
    const db = (srv.running.ctx.store as unknown as { db: Database.Database }).db;
    const keyId = srv.running.ctx.services.keyRotation.current().currentKeyId;
    const tables = (db.prepare("SELECT name FROM sqlite_master WHERE type = 'table'").all() as { name: string }[]).map((t) => t.name);
    let checked = 0;
    for (const t of tables) {
      const cols = (db.prepare(`PRAGMA table_info("${t}")`).all() as { name: string }[]).map((c) => c.name).filter((c) => /secret|token/i.test(c) || (/secret/i.test(t) && c === 'value'));
      for (const c of cols) {
        for (const { v } of db.prepare(`SELECT "${c}" AS v FROM "${t}" WHERE "${c}" IS NOT NULL`).all() as { v: string }[]) {
          checked++;
          if (c === 'token_hash') assert.match(v, /^[0-9a-f]{64}$/, `${t}.${c}`);
          else assert.match(v, new RegExp(`^v2\\.${keyId}\\.[\\w-]+\\.[\\w-]+\\.[\\w-]+$`), `${t}.${c} must be ciphertext`);
        }
      }
    }
    assert.ok(checked >= 12, `values checked: ${checked}`);
  });
});
