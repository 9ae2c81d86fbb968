/**
 * "The device list stays fast with 500,000 devices in a product": 500,000 devices imported into
 * a real SQLite file through the store's bulk import (as bench/lib/thingauth.ts `provision`
 * does), then a page near the end fetched by cursor. No timing assertion: the proof is the
 * query plan of the very statement the store runs (a SEARCH on the (product_key, device_name)
 * index with a range, no SCAN and no sort), so the rows read are the page, not the depth.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { KeyringCipher, generateMasterKey } from '../../src/core/secret-cipher.js';
import { SqliteStore, sqliteDevicesAfterQuery } from '../../src/store/sqlite/sqlite-store.js';
import { namedProduct } from '../contract/fixtures.js';
import type { DeviceKeysetFilter } from '../../src/store/store.js';

const DEVICES = 500_000;
const PK = 'a1Deep50000';
const name = (i: number) => `deep-${String(i).padStart(6, '0')}`;

describe('device list keyset paging over 500,000 devices (SQLite)', () => {
  let dir: string;
  let store: SqliteStore;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'thingauth-keyset-'));
    store = new SqliteStore({ filename: path.join(dir, 'thingauth.db'), cipher: new KeyringCipher(generateMasterKey()), synchronous: 'NORMAL' });
    await store.migrate();
    const at = new Date().toISOString();
    await store.createProduct(namedProduct(PK, { deviceLimit: DEVICES }));
    for (let i = 0; i < DEVICES; i += 10_000) {
      const rows = Array.from({ length: 10_000 }, (_, k) => ({ deviceName: name(i + k), deviceSecret: `DeepSecret${String(i + k).padStart(22, '0')}`, iotId: `iotDeep${String(i + k).padStart(13, '0')}` }));
      const r = await store.importDevices(PK, rows, Number.MAX_SAFE_INTEGER, false, at);
      assert.equal(r.created, 10_000);
    }
  });
  after(async () => {
    await store?.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('a page near the end comes from an index range, not a scan, and holds the right devices', async () => {
    assert.equal(await store.countDevices(PK), DEVICES);
    const deep = name(DEVICES - 150);
    const page = await store.listDevicesAfter(PK, deep, 100);
    assert.deepEqual(page.map((d) => d.deviceName), Array.from({ length: 100 }, (_, k) => name(DEVICES - 149 + k)));
    const last = await store.listDevicesAfter(PK, name(DEVICES - 50), 100);
    assert.equal(last.length, 49);

    const filters: DeviceKeysetFilter[] = [{}, { status: 'ONLINE' }, { nameContains: '4999' }, { status: 'DISABLE', nameContains: 'deep' }];
    for (const filter of filters) {
      const { sql, args } = sqliteDevicesAfterQuery(PK, deep, 100, filter);
      const plan = (store.db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...args) as { detail: string }[]).map((r) => r.detail);
      const text = plan.join(' | ');
      assert.ok(plan.some((d) => /^SEARCH devices USING INDEX \S+ \(product_key=\? AND device_name>\?\)$/.test(d)), `range on the name index (${JSON.stringify(filter)}): ${text}`);
      assert.ok(!plan.some((d) => /\bSCAN\b/.test(d)), `no scan: ${text}`);
      assert.ok(!plan.some((d) => /TEMP B-TREE/.test(d)), `no sort (the index gives the order): ${text}`);
    }
    // The index the plan names is the UNIQUE (product_key, device_name) one.
    const indexes = store.db.prepare("SELECT name FROM pragma_index_list('devices') WHERE \"unique\" = 1").all() as { name: string }[];
    const cols = indexes.map((i) => (store.db.prepare('SELECT name FROM pragma_index_info(?) ORDER BY seqno').all(i.name) as { name: string }[]).map((c) => c.name).join(','));
    assert.ok(cols.includes('product_key,device_name'), cols.join(' / '));
  });
});
