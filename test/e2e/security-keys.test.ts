/**
 * Master key rotation against a real server and SQLite file: the new key is persisted (0600)
 * and in force at once, every secret is re-encrypted while devices keep logging in, the old
 * key retires, and a restart reads everything with the new key alone. The environment-key
 * path refuses with instructions, then rotates with THINGAUTH_MASTER_KEY_PREVIOUS. An
 * interrupted rotation (keyring with an older key) is finished by running it again.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import type Database from 'better-sqlite3';
import { generateMasterKey, keyIdOf } from '../../src/core/secret-cipher.js';
import { connectClient, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';

function dbOf(srv: TestServer): Database.Database {
  return (srv.running.ctx.store as unknown as { db: Database.Database }).db;
}

/** The key id every encrypted value in the database is under, with counts. */
function keyIdsInDb(srv: TestServer): Record<string, number> {
  const db = dbOf(srv);
  const out: Record<string, number> = {};
  const values = [
    ...db.prepare('SELECT product_secret AS v FROM products').all(),
    ...db.prepare('SELECT device_secret AS v FROM devices UNION ALL SELECT device_token FROM devices WHERE device_token IS NOT NULL').all(),
    ...db.prepare('SELECT app_secret AS v FROM applications').all(),
  ] as { v: string }[];
  for (const { v } of values) {
    const id = v.split('.')[1]!;
    out[id] = (out[id] ?? 0) + 1;
  }
  return out;
}

async function seed(srv: TestServer, devices: number): Promise<{ productKey: string; productSecret: string; devices: DeviceCredentials[] }> {
  const p = await srv.request('POST', '/api/v1/products', { productName: 'RotationProduct' });
  assert.equal(p.status, 201);
  const out: DeviceCredentials[] = [];
  for (let left = devices; left > 0; left -= 1000) {
    const b = await srv.request('POST', `/api/v1/products/${p.body.productKey}/devices/batch`, { count: Math.min(1000, left) });
    assert.equal(b.status, 201, JSON.stringify(b.body));
    out.push(...b.body.devices);
  }
  return { productKey: p.body.productKey, productSecret: p.body.productSecret, devices: out };
}

async function login(srv: TestServer, d: DeviceCredentials): Promise<void> {
  const c = await connectClient(srv, 'mqtt', signedConnect(d));
  await c.endAsync();
}

async function waitRotation(srv: TestServer): Promise<any> {
  await srv.running.ctx.services.keyRotation.whenIdle();
  const s = await srv.request('GET', '/api/v1/keys');
  assert.equal(s.status, 200);
  return s.body;
}

