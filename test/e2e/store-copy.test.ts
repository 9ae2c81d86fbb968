/**
 * `thingauth store copy` as an operator runs it: the CLI in a child process copies a real
 * SQLite data dir into a second SQLite file under a DIFFERENT master key; a server started on
 * the copy lets every device log in with its original secret (the rotated one's old secret too,
 * the regnwl slot with its token), the application log in, the read token read, and shows the
 * topology. Running the copy again reports every record identical; a copy killed mid-way
 * resumes by running it again and ends with matching counts.
 */
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { generateMasterKey, KeyringCipher } from '../../src/core/secret-cipher.js';
import { SqliteStore } from '../../src/store/sqlite/sqlite-store.js';
import { createHmac } from 'node:crypto';
import { deviceHttpsPost } from '../helpers/https.js';
import { connectClient, connectRefusal, endClient, eventually, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { startPrivatePostgres, type PrivatePostgres } from '../helpers/postgres.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { mqttRegistration, registrationConnect } from './registration-helpers.js';

const CLI = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../src/cli/main.js');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** The CLI with no THINGAUTH_* variables from this process (the keys come from the flags). */
function cli(args: string[]): Promise<Run> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('THINGAUTH_') && v !== undefined) env[k] = v;
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { env, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

async function copyJson(args: string[]): Promise<any> {
  const r = await cli(['store', 'copy', ...args, '--json']);
  assert.equal(r.code, 0, `store copy failed (${r.code}): ${r.stderr}\n${r.stdout}`);
  return JSON.parse(r.stdout);
}

interface SourceFixture {
  srcDir: string;
  devices: DeviceCredentials[];
  rotated: { productKey: string; deviceName: string; oldSecret: string; newSecret: string };
  disabled: DeviceCredentials;
  regnwl: { productKey: string; deviceName: string; clientId: string; deviceToken: string };
  gateway: DeviceCredentials;
  subs: DeviceCredentials[];
  app: { appKey: string; appSecret: string };
  readToken: string;
  /** An HTTPS-channel token issued by the source server: valid on the copy only if the channel key came along. */
  channelToken: string;
}

const PS = 'PsStoreCopy12345';

/**
 * A real data dir written by a real server: devices (one with a rotated secret in its grace,
 * one disabled), a regnwl device with an activated slot, a gateway with two sub-devices (one
 * registered through it), an application, a read token, an HTTP-channel token, logins and a
 * refusal (activation, lastAuthError, audit).
 */
async function populateSource(): Promise<SourceFixture> {
  const devices: DeviceCredentials[] = [];
  let rotated!: SourceFixture['rotated'];
  let disabled!: DeviceCredentials;
  let regnwl!: SourceFixture['regnwl'];
  let gateway!: DeviceCredentials;
  let subs!: DeviceCredentials[];
  let app!: SourceFixture['app'];
  let readToken!: string;
  let channelToken!: string;
    const src: TestServer = await startTestServer({ mqttPendingPerSource: '0', registrationRatePerSourcePerSecond: '0' });
  try {
    const { registry, topology, applications, tokens } = src.running.ctx.services;
    const pk = (await registry.createProduct({ productName: 'copy plugs', dynamicRegistration: true, preRegistrationFree: true, productSecret: PS })).productKey;
    for (const d of await registry.createDevices(pk, { count: 4 })) devices.push({ productKey: pk, deviceName: d.deviceName, deviceSecret: d.deviceSecret });
    // A rotated secret in its grace: both secrets must work on the copy.
    const r = await src.request('POST', `/api/v1/products/${pk}/devices/${devices[0]!.deviceName}/secret/rotate`, { graceSeconds: 3600 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    rotated = { productKey: pk, deviceName: devices[0]!.deviceName, oldSecret: devices[0]!.deviceSecret, newSecret: r.body.deviceSecret };
    devices[0]!.deviceSecret = r.body.deviceSecret;
    // A disabled device with a nickname: refused on the copy too.
    const [off] = await registry.createDevices(pk, { count: 1, nickname: 'off' });
    disabled = { productKey: pk, deviceName: off!.deviceName, deviceSecret: off!.deviceSecret };
    assert.equal((await src.request('POST', `/api/v1/products/${pk}/devices/${disabled.deviceName}/disable`)).status, 200);
    // A regnwl device with an activated slot.
    const reg = await mqttRegistration(src, 'mqtts', registrationConnect({ productKey: pk, productSecret: PS, deviceName: 'regnwl-dev', authType: 'regnwl', clientId: 'phys-1' }), { timeoutMs: 60_000 });
    assert.equal(reg.accepted, true, `regnwl refused with ${reg.code}`);
    const body = JSON.parse(reg.messages[0]!.payload);
    regnwl = { productKey: pk, deviceName: 'regnwl-dev', clientId: body.clientId, deviceToken: body.deviceToken };
    await endClient(await connectClient(src, 'mqtts', { clientId: `${regnwl.clientId}|securemode=-2,authType=connwl|`, username: `regnwl-dev&${pk}`, password: regnwl.deviceToken }));
    // A gateway with two sub-devices; the first also registered through it.
    const gpk = (await registry.createProduct({ productName: 'copy gateways', nodeType: 'GATEWAY' })).productKey;
    const spk = (await registry.createProduct({ productName: 'copy subs', nodeType: 'SUB_DEVICE' })).productKey;
    const [g] = await registry.createDevices(gpk, { count: 1 });
    gateway = { productKey: gpk, deviceName: g!.deviceName, deviceSecret: g!.deviceSecret };
    subs = (await registry.createDevices(spk, { count: 2 })).map((d) => ({ productKey: spk, deviceName: d.deviceName, deviceSecret: d.deviceSecret, iotId: d.iotId }));
    await topology.addByOperator(gpk, g!.deviceName, subs.map((s) => ({ productKey: s.productKey, deviceName: s.deviceName })));
    assert.equal(await src.running.ctx.store.claimSubDeviceRegistration(subs[0]!.iotId!, g!.iotId), true);
    const a = await applications.create({ name: 'backend', productKeys: [pk] });
    app = { appKey: a.appKey, appSecret: a.appSecret };
    readToken = (await tokens.create('ci', 'read')).token;
    const d2 = devices[2]!;
    const sign = createHmac('sha256', d2.deviceSecret).update(`clientId${pk}.${d2.deviceName}deviceName${d2.deviceName}productKey${pk}`).digest('hex');
    const auth = await deviceHttpsPost(src, '/auth', JSON.stringify({ clientId: `${pk}.${d2.deviceName}`, signmethod: 'hmacsha256', sign, productKey: pk, deviceName: d2.deviceName }), { 'content-type': 'application/json' });
    assert.equal(auth.json?.code, 0, auth.text);
    channelToken = auth.json.info.token;
    // Logins and a refusal: activation, lastAuthError and audit entries to copy.
    for (const d of devices) await endClient(await connectClient(src, 'mqtt', signedConnect(d)));
    assert.equal((await connectRefusal(src, 'mqtt', signedConnect({ ...devices[1]!, deviceSecret: 'WrongSecret00000' }))).code, 5);
    await src.settle();
  } finally {
    await src.stop();
  }
  return { srcDir: src.dataDir, devices, rotated, disabled, regnwl, gateway, subs, app, readToken, channelToken };
}

describe('store copy: a populated data dir to another file under another master key', () => {
  let srcDir: string;
  let dstDir: string;
  const dstKey = generateMasterKey().toString('hex');
  let dstUrl: string;
  let devices: DeviceCredentials[];
  let rotated: { productKey: string; deviceName: string; oldSecret: string; newSecret: string };
  let disabled: DeviceCredentials;
  let regnwl: { productKey: string; deviceName: string; clientId: string; deviceToken: string };
  let gateway: DeviceCredentials;
  let subs: DeviceCredentials[];
  let app: { appKey: string; appSecret: string };
  let readToken: string;
  let first: any;
  /** An HTTPS-channel token issued by the source server: valid on the copy only if the channel key came along. */
  let channelToken: string;

  before(async () => {
    ({ srcDir, devices, rotated, disabled, regnwl, gateway, subs, app, readToken, channelToken } = await populateSource());
    dstDir = makeTempDir('thingauth-copy-dst-');
    dstUrl = `sqlite:${path.join(dstDir, 'thingauth.db')}`;
    first = await copyJson(['--from', `sqlite:${path.join(srcDir, 'thingauth.db')}`, '--from-data-dir', srcDir, '--to', dstUrl, '--to-master-key', dstKey]);
  });

  it('copies every table and verifies counts on both sides', () => {
    assert.equal(first.verified, true, JSON.stringify(first.mismatches));
    const t = first.tables;
    assert.equal(t.products.source, 3);
    assert.equal(t.devices.source, 9);
    assert.equal(t.device_tokens.source, 1);
    assert.equal(t.topology.source, 2);
    assert.equal(t.applications.source, 1);
    assert.equal(t.management_tokens.source, 1);
    assert.equal(t.secret_settings.source, 1, 'the HTTP channel token key');
    assert.ok(t.audit.source > 5, JSON.stringify(t.audit));
    for (const [name, c] of Object.entries<any>(t)) {
      assert.equal(c.destination, c.source, name);
      assert.equal(c.created + c.updated + c.identical, c.source, name);
      assert.equal(c.identical, 0, `${name}: the destination was empty`);
    }
  });

  it('stores no secret in plaintext in the destination file', () => {
    const bytes = fs.readFileSync(path.join(dstDir, 'thingauth.db')).toString('latin1') + (fs.existsSync(path.join(dstDir, 'thingauth.db-wal')) ? fs.readFileSync(path.join(dstDir, 'thingauth.db-wal')).toString('latin1') : '');
    for (const s of [PS, rotated.oldSecret, rotated.newSecret, regnwl.deviceToken, app.appSecret, ...devices.map((d) => d.deviceSecret)]) assert.ok(!bytes.includes(s));
  });

  it('running it again copies nothing and reports every record identical', async () => {
    const again = await copyJson(['--from', `sqlite:${path.join(srcDir, 'thingauth.db')}`, '--from-data-dir', srcDir, '--to', dstUrl, '--to-master-key', dstKey]);
    assert.equal(again.verified, true, JSON.stringify(again.mismatches));
    for (const [name, c] of Object.entries<any>(again.tables)) {
      assert.equal(c.created, 0, name);
      assert.equal(c.updated, 0, name);
      assert.equal(c.identical, c.source, name);
    }
  });

  it('a destination that drifted is reported by --verify-only (exit 1) and brought back by the copy', async () => {
    const dst = new SqliteStore({ filename: path.join(dstDir, 'thingauth.db'), cipher: new KeyringCipher(Buffer.from(dstKey, 'hex')) });
    try {
      await dst.updateProduct(gateway.productKey, { productName: 'renamed' }, new Date().toISOString());
      const d1 = (await dst.getDevice(devices[1]!.productKey, devices[1]!.deviceName))!;
      await dst.updateDevice(d1.iotId, { deviceSecret: 'DriftedSecret0000', nickname: 'drifted' });
      const sub1 = (await dst.getDevice(subs[1]!.productKey, subs[1]!.deviceName))!;
      await dst.detachSubDevices(sub1.gatewayIotId!, [sub1.iotId]);
      await dst.deleteApplication(app.appKey);
    } finally {
      await dst.close();
    }
    const from = ['--from', `sqlite:${path.join(srcDir, 'thingauth.db')}`, '--from-data-dir', srcDir, '--to', dstUrl, '--to-master-key', dstKey];
    const check = await cli(['store', 'copy', ...from, '--verify-only', '--json']);
    assert.equal(check.code, 1, check.stderr);
    const report = JSON.parse(check.stdout);
    assert.equal(report.verified, false);
    const keys = report.mismatches.map((m: any) => `${m.table} ${m.key ?? ''}`);
    for (const k of [`products ${gateway.productKey}`, `devices ${devices[1]!.productKey}/${devices[1]!.deviceName}`, `topology ${subs[1]!.productKey}/${subs[1]!.deviceName}`, `applications ${app.appKey}`]) {
      assert.ok(keys.includes(k), `${k} reported: ${JSON.stringify(keys)}`);
    }
    const fixed = await copyJson(from);
    assert.equal(fixed.verified, true, JSON.stringify(fixed.mismatches));
    assert.equal(fixed.tables.products.updated, 1);
    assert.equal(fixed.tables.devices.updated, 1);
    assert.equal(fixed.tables.topology.created, 1);
    assert.equal(fixed.tables.applications.created, 1);
  });

  it('the wrong destination key is refused with a clear error, not a wrong copy', async () => {
    const r = await cli(['store', 'copy', '--from', `sqlite:${path.join(srcDir, 'thingauth.db')}`, '--from-data-dir', srcDir, '--to', dstUrl, '--to-master-key', generateMasterKey().toString('hex'), '--json']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^thingauth: .*stored secret.*is the master key of that side right\?/);
    assert.ok(!r.stderr.includes(PS));
  });

  it('a server on the copy (other master key) lets every device, the application and the read token in, topology intact', async () => {
    const dst = await startTestServer({ databaseUrl: dstUrl, masterKey: dstKey });
    try {
      for (const d of [...devices, gateway, ...subs]) await endClient(await connectClient(dst, 'mqtt', signedConnect(d)));
      // The secret before the rotation, still in its grace.
      await endClient(await connectClient(dst, 'mqtt', signedConnect({ productKey: rotated.productKey, deviceName: rotated.deviceName, deviceSecret: rotated.oldSecret })));
      assert.equal((await connectRefusal(dst, 'mqtt', signedConnect(disabled))).code, 5, 'the disabled device stays disabled');
      await endClient(await connectClient(dst, 'mqtts', { clientId: `${regnwl.clientId}|securemode=-2,authType=connwl|`, username: `${regnwl.deviceName}&${regnwl.productKey}`, password: regnwl.deviceToken }));
      await endClient(await connectClient(dst, 'mqtts', { clientId: 'backend-1', username: `app:${app.appKey}`, password: app.appSecret }));

      const d2 = devices[2]!;
      const pub = await deviceHttpsPost(dst, `/topic/${d2.productKey}/${d2.deviceName}/user/update`, '{}', { 'content-type': 'application/octet-stream', password: channelToken });
      assert.equal(pub.json?.code, 0, `a channel token issued before the move still works: ${pub.text}`);
      assert.equal((await dst.request('GET', '/api/v1/products', undefined, readToken)).status, 200);
      assert.equal((await dst.request('POST', '/api/v1/products', { productName: 'x' }, readToken)).status, 403);
      const topo = await dst.request('GET', `/api/v1/products/${gateway.productKey}/devices/${gateway.deviceName}/sub-devices`);
      assert.equal(topo.status, 200);
      assert.deepEqual(topo.body.items.map((d: any) => d.deviceName).sort(), subs.map((s) => s.deviceName).sort());
      const sub0 = await dst.running.ctx.store.getDevice(subs[0]!.productKey, subs[0]!.deviceName);
      assert.equal(sub0?.registeredByGatewayIotId, sub0?.gatewayIotId, 'the registrar binding came along');
      const slots = await dst.request('GET', `/api/v1/products/${regnwl.productKey}/devices/${regnwl.deviceName}/slots`);
      assert.equal(slots.body.items?.[0]?.activatedAt !== null, true, JSON.stringify(slots.body));
      const dis = await dst.request('GET', `/api/v1/products/${disabled.productKey}/devices/${disabled.deviceName}`);
      assert.equal(dis.body.nickname, 'off');
      assert.equal(dis.body.status, 'DISABLE');
      const failed = await dst.request('GET', `/api/v1/products/${devices[1]!.productKey}/devices/${devices[1]!.deviceName}`);
      assert.ok(failed.body.lastAuthError, 'lastAuthError came along');
    } finally {
      await dst.stop();
    }
  });
});

describe('store copy: SQLite to PostgreSQL, then a server on PostgreSQL lets every device in', () => {
  let pgServer: PrivatePostgres | undefined;
  let skip: string | undefined;
  let fx: SourceFixture;
  let dstUrl: string;
  const dstKey = generateMasterKey().toString('hex');

  before(async () => {
    const started = await startPrivatePostgres();
    if ('skip' in started) {
      skip = started.skip;
      return;
    }
    pgServer = started.server;
    dstUrl = await pgServer.createDatabase('copy_dst');
    fx = await populateSource();
  });
  after(async () => {
    await pgServer?.stop();
  });

  it('copies every table, verifies, stores no plaintext secret; a second run is identical; a server on it serves the fleet', async (t) => {
    if (skip) return t.skip(skip);
    const from = ['--from', `sqlite:${path.join(fx.srcDir, 'thingauth.db')}`, '--from-data-dir', fx.srcDir, '--to', dstUrl, '--to-master-key', dstKey];
    const first = await copyJson(from);
    assert.equal(first.verified, true, JSON.stringify(first.mismatches));
    for (const [name, c] of Object.entries<any>(first.tables)) assert.equal(c.destination, c.source, name);
    assert.equal(first.tables.devices.source, 9);
    const dump = pgServer!.dump('copy_dst');
    for (const s of [PS, fx.rotated.oldSecret, fx.regnwl.deviceToken, fx.app.appSecret, ...fx.devices.map((d) => d.deviceSecret)]) assert.ok(!dump.includes(s), 'a secret in the pg_dump');
    const again = await copyJson(from);
    for (const [name, c] of Object.entries<any>(again.tables)) assert.equal(c.identical, c.source, name);

    const dst = await startTestServer({ databaseUrl: dstUrl, masterKey: dstKey });
    try {
      for (const d of [...fx.devices, fx.gateway, ...fx.subs]) await endClient(await connectClient(dst, 'mqtt', signedConnect(d)));
      await endClient(await connectClient(dst, 'mqtt', signedConnect({ productKey: fx.rotated.productKey, deviceName: fx.rotated.deviceName, deviceSecret: fx.rotated.oldSecret })));
      assert.equal((await connectRefusal(dst, 'mqtt', signedConnect(fx.disabled))).code, 5, 'the disabled device stays disabled');
      await endClient(await connectClient(dst, 'mqtts', { clientId: `${fx.regnwl.clientId}|securemode=-2,authType=connwl|`, username: `${fx.regnwl.deviceName}&${fx.regnwl.productKey}`, password: fx.regnwl.deviceToken }));
      await endClient(await connectClient(dst, 'mqtts', { clientId: 'backend-pg', username: `app:${fx.app.appKey}`, password: fx.app.appSecret }));
      assert.equal((await dst.request('GET', '/api/v1/products', undefined, fx.readToken)).status, 200);
      const topo = await dst.request('GET', `/api/v1/products/${fx.gateway.productKey}/devices/${fx.gateway.deviceName}/sub-devices`);
      assert.deepEqual(topo.body.items.map((d: any) => d.deviceName).sort(), fx.subs.map((s) => s.deviceName).sort());
      // The logins above were audited on top of the copied entries: new ids did not collide with
      // copied ones (putAuditEntries moved the id sequence past them).
      await dst.settle();
      const audit = await dst.running.ctx.store.queryAudit({ limit: 10_000 });
      assert.ok(audit.length > first.tables.audit.source, `${audit.length} audit entries after the logins, ${first.tables.audit.source} copied`);
      assert.equal(new Set(audit.map((e) => e.id)).size, audit.length);
    } finally {
      await dst.stop();
    }
  });
});

describe('store copy: interrupted on a larger fleet, resumed by running it again', () => {
  it('20,000 devices: killed mid-way, the second run finishes and counts match', async (t) => {
    const srcDir = makeTempDir('thingauth-copy-big-');
    const dstDir = makeTempDir('thingauth-copy-big-dst-');
    const srcKey = generateMasterKey();
    const dstKey = generateMasterKey().toString('hex');
    const srcFile = path.join(srcDir, 'thingauth.db');
    const dstFile = path.join(dstDir, 'thingauth.db');
    const store = new SqliteStore({ filename: srcFile, cipher: new KeyringCipher(srcKey), synchronous: 'NORMAL' });
    await store.migrate();
    const at = new Date().toISOString();
    await store.createProduct({ productKey: 'a1CopyBig', productName: 'big', productSecret: 'BigProductSecret', nodeType: 'DEVICE', dynamicRegistration: false, preRegistrationFree: false, requireTls: false, replayProtection: false, deviceLimit: null, description: '', createdAt: at, updatedAt: at });
    for (let b = 0; b < 4; b++) {
      await store.createDevices('a1CopyBig', Array.from({ length: 5000 }, (_, i) => ({ iotId: `big-${b}-${i}`, deviceName: `big-${String(b * 5000 + i).padStart(6, '0')}`, deviceSecret: `BigSecret${b}x${i}`.padEnd(32, 'z') })), 1_000_000, at);
    }
    await store.close();

    const args = [CLI, 'store', 'copy', '--from', `sqlite:${srcFile}`, '--from-master-key', srcKey.toString('hex'), '--to', `sqlite:${dstFile}`, '--to-master-key', dstKey, '--batch-size', '200', '--json'];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    /** Devices committed in the destination, read through a second connection. */
    const committed = (): number => {
      try {
        const db = new Database(dstFile, { readonly: true, fileMustExist: true });
        try {
          return (db.prepare('SELECT COUNT(*) AS n FROM devices').get() as { n: number }).n;
        } finally {
          db.close();
        }
      } catch {
        return 0;
      }
    };
    const atKill = await eventually(() => {
      const n = committed();
      return n >= 1000 ? n : false;
    }, 120_000);
    child.kill('SIGKILL');
    assert.equal(await exited, null, 'killed, not finished');
    const left = committed();
    assert.ok(left < 20_000, `the first run was interrupted part-way (${left} devices in the destination)`);
    assert.ok(left >= atKill);
    t.diagnostic(`killed when ${atKill} devices were committed; ${left} were when it died`);

    const r = await copyJson(['--from', `sqlite:${srcFile}`, '--from-master-key', srcKey.toString('hex'), '--to', `sqlite:${dstFile}`, '--to-master-key', dstKey, '--batch-size', '200']);
    assert.equal(r.verified, true, JSON.stringify(r.mismatches));
    assert.equal(r.tables.devices.source, 20_000);
    assert.equal(r.tables.devices.destination, 20_000);
    assert.equal(r.tables.devices.identical, left, 'what the first run committed is not copied twice');
    assert.equal(r.tables.devices.created, 20_000 - left);
    assert.equal(r.tables.products.identical, 1);
  });
});
