/**
 * Secrets at rest bound to their place, against a real server and SQLite file (issue 11
 * item 14). Someone who can write the database file but has no master key:
 * - copies device A's encrypted DeviceSecret into device B's row: a login as B (with A's secret
 *   or B's own) is refused with CONNACK 3 "server unavailable", an error-level integrity line
 *   names the row (no secret, no stack), the management API answers a bare 500, and the server
 *   keeps serving A;
 * - writes a v1 value (the form before the migration, e.g. from an old backup) back into a row:
 *   refused like any tampered value, also after a restart (the migration runs once).
 * A v1 database as the previous version left it (schema migrations 1-5, v1 ciphertexts written
 * the old way by test/helpers/v1-cipher.ts) is migrated on start and every device still logs
 * in; a v1 value that does not decrypt stops the start and leaves the file untouched.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { generateMasterKey } from '../../src/core/secret-cipher.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { startThingAuth } from '../../src/main.js';
import { SQLITE_MIGRATIONS } from '../../src/store/sqlite/migrations.js';
import { connectClient, connectRefusal, createDevice, eventually, signedConnect, type DeviceCredentials } from '../helpers/mqtt.js';
import { makeTempDir, startTestServer, type TestServer } from '../helpers/server.js';
import { encryptV1 } from '../helpers/v1-cipher.js';

function dbFile(srv: TestServer): string {
  return (srv.running.ctx.store as unknown as { db: Database.Database }).db.name;
}

/** A second connection to the file: someone with write access, not the server. */
function tamper(file: string, fn: (db: Database.Database) => void): void {
  const db = new Database(file);
  try {
    fn(db);
  } finally {
    db.close();
  }
}

async function login(srv: TestServer, d: DeviceCredentials): Promise<void> {
  const c = await connectClient(srv, 'mqtt', signedConnect(d));
  await c.endAsync();
}

const SECRET_COLUMNS: [string, string][] = [
  ['products', 'product_secret'],
  ['devices', 'device_secret'],
  ['devices', 'device_token'],
  ['devices', 'previous_device_secret'],
  ['device_tokens', 'device_token'],
  ['applications', 'app_secret'],
  ['secret_settings', 'value'],
];

function storedForms(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true });
  try {
    const out: Record<string, number> = {};
    for (const [t, c] of SECRET_COLUMNS) {
      // device_tokens arrives with migration 7: absent from a data dir of the previous versions.
      if (!db.prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?").get(t)) continue;
      for (const { v } of db.prepare(`SELECT ${c} AS v FROM ${t} WHERE ${c} IS NOT NULL`).all() as { v: string }[]) {
        const form = v.split('.')[0]!;
        out[form] = (out[form] ?? 0) + 1;
      }
    }
    return out;
  } finally {
    db.close();
  }
}

interface V1Db {
  dataDir: string;
  productKey: string;
  devices: (DeviceCredentials & { iotId: string })[];
  key: Buffer;
}

/**
 * A data dir as the previous version left it: master.key, and thingauth.db with schema
 * migrations 1-5 and every secret in the v1 form (no associated data).
 */