describe('master key rotation (key in the data dir)', () => {
  it('re-encrypts everything under a new persisted key while logins keep working, and a restart needs only the new key', async () => {
    const dataDir = makeTempDir();
    let srv = await startTestServer({}, { dataDir });
    const keyFile = path.join(dataDir, 'master.key');
    const oldKey = fs.readFileSync(keyFile, 'utf8').trim();
    const oldId = keyIdOf(Buffer.from(oldKey, 'hex'));
    try {
      const { productKey, productSecret, devices } = await seed(srv, 2500);
      assert.equal((await srv.request('POST', '/api/v1/applications', { name: 'rot-app', productKeys: [productKey] })).status, 201);
      const before = keyIdsInDb(srv);
      assert.deepEqual(Object.keys(before), [oldId]);
      const total = before[oldId]!;

      const started = await srv.request('POST', '/api/v1/keys/rotate');
      assert.equal(started.status, 202, JSON.stringify(started.body));
      assert.equal(started.body.keySource, 'file');
      assert.notEqual(started.body.currentKeyId, oldId);
      assert.deepEqual(started.body.olderKeyIds, [oldId]);
      // Persisted before anything is written under it: new key first, old key kept, mode 0600.
      const during = fs.readFileSync(keyFile, 'utf8').trim().split('\n');
      assert.equal(during.length, 2);
      assert.equal(during[1], oldKey);
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      const newId = started.body.currentKeyId;
      assert.equal(keyIdOf(Buffer.from(during[0]!, 'hex')), newId);

      // A second rotation while one runs is refused.
      const again = await srv.request('POST', '/api/v1/keys/rotate');
      if (again.status !== 409) assert.equal((await waitRotation(srv)).state, 'done', 'only acceptable if the first had already finished');
      // Devices keep logging in during the rotation.
      await Promise.all(devices.slice(0, 20).map((d) => login(srv, d)));

      const done = await waitRotation(srv);
      assert.equal(done.state, 'done', JSON.stringify(done));
      assert.equal(done.rewritten, total);
      assert.deepEqual(done.olderKeyIds, []);
      assert.deepEqual(done.retiredKeyIds, [oldId]);
      assert.deepEqual(keyIdsInDb(srv), { [newId]: total });
      const after = fs.readFileSync(keyFile, 'utf8').trim().split('\n');
      assert.equal(after.length, 1);
      assert.notEqual(after[0], oldKey);
      assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600);
      await login(srv, devices[2499]!);

      const audit = await srv.request('GET', '/api/v1/audit?action=keys.rotate');
      assert.equal(audit.body.items[0].result, 'ok');
      assert.match(audit.body.items[0].reason, new RegExp(`re-encrypted ${total} secrets; retired ${oldId}`));

      await srv.stop();
      srv = await startTestServer({}, { dataDir });
      await login(srv, devices[0]!);
      await login(srv, devices[1234]!);
      const p = await srv.request('GET', `/api/v1/products/${productKey}/secret`);
      assert.equal(p.body.productSecret, productSecret);
    } finally {
      await srv.stop();
    }
  });

  it('finishes an interrupted rotation: a keyring with an older key reads old rows and the next rotation retires it', async () => {
    const dataDir = makeTempDir();
    let srv = await startTestServer({}, { dataDir });
    const keyFile = path.join(dataDir, 'master.key');
    try {
      const { devices } = await seed(srv, 30);
      await srv.stop();
      // As if a rotation crashed right after persisting its new key.
      const oldKey = fs.readFileSync(keyFile, 'utf8').trim();
      fs.writeFileSync(keyFile, `${generateMasterKey().toString('hex')}\n${oldKey}\n`, { mode: 0o600 });
      srv = await startTestServer({}, { dataDir });
      assert.ok(srv.logs.some((l) => l.includes('older master keys are present')));
      await login(srv, devices[0]!);
      const status = await srv.request('GET', '/api/v1/keys');
      assert.equal(status.body.olderKeyIds.length, 1);
      assert.equal((await srv.request('POST', '/api/v1/keys/rotate')).status, 202);
      const done = await waitRotation(srv);
      assert.equal(done.state, 'done');
      assert.equal(done.retiredKeyIds.length, 2);
      assert.equal(fs.readFileSync(keyFile, 'utf8').trim().split('\n').length, 1);
      assert.deepEqual(Object.keys(keyIdsInDb(srv)), [done.currentKeyId]);
      await login(srv, devices[29]!);
    } finally {
      await srv.stop();
    }
  });
});

describe('master key rotation (key from THINGAUTH_MASTER_KEY)', () => {
  it('refuses with instructions, then rotates with THINGAUTH_MASTER_KEY_PREVIOUS across a restart', async () => {
    const dataDir = makeTempDir();
    const k1 = generateMasterKey().toString('hex');
    const k2 = generateMasterKey().toString('hex');
    let srv = await startTestServer({ masterKey: k1 }, { dataDir });
    try {
      assert.equal(fs.existsSync(path.join(dataDir, 'master.key')), false, 'no key file when the key comes from the environment');
      const { devices } = await seed(srv, 10);
      const refused = await srv.request('POST', '/api/v1/keys/rotate');
      assert.equal(refused.status, 409);
      assert.match(refused.body.message, /THINGAUTH_MASTER_KEY_PREVIOUS/);
      assert.deepEqual(Object.keys(keyIdsInDb(srv)), [keyIdOf(Buffer.from(k1, 'hex'))]);
      await srv.stop();

      srv = await startTestServer({ masterKey: k2, masterKeyPrevious: k1 }, { dataDir });
      await login(srv, devices[0]!);
      const started = await srv.request('POST', '/api/v1/keys/rotate');
      assert.equal(started.status, 202);
      assert.equal(started.body.currentKeyId, keyIdOf(Buffer.from(k2, 'hex')));
      const done = await waitRotation(srv);
      assert.equal(done.state, 'done');
      assert.match(done.note, /remove THINGAUTH_MASTER_KEY_PREVIOUS/);
      assert.deepEqual(Object.keys(keyIdsInDb(srv)), [keyIdOf(Buffer.from(k2, 'hex'))]);
      await srv.stop();

      srv = await startTestServer({ masterKey: k2 }, { dataDir });
      await login(srv, devices[9]!);
    } finally {
      await srv.stop();
    }
  });
});