function buildV1DataDir(n: number, opts: { corruptDevice?: number } = {}): V1Db {
  const dataDir = makeTempDir('thingauth-v1-');
  const key = generateMasterKey();
  fs.writeFileSync(path.join(dataDir, 'master.key'), key.toString('hex') + '\n', { mode: 0o600 });
  const db = new Database(path.join(dataDir, 'thingauth.db'));
  const at = '2024-01-01T00:00:00.000Z';
  const productKey = 'a1V1Legacy01';
  const devices: V1Db['devices'] = [];
  try {
    db.pragma('journal_mode = WAL');
    db.exec('CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)');
    for (const m of SQLITE_MIGRATIONS.filter((m) => m.version <= 5)) {
      db.exec(m.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(m.version, m.name, at);
    }
    db.prepare(`INSERT INTO products (product_key, product_name, product_secret, node_type, created_at, updated_at) VALUES (?, 'legacy', ?, 'DEVICE', ?, ?)`)
      .run(productKey, encryptV1(key, 'LegacyProductSecret1'), at, at);
    db.prepare('INSERT INTO product_counts (product_key, devices) VALUES (?, ?)').run(productKey, n);
    const insert = db.prepare(`INSERT INTO devices (iot_id, product_key, device_name, device_secret, created_at, client_id, device_token, previous_device_secret, previous_expires_at)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    for (let i = 0; i < n; i++) {
      const d = { iotId: `iotLegacy${i}`, productKey, deviceName: `legacy${i}`, deviceSecret: `LegacyDeviceSecret${String(i).padStart(14, '0')}` };
      let stored = encryptV1(key, d.deviceSecret);
      if (i === opts.corruptDevice) stored = stored.slice(0, -4) + (stored.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      // Every third device holds a token, device 1 is in a rotation grace with a previous secret.
      const token = i % 3 === 0 ? encryptV1(key, `LegacyToken${i}`) : null;
      const previous = i === 1 ? encryptV1(key, 'LegacyPreviousSecret0000000001') : null;
      insert.run(d.iotId, productKey, d.deviceName, stored, at, token ? `cid${i}` : null, token, previous, previous ? '2999-01-01T00:00:00.000Z' : null);
      devices.push(d);
    }
    db.prepare('INSERT INTO applications (app_key, app_secret, name, product_keys, created_at) VALUES (?, ?, ?, ?, ?)')
      .run('appLegacy', encryptV1(key, 'LegacyAppSecret001'), 'legacy app', JSON.stringify([productKey]), at);
    db.prepare('INSERT INTO secret_settings (key, value) VALUES (?, ?)').run('http-channel-token-key', encryptV1(key, 'ab'.repeat(32)));
  } finally {
    db.close();
  }
  return { dataDir, productKey, devices, key };
}

describe('secrets at rest are bound to their row (issue 11 item 14)', () => {
  it("device A's DeviceSecret copied into device B's row: B's login is refused and logged as an integrity failure, A keeps logging in", async () => {
    const srv = await startTestServer();
    try {
      const a = await createDevice(srv);
      const b = await createDevice(srv, { productKey: a.productKey });
      tamper(dbFile(srv), (db) => {
        db.prepare('UPDATE devices SET device_secret = (SELECT device_secret FROM devices WHERE iot_id = ?) WHERE iot_id = ?').run(a.iotId, b.iotId);
      });
      // Without the binding this login, signed with A's secret, is accepted as B.
      const swapped = await connectRefusal(srv, 'mqtt', signedConnect({ ...b, deviceSecret: a.deviceSecret }));
      assert.equal(swapped.code, 3, 'server unavailable: the stored secret cannot be trusted');
      const own = await connectRefusal(srv, 'mqtt', signedConnect(b));
      assert.equal(own.code, 3);

      const api = await srv.request('GET', `/api/v1/products/${a.productKey}/devices/${b.deviceName}`);
      assert.equal(api.status, 500);
      assert.deepEqual(api.body, { code: 'INTERNAL', message: 'internal error; see the server log' });

      const integrity = srv.logs.filter((l) => /"level":50/.test(l) && l.includes('integrity check'));
      assert.ok(integrity.length >= 2, 'each refused login and the API read log an integrity failure');
      assert.ok(integrity.some((l) => l.includes('devices.device_secret') && l.includes(b.deviceName) && l.includes(b.iotId)), 'the line names the row');
      for (const l of integrity) assert.doesNotMatch(l, /\\n\s+at /, 'no stack trace');
      for (const l of srv.logs) {
        assert.ok(!l.includes(a.deviceSecret) && !l.includes(b.deviceSecret), 'no secret in any log line');
      }

      await login(srv, a); // the server still serves the honest device
    } finally {
      await srv.stop();
    }
  });

  it('a v1 database from the previous version is migrated on start: every secret becomes v2, every device logs in, secrets read back unchanged', async () => {
    const v1 = buildV1DataDir(30);
    const file = path.join(v1.dataDir, 'thingauth.db');
    assert.deepEqual(storedForms(file), { v1: 1 + 30 + 10 + 1 + 1 + 1 });
    let srv = await startTestServer({}, { dataDir: v1.dataDir });
    try {
      assert.deepEqual(storedForms(file), { v2: 1 + 30 + 10 + 1 + 1 + 1 }, 'no v1 value is left');
      for (const d of v1.devices) await login(srv, d);
      await login(srv, { ...v1.devices[1]!, deviceSecret: 'LegacyPreviousSecret0000000001' }); // the rotation grace survives
      const store = srv.running.ctx.store;
      assert.equal((await store.getProduct(v1.productKey))!.productSecret, 'LegacyProductSecret1');
      // Migration 7 moved each regnwl credential into slot 1 (unactivated, as the device was),
      // re-bound to its new place; devices.client_id/device_token are emptied.
      const slots = await store.getLiveDeviceTokens('iotLegacy3');
      assert.deepEqual(slots.map((s) => [s.slot, s.clientId, s.deviceToken, s.activatedAt]), [[1, 'cid3', 'LegacyToken3', null]]);
      const leftover = (srv.running.ctx.store as unknown as { db: Database.Database }).db
        .prepare('SELECT COUNT(*) AS n FROM devices WHERE client_id IS NOT NULL OR device_token IS NOT NULL')
        .get() as { n: number };
      assert.equal(leftover.n, 0);
      // ...and the device logs in with it (connwl), which activates slot 1.
      await (await connectClient(srv, 'mqtts', { clientId: 'cid3|securemode=-2,authType=connwl|', username: `legacy3&${v1.productKey}`, password: 'LegacyToken3' })).endAsync();
      await eventually(async () => (await store.listDeviceTokenSlots('iotLegacy3'))[0]?.activatedAt);
      assert.equal((await store.getApplication('appLegacy'))!.appSecret, 'LegacyAppSecret001');
      assert.equal(await store.getSecretSetting('http-channel-token-key'), 'ab'.repeat(32));

      // A v1 value written back later (an old backup's row) is not migrated again at the next
      // start, and is refused (the restart also empties the login cache, which holds the
      // record read before the write).
      tamper(file, (db) => db.prepare('UPDATE devices SET device_secret = ? WHERE iot_id = ?').run(encryptV1(v1.key, v1.devices[0]!.deviceSecret), 'iotLegacy0'));
      await srv.stop();
      srv = await startTestServer({}, { dataDir: v1.dataDir });
      assert.equal((await connectRefusal(srv, 'mqtt', signedConnect(v1.devices[0]!))).code, 3, 'a v1 value after the migration is refused');
      assert.ok(srv.logs.some((l) => /"level":50/.test(l) && l.includes('unbound v1 form') && l.includes('iotLegacy0')));
      await login(srv, v1.devices[2]!);
    } finally {
      await srv.stop();
    }
  });

  it('a v1 value that does not decrypt stops the start, naming its row, and leaves the file as it was (one transaction)', async () => {
    const v1 = buildV1DataDir(12, { corruptDevice: 7 });
    const file = path.join(v1.dataDir, 'thingauth.db');
    const config = loadConfig({ dataDir: v1.dataDir, host: '127.0.0.1', httpPort: '0', httpsPort: '0', mqttPort: '0', mqttsPort: '0', wsPort: '0', wssPort: '0', adminToken: 'test-admin-token-0123456789' });
    await assert.rejects(startThingAuth(config, { logger: createLogger('silent') }), (e: Error) => {
      assert.match(e.message, /devices\.device_secret of row iotLegacy7\/a1V1Legacy01\/legacy7: stored secret fails its integrity check/);
      assert.ok(!e.message.includes('LegacyDeviceSecret'));
      return true;
    });
    assert.deepEqual(storedForms(file), { v1: 1 + 12 + 4 + 1 + 1 + 1 }, 'nothing was converted');
    // The operator removes the broken row; the next start migrates everything else.
    tamper(file, (db) => {
      db.prepare('DELETE FROM devices WHERE iot_id = ?').run('iotLegacy7');
      db.prepare('UPDATE product_counts SET devices = devices - 1').run();
    });
    const srv = await startTestServer({}, { dataDir: v1.dataDir });
    try {
      assert.deepEqual(storedForms(file), { v2: 1 + 11 + 4 + 1 + 1 + 1 });
      await login(srv, v1.devices[8]!);
    } finally {
      await srv.stop();
    }
  });
});
